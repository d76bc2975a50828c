"""The one failure type of the search: a minimal failing example, as a program and the tape that
replays it, with the run it gave.

The state machines, the fixed-program search, corpus replay and `replay` all give a
:class:`Failure`; the application layer reports, stores and replays it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from harness.adapters import Adapter, load_adapter
from harness.bounds import RUN_MAX_STEPS
from harness.choice import Tape, TapeChoices
from harness.driver import Outcome
from scenarios.program import op_count, run_program, validate_program

__all__ = ["ACROSS", "Failure", "replay", "size"]

ACROSS = ":processes"
"""Suffix of a violation key whose evidence spans several simulated processes ("S4:processes")."""


@dataclass
class Failure:
    """The minimal failing example found for one violation key: a program and its tape."""

    clause: str
    family: str
    """The scenario family that found it, or the fixed program's name."""
    seed: int
    program: list[dict[str, Any]]
    """JSON-able steps, in order, concurrent groups nested (see `scenarios.program`)."""
    tape: Tape
    outcome: Outcome | None
    """The run's history and every clause's result (`replay` gives the same history)."""
    examples_to_first: int
    seconds_to_first: float
    sut: str = "reference"
    max_steps: int = RUN_MAX_STEPS
    """The scheduler bound the example ran with (a replay needs it to end at the same point)."""
    shrunk_for: str | None = None
    """None if Hypothesis shrank the example for this failure; else what it shrank it for (the
    example fails this clause too, and is kept because nothing smaller was found for it)."""
    key: str = ""
    """The violation key: the clause id, or ``<id>:processes`` when the violation spans several
    simulated processes (e.g. two processes on one database running the task at once)."""

    def __post_init__(self) -> None:
        if not self.key:
            self.key = self.clause

    @property
    def across_processes(self) -> bool:
        return self.key.endswith(ACROSS)

    @property
    def operations(self) -> int:
        """Operations in the program (a concurrent group counts its members)."""
        return op_count(self.program)

    @property
    def steps(self) -> int:
        """Top-level program steps (a concurrent group counts once)."""
        return len(self.program)

    @property
    def clauses(self) -> list[str]:
        """Every clause the failing run violates (the one it was found for first)."""
        failed = [] if self.outcome is None else [r.clause for r in self.outcome.failed()]
        return [self.clause, *(c for c in failed if c != self.clause)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "clause": self.clause,
            "family": self.family,
            "seed": self.seed,
            "sut": self.sut,
            "max_steps": self.max_steps,
            "shrunk_for": self.shrunk_for,
            "key": self.key,
            "operations": self.operations,
            "program": self.program,
            "tape": self.tape.to_dict(),
            "examples_to_first": self.examples_to_first,
            "seconds_to_first": self.seconds_to_first,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, adapter: Adapter | None = None) -> Failure:
        """Rebuild a failure from `to_dict`; its outcome is re-derived by replaying the program."""
        validate_program(d["program"])
        failure = cls.from_document(d, None)
        failure.outcome = replay(failure, adapter=adapter)
        return failure

    @classmethod
    def from_document(cls, d: dict[str, Any], outcome: Outcome | None, *, sut: str | None = None) -> Failure:
        """A failure from its JSON document (a replay file, a corpus entry) and a run of it."""
        return cls(
            clause=str(d["clause"]), family=str(d["family"]), seed=int(d["seed"]),
            program=list(d["program"]),
            tape=outcome.tape if outcome is not None else Tape.from_dict(d["tape"]), outcome=outcome,
            examples_to_first=int(d.get("examples_to_first", 0)),
            seconds_to_first=float(d.get("seconds_to_first", 0.0)),
            sut=sut or str(d.get("sut", "reference")), max_steps=int(d.get("max_steps", RUN_MAX_STEPS)),
            shrunk_for=d.get("shrunk_for"), key=str(d.get("key") or d["clause"]),
        )


def size(failure: Failure) -> tuple[int, int, int]:
    """How big a failing example is: operations, top-level steps, deviations from FIFO."""
    return (failure.operations, failure.steps, failure.tape.deviations)


def replay(failure: Failure | dict[str, Any], *, adapter: Adapter | None = None) -> Outcome:
    """Re-execute a failure's program with its tape: the same history, byte for byte.

    The adapter defaults to the one the failure names (Django must be configured for it, or is
    configured here with DATABASE_URL or a temporary SQLite database)."""
    if isinstance(failure, dict):
        program, tape = failure["program"], Tape.from_dict(failure["tape"])
        sut = str(failure.get("sut", "reference"))
        max_steps = int(failure.get("max_steps", RUN_MAX_STEPS))
    else:
        program, tape, sut, max_steps = failure.program, failure.tape, failure.sut, failure.max_steps
    validate_program(program)
    if adapter is None:
        adapter = load_adapter(sut)
        _ensure_django(adapter)
    return run_program(adapter, program, TapeChoices(tape), max_steps=max_steps)


def _ensure_django(adapter: Adapter) -> None:
    from django.conf import settings as django_settings

    if not django_settings.configured:
        from harness.django_setup import configure

        configure(adapter, os.environ.get("DATABASE_URL"))
