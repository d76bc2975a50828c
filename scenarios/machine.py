"""The state machine: rules are the adapter's operations, every clause is an invariant.

One example is one :class:`~scenarios.program.Session`: a persistent controlled loop and one run on
it. Rules stay synchronous: each builds one program step (a JSON dict) and executes it with
:func:`scenarios.program.execute` through ``loop.run_until_complete``; every scheduling decision of
the loop is drawn from the example's Hypothesis data, so Hypothesis explores the interleavings of
each step with everything still pending from the earlier ones, and shrinks them toward FIFO.

After each step every clause is checked on the history so far: a FAIL of a clause the search is
after ends the example (UNKNOWN is fine mid-run). At teardown the run is settled and every clause is
checked on the whole history. A failing example raises the :class:`ClauseViolation` subclass of its
violation key (the clause, or ``<clause>:processes`` when the violation spans several simulated
processes), so Hypothesis tells the failures apart when it shrinks them.

Rules take no Hypothesis arguments: which entity a rule acts on is drawn, like the scheduling
decisions, straight from the example's choice sequence (cheaper, and it shrinks toward the first
candidate); the program step is the readable record of what the rule did.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st
from hypothesis import target
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from harness.adapters import Adapter
from harness.checkers import CHECKERS, check_all
from harness.choice import HypothesisChoices
from harness.driver import Outcome
from harness.history import HARNESS
from harness.probe.gates import FAIL_WAYS, FINISH_WAYS
from scenarios.failure import ACROSS, Failure
from scenarios.families import Family, Profile
from scenarios.floods import BURST_DRAWS, FLOOD_MAX, FLOOD_MIN, STALLED_BURST_DRAWS, burst_size
from scenarios.program import Session, iter_ops
from scenarios.stats import Stats
from scenarios.targets import SCORES

__all__ = [
    "ACROSS", "RULES", "VIOLATIONS", "BudgetExhausted", "ClauseViolation", "Search", "Stats", "all_keys",
    "failing_keys", "machine_factory", "program_machine_factory", "violation_keys",
]

CLAUSE_IDS = tuple(CHECKERS)


class BudgetExhausted(KeyboardInterrupt):
    """Stops a family's search once it has spent its examples (the smallest failing examples found
    so far are kept). Hypothesis's engine stops cleanly only for an interrupt, which it never takes
    for a failing example nor records; `verify` catches this subclass and nothing else."""


class ClauseViolation(AssertionError):
    """An example violated a clause the search is after (one subclass per violation key)."""

    clause = ""
    key = ""


WAITS = (1.0, 40.0, 100.0)
"""Virtual seconds one ``wait`` lets pass: a poll or two; past a 30 s lease (the reference's
default: takeovers happen); past a few leases and heartbeats. Not longer: a spell costs a poll
loop's worth of steps (the reference polls every 0.5 s)."""

VIOLATIONS: dict[str, type[ClauseViolation]] = {}


def violation_type(key: str) -> type[ClauseViolation]:
    """The exception type of a violation key (one per key, so Hypothesis shrinks each apart)."""
    cls = VIOLATIONS.get(key)
    if cls is None:
        name = "Violation" + key.replace(".", "_").replace(ACROSS, "AcrossProcesses")
        cls = VIOLATIONS[key] = type(name, (ClauseViolation,), {"clause": key.split(":")[0],
                                                                "key": key, "__module__": __name__})
    return cls


def violation_keys(result: Any, history: Any) -> list[str]:
    """How `result` (a FAIL) was violated: within one process (the clause id), across several
    (``<id>:processes``: the records a violation cites belong to two or more processes), or both."""
    keys: list[str] = []
    for violation in result.violations:
        procs = {history[i].process for i in violation.evidence if 0 <= i < len(history)}
        procs.discard(HARNESS)
        key = result.clause + (ACROSS if len(procs) > 1 else "")
        if key not in keys:
            keys.append(key)
    return sorted(keys, key=len) or [result.clause]


def failing_keys(results: list[Any], history: Any, targets: frozenset[str]) -> list[str]:
    """The violation keys of the failed results that are among `targets`, in spec order."""
    keys: list[str] = []
    for result in results:
        if str(result.verdict) == "fail":
            keys.extend(k for k in violation_keys(result, history) if k in targets)
    return keys


def all_keys(clauses: Any) -> frozenset[str]:
    """Every violation key of `clauses` (each clause within one process and across processes)."""
    return frozenset(k for c in clauses for k in (c, c + ACROSS))


@dataclass
class Search:
    """One family's search: what its machines need, and where they report."""

    adapter: Adapter
    family: Family
    profile: Profile
    targets: frozenset[str]
    """Violation keys still to be found (see `violation_keys`)."""
    stats: Stats
    started: float
    limit: int = 0
    """Examples this search may run (generation and shrinking); 0 for no limit."""
    examples: int = 0
    """Examples run (machines made), including those Hypothesis aborted."""
    before_failure: int | None = None
    """Examples run when the first failing example was raised (the rest went to shrinking)."""
    seed: int = 0
    """The verify run's seed (each failure records it)."""
    found: dict[str, Failure] = field(default_factory=dict)
    """Violation key -> the smallest failing example raised for it so far."""
    first: dict[str, tuple[int, float]] = field(default_factory=dict)
    """Violation key -> (examples, seconds) when it first failed, over the whole verify run."""
    on_example: Callable[[str, list[dict[str, Any]], Outcome], None] | None = None
    """Called with (family, program, outcome) after every judged example."""
    also: dict[str, Failure] = field(default_factory=dict)
    """Violation key -> the smallest failing example raised for another key (a fallback)."""
    halt: Callable[[Search], bool] | None = None
    """Asked before every example: True ends the search as if its budget were spent (a worker
    process running ahead stops once it has found something, or once its work is dropped)."""
    burst: int = field(init=False)
    """Events of this search's long bursts (`burst_size`)."""

    def __post_init__(self) -> None:
        self.burst = burst_size(self.adapter)

    def keep(self, table: dict[str, Failure], found: Failure) -> None:
        old = table.get(found.key)
        if old is None or _size(found) < _size(old):
            table[found.key] = found


def _size(found: Failure) -> tuple[int, int, int, int]:
    """How big a failing example is: operations, top-level steps, deviations from FIFO, decisions."""
    tape = found.tape
    return (sum(1 for _ in iter_ops(found.program)), len(found.program), tape.deviations, len(tape))


class _Choices(HypothesisChoices):
    """The example's decisions: the loop's scheduling decisions, and which entity a rule acts on.

    Each decision is one integer drawn straight from the example's choice sequence (index 0 is
    FIFO, or the first candidate), which Hypothesis shrinks toward 0. Drawing through the
    conjecture data rather than ``data.draw(st.integers(...))`` costs a fifth as much, and a run
    makes dozens of decisions. Before the data is known (setting up) every decision is FIFO.
    """

    def __init__(self) -> None:
        super().__init__(None)
        self._draw: Callable[[int, int], int] | None = None

    def attach_data(self, data: Any) -> None:
        self.data = data
        draw = getattr(getattr(data, "conjecture_data", None), "draw_integer", None)
        self._draw = draw if callable(draw) else None

    def integer(self, n: int) -> int:
        """An index in range(n), not recorded on the tape (it is not a scheduling decision)."""
        if n <= 1 or self.data is None:
            return 0
        if self._draw is not None:
            return int(self._draw(0, n - 1))
        return super()._pick(n, "")

    def _pick(self, n: int, label: str) -> int:
        return self.integer(n)


class ScenarioMachine(RuleBasedStateMachine):
    """Base of the family machines (`machine_factory` builds one per family with its rules)."""

    search: Search

    def __init__(self, search: Search) -> None:
        spent = bool(search.limit) and search.examples >= search.limit
        if spent or (search.halt is not None and search.halt(search)):
            raise BudgetExhausted(search.family.name)
        search.examples += 1
        super().__init__()
        self.search = search
        self.family = search.family
        self.choices = _Choices()
        self.session: Session | None = None
        self.concluded = False
        self.aborted = False
        self.checked_at = -1
        self.replaced: set[int] = set()

    # -- plumbing -----------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        return self.session is not None and self.session.ended is None and not self.concluded

    def do(self, step: dict[str, Any] | None) -> None:
        if step is None or not self.active:
            return
        assert self.session is not None
        try:
            self.session.step(step)
        except BaseException:
            self.aborted = True  # Hypothesis's own control flow (data exhausted), or a harness bug
            raise

    def conclude(self, prefix_failed: list[str] | None = None) -> None:
        """Settle, check the whole history, report it; raise if a target clause failed."""
        session = self.session
        if session is None or self.concluded:
            return
        self.concluded = True
        search = self.search
        try:
            outcome = session.finish()
        except BaseException:
            self.aborted = True
            raise
        search.stats.note(self.family.name, session.program, outcome)
        for label in self.family.targets:
            target(SCORES[label](outcome.history), label=label)
        if search.on_example is not None:
            search.on_example(self.family.name, list(session.program), outcome)
        failing = failing_keys(outcome.results, outcome.history, search.targets)
        if not failing and prefix_failed:
            failing = prefix_failed  # failed on a prefix only (the clause is not monotone there)
        if not failing:
            return
        example = search.stats.total()
        seconds = time.perf_counter() - search.started
        if search.before_failure is None:
            search.before_failure = search.examples
        key = failing[0]
        for k in failing:
            search.first.setdefault(k, (example, seconds))
            found = Failure(k.split(":")[0], self.family.name, search.seed, list(session.program),
                            outcome.tape, outcome, example, seconds, search.adapter.name,
                            search.profile.max_steps, key=k)
            search.keep(search.found if k == key else search.also, found)
        raise violation_type(key)(f"{key} failed in family {self.family.name}:\n{outcome.explain()}")

    # -- the example's life -------------------------------------------------------------------

    @initialize(data=st.data())
    def begin(self, data: Any) -> None:
        self.choices.attach_data(data)
        # No call stacks: only a report reads them, and it replays its failure with them.
        self.session = Session(self.search.adapter, self.choices, max_steps=self.search.profile.max_steps,
                               capture_stacks=False)
        if self.family.opening:
            for step in self.family.opening:
                self.do(dict(step))
            return
        for _ in range(self.choices.integer(self.family.max_processes)):
            self.do({"op": "spawn"})  # several processes on one database from the start

    @invariant()
    def clauses_hold(self) -> None:
        session = self.session
        if session is None or self.concluded or self.aborted:
            return
        if session.ended is not None:  # cut short under the last step: judge it now
            self.conclude()
            return
        n = len(session.recorder.records)
        if n == self.checked_at:
            return
        self.checked_at = n
        history = session.history()
        failed = failing_keys(check_all(history), history, self.search.targets)
        if failed:
            self.conclude(failed)

    def teardown(self) -> None:
        try:
            if not self.aborted:
                self.conclude()
        finally:
            if self.session is not None:
                self.session.close()

    # -- step builders (shared by the rules and the concurrent groups) ------------------------

    def pick(self, candidates: list[int]) -> int | None:
        """One of `candidates`, chosen by the example's data (shrinks toward the first)."""
        if not candidates:
            return None
        return candidates[self.choices.integer(len(candidates))]

    def build(self, op: str) -> dict[str, Any] | None:
        """A program step for `op` on entities the example's data picks; None if there are none."""
        s = self.session
        assert s is not None
        if op == "create":
            proc = self.pick(s.live_procs)
            return None if proc is None else {"op": "create", "process": proc}
        if op in ("start", "attach"):
            obj = self.pick(s.usable_objs())
            return None if obj is None else {"op": op, "obj": obj, "process": s.obj_procs[obj]}
        if op in ("lookup", "reload"):
            task = self.pick(s.known_tasks())
            proc = self.pick(s.live_procs)
            if task is None or proc is None:
                return None
            step = {"op": op, "task": task, "process": proc}
            if op == "lookup":
                # The request names the row in one of the ways the implementation accepts (model
                # name in other letter cases, pk with leading zeros...): the first is canonical.
                spelling = self.choices.integer(len(s.run.spellings(s.tasks[task])))
                if spelling:
                    step["spelling"] = spelling
            return step
        if op == "detach":
            client = self.pick(s.open_clients())
            return None if client is None else {"op": "detach", "client": client}
        if op == "stall":
            client = self.pick([i for i in s.open_clients() if not s.clients[i].stalled])
            return None if client is None else {"op": "stall", "client": client}
        if op == "flood":
            task = self.pick(s.known_tasks())
            if task is None:
                return None
            stalled = any(s.clients[i].stalled and s.clients[i].task.token == s.tasks[task].token
                          for i in s.open_clients())
            sizes = FLOOD_MAX - FLOOD_MIN + 1
            drawn = self.choices.integer(sizes + (STALLED_BURST_DRAWS if stalled else BURST_DRAWS))
            count = FLOOD_MIN + drawn if drawn < sizes else self.search.burst
            return {"op": "release", "task": task, "count": count}
        if op == "release":
            task = self.pick(s.known_tasks())
            return None if task is None else {"op": op, "task": task}
        if op in ("finish_ok", "finish_fail"):
            task = self.pick(s.known_tasks())
            if task is None:
                return None
            ways = FINISH_WAYS if op == "finish_ok" else FAIL_WAYS
            how = ways[self.choices.integer(len(ways))]  # shrinks toward the plain way
            return {"op": op, "task": task} if how == ways[0] else {"op": op, "task": task, "how": how}
        if op in ("crash", "shutdown"):
            proc = self.pick(s.live_procs)
            return None if proc is None else {"op": op, "process": proc}
        if op == "wait":
            return {"op": "wait", "seconds": WAITS[self.choices.integer(len(WAITS))]}
        raise ValueError(op)


# -- rules ------------------------------------------------------------------------------------------


def _has_tasks(self: ScenarioMachine) -> bool:
    return self.active and bool(self.session.known_tasks())


def _has_objs(self: ScenarioMachine) -> bool:
    return self.active and bool(self.session.usable_objs())


def _has_procs(self: ScenarioMachine) -> bool:
    return self.active and bool(self.session.live_procs)


@precondition(lambda self: _has_procs(self) and len(self.session.tasks) < self.family.max_tasks)
@rule()
def create(self: ScenarioMachine) -> None:
    self.do(self.build("create"))


@precondition(_has_objs)
@rule()
def start(self: ScenarioMachine) -> None:
    self.do(self.build("start"))


@precondition(lambda self: _has_tasks(self) and _has_procs(self))
@rule()
def lookup(self: ScenarioMachine) -> None:
    self.do(self.build("lookup"))


@precondition(lambda self: _has_tasks(self) and _has_procs(self))
@rule()
def reload(self: ScenarioMachine) -> None:
    self.do(self.build("reload"))


@precondition(lambda self: _has_objs(self) and len(self.session.clients) < self.family.max_clients)
@rule()
def attach(self: ScenarioMachine) -> None:
    self.do(self.build("attach"))


@precondition(lambda self: self.active and bool(self.session.open_clients()))
@rule()
def detach(self: ScenarioMachine) -> None:
    self.do(self.build("detach"))


@precondition(_has_tasks)
@rule()
def release(self: ScenarioMachine) -> None:
    self.do(self.build("release"))


@precondition(lambda self: self.active and any(not self.session.clients[i].stalled
                                               for i in self.session.open_clients()))
@rule()
def stall(self: ScenarioMachine) -> None:
    self.do(self.build("stall"))


@precondition(_has_tasks)
@rule()
def flood(self: ScenarioMachine) -> None:
    """A burst of events in one step: what a stalled client's buffer must survive (S8.2)."""
    self.do(self.build("flood"))


@precondition(_has_tasks)
@rule()
def finish_ok(self: ScenarioMachine) -> None:
    self.do(self.build("finish_ok"))


@precondition(_has_tasks)
@rule()
def finish_fail(self: ScenarioMachine) -> None:
    self.do(self.build("finish_fail"))


@precondition(_has_procs)
@rule()
def crash(self: ScenarioMachine) -> None:
    self.do(self.build("crash"))


@precondition(_has_procs)
@rule()
def shutdown(self: ScenarioMachine) -> None:
    """A graceful stop (SIGTERM, on every deploy): the process's coroutines are cancelled and may
    clean up; its clients reconnect elsewhere."""
    self.do(self.build("shutdown"))


@rule()
def wait(self: ScenarioMachine) -> None:
    """A quiet spell: virtual time passes (leases run out, heartbeats and polls fire)."""
    self.do(self.build("wait"))


@precondition(lambda self: _has_tasks(self) and _has_procs(self)
              and len(self.session.clients) < self.family.max_clients)
@rule()
def join(self: ScenarioMachine) -> None:
    """A new client's request: look the task up in a process, attach to what the lookup returned."""
    step = self.build("lookup")
    if step is None or not self.active:
        return
    self.do(step)
    s = self.session
    obj = len(s.objs) - 1
    if self.active and s.objs[obj] is not None and s.proc_alive(s.procs[s.obj_procs[obj]]):
        self.do({"op": "attach", "obj": obj, "process": s.obj_procs[obj]})


def _restartable(self: ScenarioMachine) -> list[int]:
    s = self.session
    live = s.live_procs
    dead = [i for i in range(len(s.procs)) if i not in live and i not in self.replaced]
    return live + (dead if len(live) < self.family.max_processes else [])


@precondition(lambda self: self.active and bool(_restartable(self)) and len(self.session.procs) < 5)
@rule()
def restart(self: ScenarioMachine) -> None:
    proc = self.pick(_restartable(self))
    self.replaced.add(proc)
    self.do({"op": "restart", "process": proc})


@precondition(lambda self: self.active and len(self.session.live_procs) < self.family.max_processes
              and len(self.session.procs) < 5)
@rule()
def spawn(self: ScenarioMachine) -> None:
    self.do({"op": "spawn"})


@precondition(lambda self: not self.active or not self.session.live_procs)
@rule()
def idle(self: ScenarioMachine) -> None:
    """Nothing left to do: the run ended under the last step, or every process is down for good."""


@precondition(_has_procs)
@rule()
def concurrently(self: ScenarioMachine) -> None:
    kinds = sorted(self.family.group_ops)
    size = 2 + self.choices.integer(2)
    steps = [s for s in (self.build(kinds[self.choices.integer(len(kinds))]) for _ in range(size))
             if s is not None]
    if len(steps) >= 2:
        self.do({"op": "concurrently", "steps": steps})
    elif steps:
        self.do(steps[0])


RULES: dict[str, Callable[..., None]] = {
    f.__name__: f
    for f in (create, start, lookup, reload, attach, detach, stall, release, flood, finish_ok, finish_fail,
              crash, shutdown, restart, spawn, wait, join, concurrently, idle)
}

_CLASSES: dict[str, type[ScenarioMachine]] = {}


def machine_class(family: Family) -> type[ScenarioMachine]:
    """The state machine class of `family`: the base plus the family's rules."""
    key = f"{family.name}:{','.join(sorted(family.rules))}"
    cls = _CLASSES.get(key)
    if cls is None:
        unknown = set(family.rules) - set(RULES)
        if unknown:
            raise ValueError(f"family {family.name!r} names unknown rules {sorted(unknown)}")
        unknown = set(family.targets) - set(SCORES)
        if unknown:
            raise ValueError(f"family {family.name!r} steers by unknown targets {sorted(unknown)}: "
                             f"use labels of scenarios.targets.SCORES ({', '.join(sorted(SCORES))})")
        name = "".join(part.capitalize() for part in family.name.split("_")) + "Machine"
        cls = type(name, (ScenarioMachine,), {r: RULES[r] for r in sorted({*family.rules, "idle"})})
        _CLASSES[key] = cls
    return cls


def machine_factory(search: Search) -> Callable[[], ScenarioMachine]:
    cls = machine_class(search.family)
    return lambda: cls(search)


class ProgramMachine(ScenarioMachine):
    """A machine that plays one fixed program: it sets the operations, the example's data the
    interleavings. The same search as the families' searches it (a regression program, a test's)."""

    program: list[dict[str, Any]] = []

    @initialize(data=st.data())
    def begin(self, data: Any) -> None:
        self.choices.attach_data(data)
        self.session = Session(self.search.adapter, self.choices, max_steps=self.search.profile.max_steps)
        for step in self.program:
            self.do(step)

    @rule()
    def done(self) -> None:
        """The program has run; Hypothesis needs a rule to apply."""


def program_machine_factory(search: Search, program: list[dict[str, Any]]) -> Callable[[], ScenarioMachine]:
    cls = type("ProgramMachine", (ProgramMachine,), {"program": list(program)})
    return lambda: cls(search)
