"""Results shared by every checker, and `Judge`, the small accumulator checkers build them with."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from harness.history import TERMINAL_EVENT_TYPES, Attachment, History
from harness.spec import Level, clause


class Verdict(StrEnum):
    """PASS: examined and found nothing wrong. FAIL: at least one violation. UNKNOWN: could not
    judge (the checker crashed, or the clause needs the end of a run the history does not have)."""

    PASS = "pass"
    FAIL = "fail"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Violation:
    """One breach of a clause, explained in plain words, with the record indices that show it."""

    explanation: str
    evidence: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"explanation": self.explanation, "evidence": list(self.evidence)}


@dataclass(frozen=True, slots=True)
class ClauseResult:
    """A checker's verdict on one clause of one history."""

    clause: str
    level: Level
    verdict: Verdict
    violations: list[Violation] = field(default_factory=list)
    examined: dict[str, int] = field(default_factory=dict)
    """What the checker looked at ("lookups": 3, "clients": 4...), so a pass says what it covers."""
    notes: list[str] = field(default_factory=list)
    """Why a verdict is UNKNOWN, what could not be examined, or what was vacuous."""
    error: str | None = None
    """The traceback, when the checker itself crashed (the verdict is then UNKNOWN)."""

    @property
    def label(self) -> str:
        """Verdict with its level, e.g. "FAIL (SHOULD)": a SHOULD failure never reads as a pass."""
        return f"{self.verdict.upper()} ({self.level})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "clause": self.clause,
            "level": str(self.level),
            "verdict": str(self.verdict),
            "violations": [v.to_dict() for v in self.violations],
            "examined": dict(self.examined),
            "notes": list(self.notes),
            "error": self.error,
        }


Checker = Callable[[History], ClauseResult]
"""A checker: a pure function from a history to the verdict on its clause."""


class Judge:
    """Collects what a checker finds about one clause, then turns it into a `ClauseResult`.

    Checkers report three kinds of finding: a violation (`fail`), a part they cannot decide from
    this history (`cannot_tell`), and what they examined (`saw`). The verdict follows from them,
    so every checker applies the same rules: any violation is FAIL; otherwise anything undecided,
    or a clause that needs the end of a run the history does not have, is UNKNOWN; otherwise PASS.
    """

    def __init__(self, clause_id: str, history: History) -> None:
        self.clause = clause(clause_id)
        self.history = history
        self.violations: list[Violation] = []
        self.undecided: list[str] = []
        self.notes: list[str] = []
        self.examined: Counter[str] = Counter()

    def fail(self, explanation: str, *evidence: int | None) -> None:
        self.violations.append(Violation(explanation, tuple(sorted({i for i in evidence if i is not None}))))

    def cannot_tell(self, reason: str) -> None:
        self.undecided.append(reason)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def saw(self, what: str, n: int = 1) -> None:
        self.examined[what] += n

    def decidable(self, a: Attachment, missing_seq: int | None = None) -> bool:
        """Whether something `a`'s client has not received can no longer arrive: the run ended
        cleanly, hung with this client waiting, the client's stream is over, or (for a numbered
        event) the client already received a later one."""
        h = self.history
        if h.is_complete or h.stuck(a.client) or a.closed_at is not None:
            return True
        return missing_seq is not None and any(
            d.seq is not None and d.seq > missing_seq for d in a.task_deliveries()
        )

    def missing(self, a: Attachment, explanation: str, *evidence: int | None, seq: int | None = None) -> None:
        """Report something `a`'s client should have received: a violation if it can no longer
        arrive (see `decidable`), else an undecided part."""
        if self.decidable(a, seq):
            suffix = " (the run hung with it waiting)" if self.history.stuck(a.client) else ""
            self.fail(explanation + suffix, *evidence)
        else:
            self.cannot_tell(f"{explanation}, but the run was cut short before it could arrive")

    def result(self) -> ClauseResult:
        notes = list(self.notes) + self.undecided
        if self.violations:
            verdict = Verdict.FAIL
        elif self.undecided:
            verdict = Verdict.UNKNOWN
        elif self.clause.needs_end and not self.history.is_complete:
            verdict = Verdict.UNKNOWN
            notes.append(f"{self.clause.id} needs the end of the run, but {_how_it_ended(self.history)}")
        else:
            verdict = Verdict.PASS
            if not self.history.is_complete:
                notes.append(f"judged on a prefix: {_how_it_ended(self.history)}")
        return ClauseResult(
            clause=self.clause.id,
            level=self.clause.level,
            verdict=verdict,
            violations=list(self.violations),
            examined=dict(self.examined),
            notes=notes,
        )


def _how_it_ended(history: History) -> str:
    end = history.run_end
    if end is None:
        return "the history has no RunEnd record"
    waiting = f" (waiting: {', '.join(end.waiting)})" if end.waiting else ""
    return f"the run ended with {end.reason!r}{waiting}"


def seqs(items: Iterable[int]) -> str:
    """Event numbers for explanations: "3", "3 and 4", "3..6"."""
    ordered = sorted(items)
    if len(ordered) == 1:
        return str(ordered[0])
    if len(ordered) == 2:
        return f"{ordered[0]} and {ordered[1]}"
    if ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]}..{ordered[-1]}"
    return ", ".join(map(str, ordered))


def describe_via(history: History, a: Attachment) -> str:
    """How the client's instance was obtained, e.g. " via obj2 from reload op5"."""
    if a.via is None:
        return ""
    origin = history.origin(a.via)
    return f" via {a.via}" + (f" from {origin.op} {origin.op_id}" if origin else "")


def finish_lost_in_crash(history: History, finish: Any) -> int | None:
    """The crash that took a task's finish with it, if one did: the process that finished the task
    crashed before any client had received the terminal event. To the outside world the task was
    then interrupted, not finished: its outcome need not be stored, and a process may resume it
    (S7 counts the resumptions). Returns the crash's index, or None."""
    crash = history.crash_index(history[finish.index].process)
    if crash is None or crash < finish.index:
        return None
    seen = any(
        finish.is_terminal_delivery(d) and d.index < crash
        for a in history.attachments(finish.task) for d in a.task_deliveries()
    )
    return None if seen else crash


def died_in_flight(history: History, send: Any) -> bool:
    """Whether `send` never completed because its process crashed while it was in progress: it
    may never have become durable, so no client elsewhere is owed it."""
    crash = history.crash_index(send.process)
    return crash is not None and crash > send.index and history.sent_by(send) > crash


def delivers_end(history: History, finish: Any, d: Any) -> bool:
    """Whether delivery `d` ends its client's stream for `finish`: its terminal event, or, when
    that finish died with its process, the terminal event of the run that resumed the task."""
    if finish.is_terminal_delivery(d):
        return True
    return d.event_type in TERMINAL_EVENT_TYPES and finish_lost_in_crash(history, finish) is not None
