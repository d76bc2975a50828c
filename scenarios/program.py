"""Programs: scenario steps as JSON, and the one function that executes them on a live run.

A program is a list of steps, each a JSON dict naming an operation of `harness.runner.Run` and the
entities it acts on by position, e.g. ``{"op": "lookup", "task": 0, "process": 1}``. Entities are
numbered in the order the session first saw them: tasks (``"task"``), Python objects of task rows
(``"obj"``), clients (``"client"``) and simulated processes (``"process"``: 0 is the first one, a
``restart`` or ``spawn`` appends the next). ``{"op": "concurrently", "steps": [...]}`` launches its
steps together and leaves their interleaving to the scheduler.

A :class:`Session` is one example: the engine's run driver (`harness.driver.RunDriver`: one
persistent controlled loop and one `Run` on it) and the entity lists. The state machines
(`scenarios.machine`) and `run_program` (which `replay` uses) both go through :func:`execute`, so
the same program with the same tape takes exactly the same scheduling decisions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from harness.adapters import Adapter
from harness.bounds import RUN_MAX_STEPS, RUN_MAX_VIRTUAL_TIME
from harness.choice import ChoiceSource
from harness.driver import Outcome, RunDriver
from harness.errors import UsageError
from harness.probe.gates import FAIL_WAYS, FINISH_WAYS
from harness.runner import ClientRef, ObjRef, TaskRef
from harness.spec import MAX_CLIENT_BUFFER

__all__ = [
    "ASYNC_OPS",
    "CLIENT_OPS",
    "GATE_OPS",
    "OPS",
    "PROCESS_OPS",
    "WAIT_OPS",
    "Session",
    "execute",
    "iter_ops",
    "op_count",
    "run_program",
    "validate_program",
]

ASYNC_OPS = frozenset({"create", "start", "lookup", "reload", "attach", "detach"})
"""Operations that run inside a simulated process (they await the implementation)."""
GATE_OPS = frozenset({"release", "finish_ok", "finish_fail"})
"""Operations on the probe's gates: let the task send its next event (``release``; its next
``count`` events with a count), finish, or raise (``how``: the way it does, see
`harness.probe.gates.FINISH_WAYS` and `FAIL_WAYS`; the plain way when absent)."""
CLIENT_OPS = frozenset({"stall"})
"""A client stops reading but stays connected (it reads again once the run has settled)."""
MAX_RELEASE_COUNT = 2 * MAX_CLIENT_BUFFER
"""A burst may go past the spec's bound on what any implementation may buffer for one client."""
PROCESS_OPS = frozenset({"crash", "shutdown", "restart", "spawn"})
"""Faults and processes: kill a process, stop it gracefully (SIGTERM), kill and replace it, add
one over the same database."""
WAIT_OPS = frozenset({"wait"})
"""Virtual time passes: ``{"op": "wait", "seconds": 40}`` (leases run out, heartbeats fire)."""
MAX_WAIT_SECONDS = 3_600.0
OPS = ASYNC_OPS | GATE_OPS | CLIENT_OPS | PROCESS_OPS | WAIT_OPS | {"concurrently"}


class Session(RunDriver):
    """One example: a run driver (loop, run, recorder) and the entities program steps refer to.

    Drive it with :meth:`step` (one program step at a time, synchronous) and end it with
    :meth:`finish` (settle, record the end, check every clause) or :meth:`close` (discard).
    """

    def __init__(self, adapter: Adapter, choices: ChoiceSource | None = None, *,
                 max_steps: int = RUN_MAX_STEPS, max_virtual_time: float = RUN_MAX_VIRTUAL_TIME,
                 record_trace: bool = False, fresh_database: bool = True,
                 capture_stacks: bool = True) -> None:
        self.program: list[dict[str, Any]] = []
        self.tasks: list[TaskRef | None] = []
        self.objs: list[ObjRef | None] = []
        self.clients: list[ClientRef | None] = []
        self.obj_procs: list[int] = []
        """Object slot -> the process (index) whose operation produced it: the object lives there."""
        self.task_slot_of: dict[int, int] = {}
        """Object slot of a ``create`` -> the task slot it fills."""
        self.procs: list[str] = []
        super().__init__(adapter, choices, max_steps=max_steps, max_virtual_time=max_virtual_time,
                         record_trace=record_trace, fresh_database=fresh_database,
                         capture_stacks=capture_stacks)
        self.procs.append(self.run.main)

    def step(self, step: dict[str, Any]) -> bool:
        """Execute one program step (recorded in `program`); False if the run ended under it."""
        if self.ended is not None:
            raise RuntimeError("the run has ended: no further step can be executed")
        self.program.append(step)
        return self.drive(lambda: execute(self, step))

    # -- entities ---------------------------------------------------------------------------------

    def proc_alive(self, name: str) -> bool:
        return name in self.run.live_processes

    @property
    def live_procs(self) -> list[int]:
        live = set(self.run.live_processes)
        return [i for i, name in enumerate(self.procs) if name in live]

    def usable_objs(self) -> list[int]:
        """Object slots holding an object whose process is alive."""
        return [i for i, o in enumerate(self.objs)
                if o is not None and self.proc_alive(self.procs[self.obj_procs[i]])]

    def known_tasks(self) -> list[int]:
        return [i for i, t in enumerate(self.tasks) if t is not None]

    def open_clients(self) -> list[int]:
        return [i for i, c in enumerate(self.clients) if c is not None and self.client_open(c)]

    def client_open(self, client: ClientRef) -> bool:
        return not client.ended and self.proc_alive(client.process)


async def execute(session: Session, step: dict[str, Any]) -> None:
    """Execute one program step on the session's run (inside its loop).

    Results get their slots when the step is launched, in program order: every ``create``,
    ``lookup`` and ``reload`` appends one slot to ``objs`` (``create`` one to ``tasks`` too), every
    ``attach`` one to ``clients``, so the numbering never depends on the schedule or on what the
    implementation returned. A slot stays None if its operation returned nothing; a step naming
    such a slot does nothing. In a concurrent group an operation whose process crashed before the
    operation began (the scheduler ran a crash of the same group first) does nothing either: that
    is one of the interleavings.
    """
    if step["op"] == "concurrently":
        launched = [(sub, _reserve(session, sub)) for sub in step["steps"]]
        await session.run.concurrently(*(_perform(session, sub, slot, True) for sub, slot in launched))
    else:
        await _perform(session, step, _reserve(session, step), False)


def _reserve(s: Session, step: dict[str, Any]) -> int | None:
    op = step["op"]
    if op in ("create", "lookup", "reload"):
        s.objs.append(None)
        s.obj_procs.append(step.get("process", 0))
        if op == "create":
            s.tasks.append(None)
            s.task_slot_of[len(s.objs) - 1] = len(s.tasks) - 1
        return len(s.objs) - 1
    if op == "attach":
        s.clients.append(None)
        return len(s.clients) - 1
    if op == "concurrently":
        raise UsageError("concurrent groups do not nest")
    return None


async def _perform(s: Session, step: dict[str, Any], slot: int | None, grouped: bool) -> None:
    run = s.run
    op = step["op"]
    if op in GATE_OPS:
        task = s.tasks[step["task"]]
        if task is not None:
            if op == "release":
                run.release(task, int(step.get("count", 1)))
            elif op == "finish_ok":
                run.finish_ok(task, step.get("how", FINISH_WAYS[0]))
            else:
                run.finish_fail(task, step.get("how", FAIL_WAYS[0]))
        return
    if op == "stall":
        client = s.clients[step["client"]]
        if client is not None and s.client_open(client):
            run.stall(client)
        return
    if op == "crash":
        run.crash(s.procs[step["process"]])
        return
    if op == "shutdown":
        await run.shutdown(s.procs[step["process"]])
        return
    if op == "restart":
        s.procs.append(run.restart(s.procs[step["process"]]))
        return
    if op == "spawn":
        s.procs.append(run.spawn())
        return
    if op == "wait":
        await run.wait(float(step["seconds"]))
        return
    if op == "detach":
        client = s.clients[step["client"]]
        if client is not None and not (grouped and not s.proc_alive(client.process)):
            await run.detach(client)
        return
    proc = s.procs[step.get("process", 0)]
    if grouped and not s.proc_alive(proc):
        return
    if op == "create":
        ref = await run.create(proc)
        s.objs[slot] = ref
        if ref is not None:
            s.tasks[s.task_slot_of[slot]] = ref.task
    elif op == "start":
        via = s.objs[step["obj"]]
        if via is not None:
            await run.start(via, proc)
    elif op == "lookup":
        task = s.tasks[step["task"]]
        if task is not None:
            s.objs[slot] = await run.lookup(task, proc, int(step.get("spelling", 0)))
    elif op == "reload":
        task = s.tasks[step["task"]]
        if task is not None:
            s.objs[slot] = await run.reload(task, proc)
    elif op == "attach":
        via = s.objs[step["obj"]]
        if via is not None:
            s.clients[slot] = await run.attach(via, proc)
    else:
        raise UsageError(f"unknown program step {step!r}")


def run_program(adapter: Adapter, program: list[dict[str, Any]], choices: ChoiceSource | None = None, *,
                max_steps: int = RUN_MAX_STEPS, max_virtual_time: float = RUN_MAX_VIRTUAL_TIME,
                record_trace: bool = False, capture_stacks: bool = True) -> Outcome:
    """Execute `program` step by step on one session, settle, and check every clause."""
    validate_program(program)
    session = Session(adapter, choices, max_steps=max_steps, max_virtual_time=max_virtual_time,
                      record_trace=record_trace, capture_stacks=capture_stacks)
    try:
        for step in program:
            if not session.step(step):
                break
        return session.finish()
    finally:
        session.close()


def iter_ops(program: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every leaf operation of `program`, concurrent groups flattened, in program order."""
    for step in program:
        if step["op"] == "concurrently":
            yield from iter_ops(step["steps"])
        else:
            yield step


def op_count(program: list[dict[str, Any]]) -> int:
    """How many operations `program` performs (a concurrent group counts its members)."""
    return sum(1 for _ in iter_ops(program))


def validate_program(program: Any) -> None:
    """Raise UsageError (a ValueError) unless `program` is a list of well-formed steps."""
    if not isinstance(program, list):
        raise UsageError(f"a program is a list of steps, not {type(program).__name__}")
    for step in program:
        if not isinstance(step, dict) or step.get("op") not in OPS:
            raise UsageError(f"not a program step: {step!r}")
        if step["op"] == "concurrently":
            validate_program(step.get("steps"))
        count = step.get("count", 1)
        if step["op"] == "release" and (
            not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_RELEASE_COUNT
        ):
            raise UsageError(f"release count must be an integer from 1 to {MAX_RELEASE_COUNT}: {step!r}")
        seconds = step.get("seconds")
        if step["op"] == "wait" and (not isinstance(seconds, int | float) or isinstance(seconds, bool)
                                     or not 0 < seconds <= MAX_WAIT_SECONDS):
            raise UsageError(f"wait seconds must be a number above 0 and at most {MAX_WAIT_SECONDS:g}: "
                             f"{step!r}")
        ways = {"finish_ok": FINISH_WAYS, "finish_fail": FAIL_WAYS}.get(step["op"])
        if "how" in step and (ways is None or step["how"] not in ways):
            raise UsageError(f"'how' must be one of {', '.join(ways or ())} for {step['op']}: {step!r}")
        spelling = step.get("spelling", 0)
        if step["op"] == "lookup" and (not isinstance(spelling, int) or isinstance(spelling, bool)
                                       or spelling < 0):
            raise UsageError(f"lookup spelling must be a non-negative integer: {step!r}")
