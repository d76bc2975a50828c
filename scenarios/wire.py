"""The HTTP mode's search: Hypothesis draws programs of wire operations, each runs against fresh
server processes (`harness.wire.run.WireRun`), and every S and W clause is judged on its history.

A wire program is a list of JSON steps like the in-process programs (`scenarios.program`), where
``process`` names a server process by position and ``client`` a client by position:
``{"op": "attach", "process": 1}``, ``{"op": "release", "count": 2}``, ``{"op": "crash", "process": 0}``
(a kill -9 and a restart), ``{"op": "reconnect", "client": 0, "process": 1}`` (its connection drops
and it comes back with Last-Event-ID), ``{"op": "crowd", "process": 0, "count": 8}`` (clients at
once, past a server's limit of open streams), ``{"op": "request", "process": 0, "which": 3}`` (a
hostile request, see `hostile_paths`), ``{"op": "intrude", "process": 0, "which": 1}`` (a request the
implementation is configured to refuse, the adapter's ``refused_paths``, W7).
Every example has one task, created first; the first step of a program says how many servers run.

What is not controlled here, and what the reports say about it: the order in which servers and
clients act between two steps belongs to the operating system. The program is drawn, shrunk and
replayed from the seed; a failure found is re-run `REPRODUCTIONS` times and its reproduction rate
reported; a failure that does not come back on a re-run is reported as flaky, never as a pass.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import Flaky

from harness.checkers import check_wire
from harness.errors import ConfigError
from harness.history import History
from harness.probe.gates import FAIL_WAYS, FINISH_WAYS
from harness.wire.run import WireRun
from harness.wire.steps import hostile_paths, perform

__all__ = ["WIRE_PROFILES", "WireFailure", "WireProfile", "WireResult", "hostile_paths", "run_wire_program",
           "search_wire", "wire_programs"]

CROWD = 12
"""Clients a crowd step opens at once at most: past the limit of open streams the reference's
adapter sets for its servers (`http_settings`)."""
WIRE_STEPS: dict[str, frozenset[str]] = {
    "attach": frozenset({"S2", "S3", "W1", "W2"}),
    "crowd": frozenset({"W1"}),
    "release": frozenset({"S2", "S3", "W2"}),
    "finish_ok": frozenset({"S5", "W3"}),
    "finish_fail": frozenset({"S6", "W3"}),
    "crash": frozenset({"S4", "S7", "S7.2"}),
    "shutdown": frozenset({"S7", "W6"}),
    "detach": frozenset({"S2", "W6"}),
    "stall": frozenset({"S2", "W6"}),
    "reconnect": frozenset({"S3", "W5"}),
    "request": frozenset({"W4"}),
    "intrude": frozenset({"W7"}),
    "wait": frozenset({"S2"}),
}
"""Each step the search draws -> the clauses it is there to reach (the clause index shows them)."""
STEP_PAUSE = 0.05
"""Seconds between two steps (the standalone scripts pause alike)."""
REPRODUCTIONS = 3
"""Re-runs of each shrunk failure, for its reproduction rate."""
OBSERVED: dict[str, Callable[[list[dict[str, Any]]], bool]] = {
    "a kill -9 and a restart": lambda p: _after(p, "attach", "crash") and _after(p, "crash", "attach"),
    "a SIGTERM with streams open": lambda p: _after(p, "attach", "shutdown"),
    "a client that leaves or drops": lambda p: bool(_ops(p) & {"detach", "reconnect"}),
    "two servers with clients on each": lambda p: _attached_on(p) == {0, 1},
}
"""Situations whose effect on clients every report shows, by the program (its steps)."""


SITUATIONS: list[list[dict[str, Any]]] = [
    [{"op": "servers", "count": 2}, {"op": "attach", "process": 0}, {"op": "attach", "process": 1},
     {"op": "release", "count": 1}, {"op": "finish_ok", "how": "complete"}],
    [{"op": "servers", "count": 2}, {"op": "attach", "process": 0}, {"op": "release", "count": 1},
     {"op": "crash", "process": 0}, {"op": "attach", "process": 0}, {"op": "finish_ok", "how": "complete"}],
    [{"op": "servers", "count": 1}, {"op": "attach", "process": 0}, {"op": "release", "count": 1},
     {"op": "shutdown", "process": 0}, {"op": "attach", "process": 0}],
    [{"op": "servers", "count": 1}, {"op": "attach", "process": 0}, {"op": "attach", "process": 0},
     {"op": "release", "count": 1}, {"op": "detach", "client": 0}, {"op": "release", "count": 1},
     {"op": "finish_ok", "how": "complete"}],
]
"""One program of each situation of `OBSERVED`, run before the drawn ones: every report shows each
situation, whatever the draw. A failure one of them shows is reported (unshrunk, they are short)
unless the search finds and shrinks it too."""


def _attached_on(program: list[dict[str, Any]]) -> set[int]:
    return {step["process"] for step in program[1:] if step["op"] == "attach"}


def _ops(program: list[dict[str, Any]]) -> set[str]:
    return {step["op"] for step in program[1:]}


def _after(program: list[dict[str, Any]], first: str, then: str) -> bool:
    ops = [step["op"] for step in program[1:]]
    return first in ops and then in ops[ops.index(first):]


@dataclass(frozen=True)
class WireProfile:
    name: str
    max_examples: int
    shrink_seconds: float
    """Wall-clock budget for shrinking one failure (each example starts real servers)."""
    max_steps: int = 8


WIRE_PROFILES: dict[str, WireProfile] = {
    p.name: p for p in (
        WireProfile("dev", max_examples=6, shrink_seconds=30),
        WireProfile("ci", max_examples=25, shrink_seconds=60),
        WireProfile("thorough", max_examples=200, shrink_seconds=300, max_steps=12),
    )
}


def wire_programs(max_steps: int) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Programs over one task: attaches on any server, events, ends, faults, leavers, bad requests."""

    @st.composite
    def program(draw: Callable[..., Any]) -> list[dict[str, Any]]:
        servers = draw(st.integers(1, 2))
        steps: list[dict[str, Any]] = [{"op": "servers", "count": servers}]
        clients = 0
        for _ in range(draw(st.integers(1, max_steps))):
            server = st.integers(0, servers - 1)
            choices = [
                "attach", "release", "finish_ok", "finish_fail", "wait", "request", "crash", "shutdown",
                "crowd", "intrude",
            ]
            if clients:
                choices += ["detach", "stall", "reconnect"]
            op = draw(st.sampled_from(choices))
            if op == "attach":
                step = {"op": "attach", "process": draw(server)}
                spelling = draw(st.sampled_from([0, 0, 0, 1, 2, 3]))  # mostly the canonical name
                if spelling:
                    step["spelling"] = spelling
                steps.append(step)
                clients += 1
            elif op == "release":
                steps.append({"op": "release", "count": draw(st.integers(1, 3))})
            elif op == "finish_ok":
                steps.append({"op": "finish_ok", "how": draw(st.sampled_from(FINISH_WAYS))})
            elif op == "finish_fail":
                steps.append({"op": "finish_fail", "how": draw(st.sampled_from(FAIL_WAYS))})
            elif op == "wait":
                steps.append({"op": "wait", "seconds": draw(st.sampled_from([0.2, 0.6, 1.5]))})
            elif op == "request":
                steps.append({"op": "request", "process": draw(server), "which": draw(st.integers(0, 15))})
            elif op == "intrude":
                steps.append({"op": "intrude", "process": draw(server), "which": draw(st.integers(0, 7))})
            elif op in ("crash", "shutdown"):
                steps.append({"op": op, "process": draw(server)})
            elif op == "reconnect":
                steps.append({"op": op, "client": draw(st.integers(0, clients - 1)), "process": draw(server)})
                clients += 1
            elif op == "crowd":
                count = draw(st.integers(2, CROWD))
                steps.append({"op": op, "process": draw(server), "count": count})
                clients += count
            else:
                steps.append({"op": op, "client": draw(st.integers(0, clients - 1))})
        return steps

    return program()


async def _execute(run: WireRun, program: list[dict[str, Any]]) -> None:
    task = await run.create()
    for step in program[1:]:
        await perform(run, task, step)
        # Let the servers act on the step before the next one (the order between them is theirs).
        await asyncio.sleep(STEP_PAUSE)


def run_wire_program(adapter: Any, sut: str, database_url: str, log_dir: str,
                     program: list[dict[str, Any]]) -> tuple[History, list[Any], dict[str, str]]:
    """Run one wire program on fresh servers: its history, every clause's result, and the tail of
    each server's log (for the reports)."""

    async def main() -> tuple[History, dict[str, str]]:
        run = WireRun(adapter, sut, database_url, log_dir, processes=program[0]["count"])
        try:
            await run.open()
            await _execute(run, program)
            await run.finish()
        finally:
            await run.close()
        return run.recorder.history(), {name: s.log_tail(40) for name, s in run.servers.items()}

    history, logs = asyncio.run(main())
    return history, check_wire(history), logs


@dataclass
class WireFailure:
    clause: str
    program: list[dict[str, Any]]
    history: History
    results: list[Any]
    logs: dict[str, str]
    reproduced: int = 0
    reruns: int = 0
    examples_to_first: int = 0
    flaky: bool = False
    shrunk: bool = True
    """False for a clause that failed only beside another one's search: its first failing example,
    kept as found (so that no FAIL is reported without its evidence)."""

    @property
    def rate(self) -> str:
        return f"{self.reproduced}/{self.reruns}"


@dataclass
class WireResult:
    sut: str
    profile: str
    seed: int
    seconds: float
    examples: int
    verdicts: dict[str, dict[str, int]] = field(default_factory=dict)
    """Clause -> verdict -> examples."""
    failures: dict[str, WireFailure] = field(default_factory=dict)
    observations: dict[str, tuple[list[dict[str, Any]], History]] = field(default_factory=dict)
    """For each kind of fault in `OBSERVED`, the first example that had it with clients around:
    what clients saw there, failing or not (the report shows it)."""

    def verdict(self, clause: str) -> str:
        counts = self.verdicts.get(clause, {})
        if clause in self.failures or counts.get("fail"):
            return "fail"
        return "pass" if counts.get("pass") else "unknown"


class _Broken(BaseException):
    """A server could not start: nothing to search (a BaseException, so Hypothesis neither shrinks
    it as a failure nor goes on)."""

    def __init__(self, error: ConfigError) -> None:
        super().__init__(str(error))
        self.error = error


class _Found(Exception):
    def __init__(self, clause: str) -> None:
        super().__init__(clause)
        self.clause = clause


Found = tuple[list[dict[str, Any]], History, list[Any], dict[str, str]]
"""A failing example: its program, history, clause results and server log tails."""


class _WireSearch:
    """Rounds of Hypothesis search: each round stops at the first clause that fails and not yet
    found, and shrinks it (within the profile's time budget); the next round looks for the rest."""

    def __init__(self, adapter: Any, sut: str, database_url: str, log_dir: str, profile: WireProfile,
                 seed: int, clauses: set[str] | None, progress: Callable[[str], None] | None) -> None:
        self.adapter, self.sut, self.database_url, self.log_dir = adapter, sut, database_url, log_dir
        self.profile, self.seed, self.wanted, self.progress = profile, seed, clauses, progress
        self.result = WireResult(sut, profile.name, seed, 0.0, 0)
        self.last: dict[str, Found] = {}
        self.seen: dict[str, tuple[Found, int]] = {}
        """Each failing clause's first failing example, and how many examples it took."""
        self.target: str | None = None
        self.shrink_deadline: float | None = None

    def run(self, program: list[dict[str, Any]]) -> Found:
        try:
            history, results, logs = run_wire_program(self.adapter, self.sut, self.database_url,
                                                      self.log_dir, program)
        except ConfigError as exc:
            raise _Broken(exc) from None
        return program, history, results, logs

    def example(self, program: list[dict[str, Any]]) -> None:
        if self.shrink_deadline is not None and time.monotonic() > self.shrink_deadline:
            # Out of shrinking time: what was found so far stands (Hypothesis replays it last).
            if self.target is not None and program == self.last[self.target][0]:
                raise _Found(self.target)
            return
        found, failed = self.record(program)
        new = [c for c in failed if c not in self.result.failures]
        if self.target is not None:
            new = [c for c in new if c == self.target]
        if not new:
            return
        if self.target is None:
            self.target = new[0]
            self.shrink_deadline = time.monotonic() + self.profile.shrink_seconds
        self.last[self.target] = found
        raise _Found(self.target)

    def record(self, program: list[dict[str, Any]]) -> tuple[Any, list[str]]:
        """Run one program and count its verdicts, failures seen and situations observed: the run,
        and the wanted clauses it failed."""
        result = self.result
        result.examples += 1
        found = self.run(program)
        failed = []
        for r in found[2]:
            counts = result.verdicts.setdefault(r.clause, {})
            counts[str(r.verdict)] = counts.get(str(r.verdict), 0) + 1
            if str(r.verdict) == "fail" and (self.wanted is None or r.clause in self.wanted):
                failed.append(r.clause)
                self.seen.setdefault(r.clause, (found, result.examples))
        for kind, shows in OBSERVED.items():
            if kind not in result.observations and shows(program):
                result.observations[kind] = (program, found[1])
        if self.progress is not None:
            self.progress(f"example {result.examples}: {len(program) - 1} steps, "
                          f"{', '.join(failed) if failed else 'no failure'}")
        return found, failed

    def round(self, number: int) -> bool:
        """One round; False when it found nothing new (the search is over)."""
        self.target, self.shrink_deadline = None, None

        @settings(max_examples=self.profile.max_examples, deadline=None, database=None,
                  phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck),
                  report_multiple_bugs=False, print_blob=False)
        @hypothesis_seed(self.seed * 1000 + number)
        @given(wire_programs(self.profile.max_steps))
        def test(program: list[dict[str, Any]]) -> None:
            self.example(program)

        try:
            test()
        except _Found:
            pass
        except (Flaky, BaseExceptionGroup):
            if self.target is None:
                raise
            self._keep(flaky=True)
            return True
        if self.target is None:
            return False
        self._keep(flaky=False)
        return True

    def _keep(self, *, flaky: bool) -> None:
        assert self.target is not None
        program, history, results, logs = self.last[self.target]
        self.result.failures[self.target] = WireFailure(self.target, program, history, results, logs,
                                                        examples_to_first=self.result.examples, flaky=flaky)

    def keep_unshrunk(self) -> None:
        """Clauses that failed in some example but were never searched for on their own."""
        for clause, ((program, history, results, logs), examples) in self.seen.items():
            if clause not in self.result.failures:
                self.result.failures[clause] = WireFailure(clause, program, history, results, logs,
                                                           examples_to_first=examples, shrunk=False)

    def reproduce(self) -> None:
        for failure in self.result.failures.values():
            for _ in range(REPRODUCTIONS):
                results = self.run(failure.program)[2]
                failure.reruns += 1
                failure.reproduced += any(
                    r.clause == failure.clause and str(r.verdict) == "fail" for r in results
                )
            failure.flaky = failure.flaky or failure.reproduced < failure.reruns


MAX_ROUNDS = 12


def search_wire(adapter: Any, sut: str, database_url: str, log_dir: str, *, profile: str = "ci",
                seed: int = 0, clauses: set[str] | None = None,
                progress: Callable[[str], None] | None = None) -> WireResult:
    """Search with Hypothesis; each clause that fails is shrunk (within the profile's time budget),
    then re-run for its reproduction rate. ConfigError if a server cannot be started."""
    began = time.monotonic()
    search = _WireSearch(adapter, sut, database_url, log_dir, WIRE_PROFILES[profile], seed, clauses, progress)
    try:
        for program in SITUATIONS:
            search.record(program)
        for number in range(MAX_ROUNDS):
            if not search.round(number):
                break
        search.keep_unshrunk()
        search.reproduce()
    except _Broken as broken:
        raise broken.error from None
    search.result.seconds = time.monotonic() - began
    return search.result
