"""The operations of one run against one implementation: tasks, clients and faults, all recorded.

A `Run` is a scenario's handle: every method is an operation (`create`, `start`, `lookup`,
`reload`, `attach`, `detach`, `release`, `finish_ok`, `finish_fail`, `stall`, `crash`, `shutdown`,
`restart`, `wait`),
alone or several at once with `concurrently`, and the controlled event loop decides how they
interleave. `harness.driver` owns the loop a run lives on, settles it and judges its history.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from harness.adapters import Adapter, SutProcess, check_process, spellings_of
from harness.bounds import SETTLE_ROUNDS, SETTLE_SECONDS, SHUTDOWN_GRACE
from harness.history import (
    HARNESS,
    Complete,
    Fault,
    Invoke,
    PersistedTask,
    ProcessEnter,
    ProcessExit,
    Send,
    Sent,
    Snapshot,
    StreamEnd,
)
from harness.probe import stacks
from harness.probe.gates import FAIL_WAYS, FINISH_WAYS, RAISE, RETURN, SEND, Gates, ProbeHooks, activate_gates
from harness.recorder import Recorder
from harness.records import Conventions, record_read

_process: contextvars.ContextVar[str] = contextvars.ContextVar("streamspec_process", default=HARNESS)


@dataclass(eq=False)
class TaskRef:
    token: str
    pk: Any


@dataclass(eq=False)
class ObjRef:
    """One Python object of a task row (the object itself is kept alive so its id stays unique)."""

    token: str
    task: TaskRef
    obj: Any = field(repr=False)


@dataclass
class RunStacks:
    """Call stacks captured during the run, for bug reports (see `harness.probe.stacks`); they are
    not part of the history. Keys are the history's tokens and record indices."""

    objects: dict[str, stacks.Stack] = field(default_factory=dict)
    """Object token -> where the implementation created that Python object."""
    runs: dict[int, stacks.Stack] = field(default_factory=dict)
    """ProcessEnter index -> the stack inside process() when the run entered it."""
    spawned: dict[int, stacks.Stack] = field(default_factory=dict)
    """ProcessEnter index -> where the asyncio task running process() was created."""
    clients: dict[str, list[stacks.Stack]] = field(default_factory=dict)
    """Client token -> distinct stacks of the implementation touching its queue (register, put)."""


class _TracedQueue(asyncio.Queue):
    """A client queue that remembers where the implementation registered it and put events into it."""

    def __init__(self, sink: list[stacks.Stack], key: int = 0, capture: bool = True) -> None:
        super().__init__()
        self._key = key
        self._sink = sink
        self._capture = capture
        self._seen: set[stacks.Stack] = set()

    def _note(self) -> None:
        if not self._capture:
            return
        stack = stacks.here(3)
        if stack not in self._seen:
            self._seen.add(stack)
            self._sink.append(stack)

    def __hash__(self) -> int:  # a set or dict of clients hashes the queue when registering it
        self._note()
        # The client's number, not its address: an implementation iterating a set of client queues
        # then visits them in the same order in every run, so a tape replays exactly.
        return self._key

    def put_nowait(self, item: Any) -> None:
        self._note()
        super().put_nowait(item)

    async def put(self, item: Any) -> None:
        self._note()
        await super().put(item)


@dataclass(eq=False)
class ClientRef:
    token: str
    task: TaskRef
    process: str
    via: ObjRef
    queue: asyncio.Queue = field(repr=False)
    consumer: asyncio.Task | None = field(default=None, repr=False)
    ended: bool = False
    stalled: bool = False
    """It stopped reading: what the implementation hands it waits in its queue."""


@dataclass(eq=False)
class _Proc:
    name: str
    host: Any
    sut: SutProcess
    crashed: asyncio.Future
    stopping: bool = False
    """A graceful shutdown has begun: it takes no new operation."""


class Run:
    """The scenario's handle on one run: every method is an operation, recorded in the history."""

    def __init__(self, adapter: Adapter, recorder: Recorder, model: type | None = None, *,
                 capture_stacks: bool = True) -> None:
        from harness.probe.models import ProbeTask

        self.adapter = adapter
        self.conventions = Conventions.of(adapter)
        """How the implementation's client items read (its adapter's hooks, else the reference's)."""
        self.model = model or ProbeTask
        self.recorder = recorder
        self.gates = Gates(ProbeHooks(self._entered, self._exited, self._sending, self._sent),
                           capture_stacks=capture_stacks)
        self._loop = asyncio.get_running_loop()
        self._procs: dict[str, _Proc] = {}
        self._tasks: dict[Any, TaskRef] = {}
        self._objs: dict[int, ObjRef] = {}
        self._clients: dict[str, ClientRef] = {}
        self._active_runs: dict[tuple[str, Any], int] = {}
        self._ops = 0
        self._waits = 0
        self._tasks_made = 0
        self._slow_offloads = True
        self.stacks = RunStacks()
        self._spawned: weakref.WeakKeyDictionary[asyncio.Task, stacks.Stack] = weakref.WeakKeyDictionary()
        self._created: weakref.WeakKeyDictionary[asyncio.Task, int] = weakref.WeakKeyDictionary()
        self._loop.set_task_factory(self._task_factory)
        self.main = self.spawn()

    @property
    def capture_stacks(self) -> bool:
        """Whether call stacks are captured (`stacks`): only reports read them, and a search's
        examples are many; a failure's report replays it with them (the same run)."""
        return self.gates.capture_stacks

    # -- processes --------------------------------------------------------------------------------

    def spawn(self) -> str:
        name = f"p{len(self._procs)}"
        sut = self.adapter.new_process(name)
        check_process(sut)
        self._procs[name] = _Proc(name, self._loop.spawn_process(name), sut, self._loop.create_future())
        return name

    @property
    def live_processes(self) -> list[str]:
        """Processes that take operations: not crashed, not shutting down."""
        return [p.name for p in self._procs.values() if not p.crashed.done() and not p.stopping]

    def crash(self, process: str) -> None:
        """Kill a simulated process as kill -9 would: its coroutines never run again, no cleanup."""
        proc = self._procs[process]
        if proc.crashed.done():
            return
        op_id = self._invoke("crash", None, {"process": process}, HARNESS)
        self._loop.crash(proc.host)
        proc.crashed.set_result(True)
        self.recorder.add(Fault, process, fault="crash")
        for client in self._clients.values():
            if client.process == process and not client.ended:
                client.ended = True
                self.recorder.add(StreamEnd, process, client=client.token, reason="crashed")
        self._active_runs = {k: v for k, v in self._active_runs.items() if k[0] != process}
        self.recorder.add(Complete, HARNESS, op_id=op_id, status="ok")

    async def shutdown(self, process: str) -> None:
        """Stop a simulated process gracefully, as on SIGTERM: every coroutine of the process is
        cancelled and may run its clean-up (``except``/``finally``, database writes) for up to
        `SHUTDOWN_GRACE` virtual seconds; then the process is gone, and whatever still runs there is
        frozen as by a crash. Its clients' streams end ("shutdown"): a browser reconnects elsewhere."""
        proc = self._procs[process]
        if proc.crashed.done() or proc.stopping:
            return
        op_id = self._invoke("shutdown", None, {"process": process}, HARNESS)
        proc.stopping = True
        self.recorder.add(Fault, process, fault="shutdown")
        for client in self._clients.values():
            if client.process == process and not client.ended:
                client.ended = True
                self.recorder.add(StreamEnd, process, client=client.token, reason="shutdown")
        # In the order the tasks were created: the order of the cancellations is the order their
        # callbacks become ready, so a set's order would make the run unrepeatable (and names do
        # not do: an implementation may give two tasks the same one).
        running = sorted(proc.host.tasks(), key=lambda t: (self._created.get(t, -1), t.get_name()))
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=SHUTDOWN_GRACE)
        if not proc.crashed.done():  # (a crash may have cut the grace period short)
            self._loop.crash(proc.host)
            proc.crashed.set_result(True)
        self._active_runs = {k: v for k, v in self._active_runs.items() if k[0] != process}
        self.recorder.add(Complete, HARNESS, op_id=op_id, status="ok")

    def restart(self, process: str) -> str:
        """Crash `process` if it is alive, then start a new process over the same database."""
        self.crash(process)
        new = self.spawn()
        op_id = self._invoke("restart", None, {"process": new, "replaces": process}, HARNESS)
        self.recorder.add(Fault, new, fault="restart", replaces=process)
        self.recorder.add(Complete, HARNESS, op_id=op_id, status="ok")
        return new

    # -- operations on tasks ----------------------------------------------------------------------

    async def create(self, process: str | None = None) -> ObjRef | None:
        async def body(sut: SutProcess) -> ObjRef:
            obj = await self.model._default_manager.acreate()
            return self._obj(obj)

        return await self._op("create", None, {}, process, body)

    async def start(self, via: ObjRef, process: str | None = None) -> None:
        async def body(sut: SutProcess) -> None:
            await sut.start(via.obj)

        await self._op("start", via.task, {"via": via.token}, process, body)

    def spellings(self, task: TaskRef) -> list[tuple[str, str, str]]:
        """The ways a request may name `task`'s row that the implementation accepts, the canonical
        one first (see `harness.adapters.spellings_of`)."""
        return spellings_of(self.adapter, self.model, task.pk)

    async def lookup(self, task: TaskRef, process: str | None = None, spelling: int = 0) -> ObjRef | None:
        """What a new client's request does: the implementation's lookup with the strings of its URL
        (app label, model name, pk), spelled the `spelling`-th way the implementation accepts."""
        names = self.spellings(task)
        app_label, model_name, pk = names[spelling % len(names)]

        async def body(sut: SutProcess) -> ObjRef | None:
            obj = await sut.lookup(app_label, model_name, pk)
            return None if obj is None else self._obj(obj)

        args = {} if spelling % len(names) == 0 else {"spelling": [app_label, model_name, pk]}
        return await self._op("lookup", task, args, process, body)

    async def reload(self, task: TaskRef, process: str | None = None) -> ObjRef | None:
        async def body(sut: SutProcess) -> ObjRef:
            return self._obj(await sut.reload(self.model, task.pk))

        return await self._op("reload", task, {}, process, body)

    async def attach(self, via: ObjRef, process: str | None = None) -> ClientRef | None:
        name = process or self.main
        token = f"c{len(self._clients) + 1}"
        queue = _TracedQueue(self.stacks.clients.setdefault(token, []), len(self._clients) + 1,
                             self.capture_stacks)
        client = ClientRef(token, via.task, name, via, queue)
        self._clients[token] = client

        async def body(sut: SutProcess) -> None:
            client.consumer = asyncio.get_running_loop().create_task(self._consume(client))
            await sut.attach(via.obj, client.queue)

        await self._op("attach", via.task, {"client": token, "via": via.token}, name, body)
        return client

    async def detach(self, client: ClientRef) -> None:
        # The client reads what the implementation already handed it, then leaves: events in its
        # queue were delivered, and a client that disconnects is owed nothing after it left.
        while not client.ended and not client.queue.empty():
            self._record_event(client, client.queue.get_nowait())

        async def body(sut: SutProcess) -> None:
            await sut.detach(client.via.obj, client.queue)
            if not client.ended:
                client.ended = True
                if client.consumer is not None:
                    client.consumer.cancel()
                self.recorder.add(StreamEnd, client.process, client=client.token, reason="detached")

        await self._op("detach", client.task, {"client": client.token}, client.process, body)

    def stall(self, client: ClientRef) -> None:
        """The client stops reading (a browser tab in the background, a stuck proxy) but stays
        connected: what the implementation hands it waits in its queue (S8.2 bounds that). It reads
        again once the run has settled and its buffers were measured."""
        if client.ended or client.stalled:
            return
        op_id = self._invoke("stall", client.task, {"client": client.token}, client.process)
        client.stalled = True
        if client.consumer is not None:
            client.consumer.cancel()  # a cancelled Queue.get() loses no item
        self.recorder.add(Complete, client.process, op_id=op_id, status="ok")

    def release(self, task: TaskRef, count: int = 1) -> None:
        """Let the probe send its next event (its next `count` events, one after the other)."""
        if count == 1:
            self._gate("release", task, SEND)
        else:
            self._gate("release", task, SEND, times=count, count=count)

    def finish_ok(self, task: TaskRef, how: str = FINISH_WAYS[0]) -> None:
        """Let the probe finish: send ``complete`` and return, or another way of `FINISH_WAYS`."""
        self._finish("finish_ok", task, RETURN, how, FINISH_WAYS)

    def finish_fail(self, task: TaskRef, how: str = FAIL_WAYS[0]) -> None:
        """Make the probe raise: an ordinary exception, or another way of `FAIL_WAYS`."""
        self._finish("finish_fail", task, RAISE, how, FAIL_WAYS)

    def _finish(self, op: str, task: TaskRef, command: str, how: str, ways: tuple[str, ...]) -> None:
        if how not in ways:
            raise ValueError(f"{op}: how={how!r} is not one of {', '.join(ways)}")
        if how == ways[0]:
            self._gate(op, task, command)
        else:
            self._gate(op, task, f"{command}:{how}", how=how)

    async def wait(self, seconds: float) -> None:
        """A quiet spell: `seconds` of virtual time pass with no operation (leases run out,
        heartbeats and polls fire). Database calls return before timers meanwhile, as when the
        run settles: a live process's lease renewal is never stalled past its lease by the
        harness itself, which would make a correct takeover look like a double run."""
        op_id = self._invoke("wait", None, {"seconds": seconds}, HARNESS)
        # Counted, not saved and restored: of two waits in one concurrent group, the shorter must
        # not turn slow calls back on while the longer still runs.
        if not self._waits:
            self._slow_offloads = self._loop.slow_offloads
        self._waits += 1
        self._loop.slow_offloads = False
        try:
            await asyncio.sleep(seconds)
        finally:
            self._waits -= 1
            if not self._waits:
                self._loop.slow_offloads = self._slow_offloads
        self.recorder.add(Complete, HARNESS, op_id=op_id, status="ok")

    async def concurrently(self, *operations: Awaitable[Any]) -> list[Any]:
        """Launch operations together; the scheduler decides how they interleave."""
        return list(await asyncio.gather(*operations))

    def task_of(self, obj: ObjRef) -> TaskRef:
        return obj.task

    # -- settling ---------------------------------------------------------------------------------

    async def settle(self) -> None:
        """Finish what still runs, give the system time to deliver, and take snapshots.

        In rounds: a task may start only while the system settles (a process taking over the task
        of a crashed one once its lease ran out), and is then finished in the next round. Database
        calls no longer lose to timers here: what is owed must arrive under fair scheduling."""
        self._loop.slow_offloads = False
        opened: dict[tuple[str, Any], int] = {}
        for _ in range(SETTLE_ROUNDS):
            for key, active in list(self._active_runs.items()):
                for _ in range(active - opened.get(key, 0)):
                    self._gate("finish_ok", self._tasks[key[1]], RETURN, teardown=True)
                opened[key] = max(active, opened.get(key, 0))
            pending = [
                c.consumer for c in self._clients.values()
                if c.consumer is not None and not c.ended and not c.stalled
                and not self._procs[c.process].crashed.done()
            ]
            if pending:
                await asyncio.wait(pending, timeout=SETTLE_SECONDS)
            await asyncio.sleep(SETTLE_SECONDS)  # let coordinators finish their own clean-up
            if not any(self._active_runs.values()):
                break
        await self.snapshot()
        for client in self._clients.values():  # the stalled read again: what waited is delivered
            if client.stalled and not self._procs[client.process].crashed.done():
                while not client.ended and not client.queue.empty():
                    self._record_event(client, client.queue.get_nowait())

    async def snapshot(self) -> None:
        persisted = {}
        for ref in self._tasks.values():
            row = await self.adapter.persisted(self.model, ref.pk)
            persisted[ref.token] = persisted_task(row, self.conventions)
        buffers = {c.token: c.queue.qsize() for c in self._clients.values() if not c.ended}
        limit = getattr(self.adapter, "buffer_limit", None)
        limit = limit() if callable(limit) else None
        for proc in self._procs.values():
            if not proc.crashed.done():
                self.recorder.add(Snapshot, proc.name, resources=dict(proc.sut.resources()),
                                  persisted=persisted, buffers=buffers, buffer_limit=limit)

    def waiting_clients(self) -> list[str]:
        return [c.token for c in self._clients.values() if not c.ended]

    # -- internals --------------------------------------------------------------------------------

    def _invoke(self, op: str, task: TaskRef | None, args: dict[str, Any], process: str) -> str:
        self._ops += 1
        op_id = f"op{self._ops}"
        self.recorder.add(Invoke, process, op_id=op_id, op=op, task=task.token if task else None, args=args)
        return op_id

    def _gate(self, op: str, task: TaskRef, command: str, times: int = 1, **args: Any) -> None:
        op_id = self._invoke(op, task, args, HARNESS)
        for _ in range(times):
            self.gates.open(task.pk, command)
        self.recorder.add(Complete, HARNESS, op_id=op_id, status="ok")

    async def _op(self, op: str, task: TaskRef | None, args: dict[str, Any], process: str | None,
                  body: Callable[[SutProcess], Awaitable[Any]]) -> Any:
        proc = self._procs[process or self.main]
        if proc.crashed.done() or proc.stopping:
            raise ValueError(f"process {proc.name} has crashed or shut down: restart it or use another one")
        op_id = self._invoke(op, task, args, proc.name)

        async def in_process() -> Any:
            _process.set(proc.name)
            proc.sut.activate()
            activate_gates(self.gates)
            try:
                value = await body(proc.sut)
            except Exception as exc:
                self.recorder.add(Complete, proc.name, op_id=op_id, status="fail",
                                  error=f"{type(exc).__name__}: {exc}")
                return None
            token = value.token if isinstance(value, ObjRef) else None
            self.recorder.add(Complete, proc.name, op_id=op_id, status="ok", value=token)
            return value

        task_ = proc.host.create_task(in_process())
        await asyncio.wait({task_, proc.crashed}, return_when=asyncio.FIRST_COMPLETED)
        if task_.done() and not task_.cancelled():
            return task_.result()
        return None  # crashed or shut down under it: outcome unknown

    def _obj(self, obj: Any) -> ObjRef:
        ref = self._objs.get(id(obj))
        if ref is None:
            task = self._tasks.get(obj.pk)
            if task is None:
                task = self._tasks[obj.pk] = TaskRef(f"T{len(self._tasks) + 1}", obj.pk)
            ref = self._objs[id(obj)] = ObjRef(f"obj{len(self._objs) + 1}", task, obj)
            self.stacks.objects[ref.token] = getattr(obj, "_streamspec_created", ())
        return ref

    async def _consume(self, client: ClientRef) -> None:
        while not client.ended:
            self._record_event(client, await client.queue.get())

    def _record_event(self, client: ClientRef, event: Any) -> None:
        """The client read `event`: a delivery, and the end of its stream if it was the last."""
        if not client.ended:
            client.ended = record_read(self.recorder.add, client.process, client.token, client.task.token,
                                       event, self.conventions)

    def _task_factory(self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task:
        """Create tasks as asyncio does, remembering where each was created (who started a run)."""
        task = asyncio.Task(coro, loop=loop, **kwargs)
        if self.capture_stacks:
            self._spawned[task] = stacks.here(2)
        self._tasks_made += 1
        self._created[task] = self._tasks_made
        return task

    # probe hooks: called from inside process(), in the process that runs it

    def _entered(self, task: Any) -> None:
        ref = self._obj(task)
        key = (_process.get(), task.pk)
        self._active_runs[key] = self._active_runs.get(key, 0) + 1
        record = self.recorder.add(ProcessEnter, _process.get(), task=ref.task.token, obj=ref.token)
        if record is not None and self.capture_stacks:
            self.stacks.runs[record.index] = stacks.here(2)
            current = asyncio.current_task()
            if current is not None and current in self._spawned:
                self.stacks.spawned[record.index] = self._spawned[current]

    def _exited(self, task: Any, outcome: str) -> None:
        ref = self._obj(task)
        key = (_process.get(), task.pk)
        if self._active_runs.get(key):
            self._active_runs[key] -= 1
        self.recorder.add(ProcessExit, _process.get(), task=ref.task.token, obj=ref.token, outcome=outcome)

    def _sending(self, task: Any, seq: int, event_type: str) -> None:
        token = self._obj(task).task.token
        self.recorder.add(Send, _process.get(), task=token, seq=seq, event_type=event_type)

    def _sent(self, task: Any, seq: int) -> None:
        self.recorder.add(Sent, _process.get(), task=self._obj(task).task.token, seq=seq)


def persisted_task(row: dict[str, Any], conventions: Conventions) -> PersistedTask:
    """A row as the adapter's `persisted` reports it, as the history records it."""
    status = row.get("status") or "pending"
    if status not in ("pending", "running", "completed", "failed"):
        status = "pending"
    error = row.get("error")
    # The stored event reads as the clients' items do (the adapter's event_parts).
    last = row.get("last_event")
    seq = None if last is None else conventions.seq_of(last)
    error_text = None if error is None else json.dumps(error, sort_keys=True)
    return PersistedTask(status=status, error=error_text, last_event_seq=seq)
