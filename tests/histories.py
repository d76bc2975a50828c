"""A tiny DSL for writing histories by hand, so checker tests read like the scenario they describe.

    s = Scenario()
    s.create("T1", "obj1")
    s.attach("c1", "T1", via="obj1")
    s.start("T1", via="obj1")
    s.enter("T1", "obj1")
    s.broadcast("T1", "start", to=["c1"])     # the probe sends event 1, c1 receives it
    ...
    history = s.end()                           # RunEnd("done") and build

Every method appends records at the current process (`with s.on("p1"): ...` switches) and returns
the index of what it recorded (operations return an `Op` with both indices), so a test can state
which record indices a violation's evidence must name. Virtual time advances by 1 per record.

Also here: the canned histories several tests share (`happy_path`, `seed_issue_1`, `restart`,
`failure`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from harness.history import (
    HARNESS,
    Complete,
    Connections,
    Deliver,
    Fault,
    History,
    Invoke,
    PersistedTask,
    ProcessEnter,
    ProcessExit,
    Record,
    Response,
    RunEnd,
    Send,
    Sent,
    Snapshot,
    StreamEnd,
)

ZERO = {"channels": 0, "tasks": 0, "instances": 0, "loads": 0, "clients": 0}
"""Resource counts of a clean coordinator (names as the reference adapter reports them)."""


def row(status: str, last: int | None = None, error: str | None = None) -> PersistedTask:
    """A persisted task row, e.g. row("completed", last=4)."""
    return PersistedTask(status=status, error=error, last_event_seq=last)


@dataclass(frozen=True)
class Op:
    """Indices of an operation's invocation and completion (None if not completed yet)."""

    op_id: str
    invoke: int
    complete: int | None


class Scenario:
    """Builds a `History` record by record; see the module docstring."""

    def __init__(self, process: str = "p0") -> None:
        self.process = process
        self.records: list[Record] = []
        self._ops = 0
        self._seq: dict[str, int] = {}
        self._types: dict[tuple[str, int], str] = {}
        self._pending: dict[str, int] = {}

    # -- plumbing --

    def add(self, kind: type[Record], process: str | None = None, **fields: Any) -> int:
        index = len(self.records)
        self.records.append(kind(index=index, time=float(index), process=process or self.process, **fields))
        return index

    @contextmanager
    def on(self, process: str) -> Iterator[None]:
        """Record in another simulated process for the duration of the block."""
        previous, self.process = self.process, process
        try:
            yield
        finally:
            self.process = previous

    def build(self) -> History:
        return History(self.records)

    def end(self, reason: str = "done", waiting: Iterable[str] = ()) -> History:
        """Record how the run ended and build the history."""
        self.add(RunEnd, HARNESS, reason=reason, waiting=list(waiting))
        return self.build()

    # -- operations --

    def invoke(self, op: str, task: str | None = None, *, at: str | None = None, **args: Any) -> str:
        """Begin an operation (in process `at`, default the current one); finish it later with
        `complete`, so other records can interleave."""
        self._ops += 1
        op_id = f"op{self._ops}"
        self._pending[op_id] = self.add(Invoke, at, op_id=op_id, op=op, task=task, args=args)
        return op_id

    def complete(self, op_id: str, value: Any = None, status: str = "ok", error: str | None = None) -> Op:
        index = self.add(Complete, op_id=op_id, status=status, value=value, error=error)
        return Op(op_id, self._pending.pop(op_id), index)

    def call(self, op: str, task: str | None = None, *, value: Any = None, status: str = "ok",
             error: str | None = None, **args: Any) -> Op:
        """An operation that completes right after it was invoked."""
        return self.complete(self.invoke(op, task, **args), value, status, error)

    def create(self, task: str, obj: str) -> Op:
        return self.call("create", task, value=obj)

    def start(self, task: str, via: str = "coordinator") -> Op:
        return self.call("start", task, via=via)

    def lookup(self, task: str, returns: str | None) -> Op:
        return self.call("lookup", task, value=returns)

    def reload(self, task: str, returns: str) -> Op:
        return self.call("reload", task, value=returns)

    def attach(self, client: str, task: str, via: str) -> Op:
        return self.call("attach", task, client=client, via=via)

    def detach(self, client: str, task: str | None = None) -> Op:
        """The client leaves: detach op, then its stream ends with "detached"."""
        op = self.call("detach", task, client=client)
        self.end_stream(client, "detached")
        return op

    def crash(self, process: str, clients: Iterable[str] = ()) -> int:
        """Crash `process`; the listed clients (connected there) lose their streams. Returns the
        index of the Fault record."""
        op_id = self.invoke("crash", None, at=HARNESS, process=process)
        fault = self.add(Fault, process, fault="crash")
        for client in clients:
            self.end_stream(client, "crashed", process=process)
        self.add(Complete, HARNESS, op_id=op_id, status="ok")
        return fault

    def shutdown(self, process: str, clients: Iterable[str] = (),
                 cancelled: Iterable[tuple[str, str]] = ()) -> int:
        """Stop `process` gracefully: its listed clients' streams end ("shutdown"), and the listed
        (task, obj) runs exit "cancelled" during the grace period. Returns the Fault's index."""
        op_id = self.invoke("shutdown", None, at=HARNESS, process=process)
        fault = self.add(Fault, process, fault="shutdown")
        for client in clients:
            self.end_stream(client, "shutdown", process=process)
        for task, obj in cancelled:
            self.add(ProcessExit, process, task=task, obj=obj, outcome="cancelled")
        self.add(Complete, HARNESS, op_id=op_id, status="ok")
        return fault

    def restart(self, new: str, replaces: str) -> int:
        op_id = self.invoke("restart", None, at=HARNESS, process=new, replaces=replaces)
        fault = self.add(Fault, new, fault="restart", replaces=replaces)
        self.add(Complete, HARNESS, op_id=op_id, status="ok")
        return fault

    # -- observations --

    def enter(self, task: str, obj: str) -> int:
        return self.add(ProcessEnter, task=task, obj=obj)

    def exit(self, task: str, obj: str, outcome: str = "ok") -> int:
        return self.add(ProcessExit, task=task, obj=obj, outcome=outcome)

    def send(self, task: str, event_type: str = "progress") -> int:
        """The probe sends its next event of `task` (numbered 1, 2, ... per task)."""
        seq = self._seq[task] = self._seq.get(task, 0) + 1
        self._types[(task, seq)] = event_type
        return self.add(Send, task=task, seq=seq, event_type=event_type)

    def sent(self, task: str, seq: int) -> int:
        """The probe's send_event call for event `seq` of `task` returned."""
        return self.add(Sent, task=task, seq=seq)

    def seq(self, task: str) -> int:
        """Number of the latest event sent for `task`."""
        return self._seq[task]

    def deliver(self, client: str, task: str, seq: int | None, event_type: str | None = None) -> int:
        """`client` receives event `seq` (its type as sent), or a synthesized one (seq None)."""
        if event_type is None:
            event_type = self._types[(task, seq)] if seq is not None else "final_state"
        return self.add(Deliver, client=client, task=task, seq=seq, event_type=event_type)

    def broadcast(self, task: str, event_type: str = "progress", to: Iterable[str] = ()) -> int:
        """Send the next event and deliver it to each listed client; returns the Send's index."""
        index = self.send(task, event_type)
        for client in to:
            self.deliver(client, task, self.seq(task))
        return index

    def end_stream(self, client: str, reason: str = "terminal", process: str | None = None) -> int:
        return self.add(StreamEnd, process, client=client, reason=reason)

    def snapshot(
        self,
        resources: dict[str, int] | None = None,
        persisted: dict[str, PersistedTask] | None = None,
        buffers: dict[str, int] | None = None,
        buffer_limit: int | None = None,
    ) -> int:
        return self.add(
            Snapshot,
            resources=dict(ZERO if resources is None else resources),
            persisted=dict(persisted or {}),
            buffers=buffers,
            buffer_limit=buffer_limit,
        )


# -- canned histories ----------------------------------------------------------------------------


def happy_path(end: bool = True) -> History:
    """Everything right: clients attached via the created object, a lookup, a reload and a late
    lookup all get what they are owed; the coordinator is clean at the end."""
    s = Scenario()
    s.create("T1", "obj1")
    s.attach("c1", "T1", via="obj1")
    s.start("T1", via="obj1")
    s.enter("T1", "obj1")
    s.broadcast("T1", "start", to=["c1"])                     # event 1
    s.lookup("T1", returns="obj1")                            # S1: the running object
    s.attach("c2", "T1", via="obj1")
    s.deliver("c2", "T1", 1)                                  # S3: replay of the latest
    s.call("release", "T1")
    s.broadcast("T1", "progress", to=["c1", "c2"])            # event 2
    s.reload("T1", returns="obj2")                            # a fresh object from the database
    s.attach("c3", "T1", via="obj2")
    s.deliver("c3", "T1", 2)                                  # S2: attached via another object, fine
    s.call("finish_ok", "T1")
    s.broadcast("T1", "complete", to=["c1", "c2", "c3"])      # event 3, terminal
    for client in ("c1", "c2", "c3"):
        s.end_stream(client)
    s.exit("T1", "obj1", "ok")
    s.lookup("T1", returns="obj3")                            # after the end: a fresh load is fine
    s.attach("c4", "T1", via="obj3")
    s.deliver("c4", "T1", None, "complete")                   # S5: final state for a late joiner
    s.end_stream("c4")
    s.snapshot(persisted={"T1": row("completed", last=3)}, buffers={})
    return s.end() if end else s.build()


def seed_issue_1(end: str = "done") -> History:
    """Issue #1 as a history: while obj1 runs T1, a lookup loads obj2 from the database; client c2
    attaches through obj2 and never receives anything, not even the latest event."""
    s = Scenario()
    s.create("T1", "obj1")                                    # 0, 1
    s.attach("c1", "T1", via="obj1")                          # 2, 3
    s.start("T1", via="coordinator")                          # 4, 5
    s.enter("T1", "obj1")                                     # 6
    s.broadcast("T1", "start", to=["c1"])                     # 7 send 1, 8
    s.broadcast("T1", "progress", to=["c1"])                  # 9 send 2, 10
    s.lookup("T1", returns="obj2")                            # 11, 12: the bug, obj2 is not obj1
    s.attach("c2", "T1", via="obj2")                          # 13, 14: c2 gets nothing from here on
    s.broadcast("T1", "progress", to=["c1"])                  # 15 send 3, 16
    s.broadcast("T1", "complete", to=["c1"])                  # 17 send 4, 18
    s.end_stream("c1")                                        # 19
    s.exit("T1", "obj1", "ok")                                # 20
    s.snapshot(                                               # 21: c2 is still registered
        resources={**ZERO, "clients": 1}, persisted={"T1": row("completed", last=4)}, buffers={"c2": 0}
    )
    return s.end(end, waiting=["c2"] if end == "hang" else ())


def restart(end: bool = True) -> History:
    """p0 crashes while obj1 runs T1 (after event 2); p1 starts over the same database, a lookup
    resumes T1 once on obj2, and c2 joining there first gets the persisted event 2."""
    s = Scenario()
    s.create("T1", "obj1")
    s.attach("c1", "T1", via="obj1")
    s.start("T1", via="obj1")
    s.enter("T1", "obj1")
    s.broadcast("T1", "start", to=["c1"])                     # event 1
    s.broadcast("T1", "progress", to=["c1"])                  # event 2
    s.crash("p0", clients=["c1"])
    s.restart("p1", replaces="p0")
    with s.on("p1"):
        s.snapshot(persisted={"T1": row("running", last=2)}, buffers={})
        op = s.invoke("lookup", "T1")
        s.enter("T1", "obj2")                                 # the lookup resumes T1
        s.complete(op, "obj2")
        s.attach("c2", "T1", via="obj2")
        s.deliver("c2", "T1", 2)                              # S7.2: persisted latest event
        s.broadcast("T1", "progress", to=["c2"])              # event 3
        s.broadcast("T1", "complete", to=["c2"])              # event 4
        s.end_stream("c2")
        s.exit("T1", "obj2", "ok")
        s.snapshot(persisted={"T1": row("completed", last=4)}, buffers={})
    return s.end() if end else s.build()


def failure() -> History:
    """T1's process() raises after event 1: c1 gets the error, the row says failed, and c2
    joining later gets the error too."""
    s = Scenario()
    s.create("T1", "obj1")
    s.attach("c1", "T1", via="obj1")
    s.start("T1", via="obj1")
    s.enter("T1", "obj1")
    s.broadcast("T1", "start", to=["c1"])                     # event 1
    s.call("finish_fail", "T1")
    s.broadcast("T1", "error", to=["c1"])                     # event 2, terminal
    s.end_stream("c1")
    s.exit("T1", "obj1", "error")
    s.lookup("T1", returns="obj2")
    s.attach("c2", "T1", via="obj2")
    s.deliver("c2", "T1", None, "error")
    s.end_stream("c2")
    s.snapshot(persisted={"T1": row("failed", last=2, error="boom")}, buffers={})
    return s.end()


# -- over the wire (the HTTP mode) ---------------------------------------------------------------

GOOD_HEAD = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}


def op_index(s: Scenario, op_id: str) -> int:
    """The index of the invocation of `op_id`."""
    return next(r.index for r in s.records if isinstance(r, Invoke) and r.op_id == op_id)


def attached(s: Scenario, client: str = "c1", *, status: int = 200, headers: dict[str, str] | None = None,
              after: float = 0.01, process: str = "p0") -> tuple[int, int]:
    """A client's stream request and its response head; returns their indices."""
    op = s.invoke("attach", "T1", at=process, client=client, via=None)
    head = s.add(Response, process, client=client, status=status,
                 headers=GOOD_HEAD if headers is None else headers, after=after)
    s.complete(op, status="ok" if status == 200 else "fail")
    return op_index(s, op), head


def wire_happy() -> History:
    """One task, one client over the wire, two events and the end: every wire clause holds."""
    s = Scenario()
    s.call("create", None, value="T1")
    attached(s)
    s.enter("T1", "p0:obj1")
    s.broadcast("T1", to=["c1"])
    s.broadcast("T1", "complete", to=["c1"])
    s.end_stream("c1")
    s.exit("T1", "p0:obj1")
    op = s.invoke("request", None, at="p0", client="r1", method="GET", path="/stream/a/B/abc", headers={})
    s.add(Response, "p0", client="r1", status=400, headers={}, after=0.01)
    s.complete(op)
    refused(s, "no signature", (404, "Task not found"), (404, "Task not found"))
    s.add(Connections, "p0", held=0, waited=0.0)
    shutdown = s.invoke("shutdown", None, at=HARNESS, process="p0")
    s.complete(shutdown, value={"seconds": 0.4})
    return s.end()


def refused(s: Scenario, how: str, answer: tuple[int, str], missing: tuple[int, str]) -> tuple[int, int]:
    """W7's pair of requests made `how` (for task 7 and for the missing task 1000007) with their
    answers (status, body); returns the indices of the first request and of its response."""
    first = (0, 0)
    for pk, (status, body), is_missing in ((7, answer, False), (1000007, missing, True)):
        name = f"r{len(s.records)}"
        op = s.invoke("intrude", "T1", at="p0", client=name, how=how, path=f"/stream/a/B/{pk}",
                      missing=is_missing)
        head = s.add(Response, "p0", client=name, status=status, headers={}, after=0.01, body=body)
        s.complete(op, value={"status": status})
        if not is_missing:
            first = (op_index(s, op), head)
    return first


