"""The last piece of a standalone reproduction script: simulated processes, the attempts, ``main``.

See `streamspec.reports.repro_template` for how the pieces become one script. The world records
what happens as a `harness.history.History`, record for record as `harness.runner` records a run
(the same operations, deliveries and stream ends, snapshots after the run settled), so that the
clause's checker, inlined into the script, judges it exactly as it judges the harness's runs.

Long: it mirrors `harness.runner`'s every operation (the scripts cannot import the engine), and a
script is read top to bottom by the person filing the bug: one world reads better than a split one.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import shutil
import sys
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from harness.adapters import default_spellings
from harness.bounds import SETTLE_ROUNDS, SETTLE_SECONDS, SHUTDOWN_GRACE
from harness.checkers.base import ClauseResult, Verdict
from harness.checkers.s1_identity import check  # the script's own clause's checker, inlined
from harness.history import (
    HARNESS,
    Complete,
    Fault,
    History,
    Invoke,
    ProcessEnter,
    ProcessExit,
    Record,
    RunEnd,
    Send,
    Sent,
    Snapshot,
    StreamEnd,
)
from harness.probe.gates import Gates, ProbeFailure, ProbeHooks  # the probe's own gates, inlined
from harness.records import record_read
from streamspec.reports.repro_template import (
    ADAPTER,
    BUFFER_LIMIT,
    CLAUSE,
    DEFAULT_PACKAGE,
    FROZEN,
    IMPLEMENTATION,
    LEVEL,
    LOOKUP_PK_AS_INT,
    MODEL_NAME,
    PROCESS,
    REQUIREMENT,
    SEEDS,
    STATE,
    STEPS,
    TAPE,
    TITLE,
    Bound,
    Choices,
    Hang,
    Loop,
    Worker,
    empty_tables,
    load_conventions,
    new_coordinator,
    resources,
    setup_django,
    steps,
    stored_row,
)

# == the world: simulated processes, operations, and what happened (a history) =====================


class Process:
    """A simulated server process: its own coordinator, the shared database; it can crash."""

    def __init__(self, world: World, name: str) -> None:
        self.world, self.name, self.crashed = world, name, False
        self.stopping = False
        self.coordinator = new_coordinator(name)
        self.dead = world.loop.create_future()
        self.tasks: list[asyncio.Task[Any]] = []
        """Every task started in this process (by the script or the implementation), in order."""

    def run(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        context = contextvars.copy_context()
        context.run(PROCESS.set, self)
        activate = getattr(self.coordinator, "activate", None)
        if callable(activate):
            context.run(activate)  # an implementation that finds its coordinator through a contextvar
        return self.world.loop.create_task(coro, context=context)


class TaskRef:
    def __init__(self, token: str, pk: Any) -> None:
        self.token, self.pk = token, pk


class Client:
    def __init__(self, token: str, task: TaskRef, process: Process, via: Any) -> None:
        self.token, self.task, self.process, self.via = token, task, process, via
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.consumer: asyncio.Task[Any] | None = None
        self.ended = False
        self.stalled = False


class World:
    """What the steps call. Each operation runs inside its simulated process and is recorded."""

    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.records: list[Record] = []
        self.processes: list[Process] = []
        self.tasks: dict[Any, TaskRef] = {}
        self.objects: dict[int, tuple[str, Any]] = {}
        self.clients: list[Client] = []
        self.probe = Gates(ProbeHooks(self._entered, self._exited, self._sending, self._sent))
        self.active: dict[tuple[str, Any], int] = {}
        self.ops = 0
        self.waits = 0
        loop.set_task_factory(self._task_factory)
        self.spawn()

    @staticmethod
    def _task_factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        """Tasks as asyncio makes them, each remembered by the process it was started in (for a
        graceful shutdown, which cancels them)."""
        task = asyncio.Task(coro, loop=loop, **kwargs)
        context = kwargs.get("context")
        process = context.get(PROCESS) if context is not None else PROCESS.get()
        if process is not None:
            process.tasks.append(task)
        return task

    # -- recording --

    def add(self, kind: type[Record], process: str, **values: Any) -> None:
        self.records.append(kind(index=len(self.records), time=self.loop.time(), process=process, **values))

    def invoke(self, process: str, op: str, task: TaskRef | None, args: dict[str, Any]) -> str:
        self.ops += 1
        op_id = f"op{self.ops}"
        self.add(Invoke, process, op_id=op_id, op=op, task=task.token if task else None, args=args)
        return op_id

    def obj(self, instance: Any) -> str | None:
        if instance is None:
            return None
        known = self.objects.get(id(instance))
        if known is None:
            known = self.objects[id(instance)] = (f"obj{len(self.objects) + 1}", instance)
        self.task_of_pk(instance.pk)
        return known[0]

    def task_of_pk(self, pk: Any) -> TaskRef:
        ref = self.tasks.get(pk)
        if ref is None:
            ref = self.tasks[pk] = TaskRef(f"T{len(self.tasks) + 1}", pk)
        return ref

    def task(self, instance: Any) -> TaskRef | None:
        return None if instance is None else self.task_of_pk(instance.pk)

    # -- processes --

    def spawn(self) -> Process:
        process = Process(self, f"p{len(self.processes)}")
        self.processes.append(process)
        return process

    async def crash(self, process: Process) -> None:
        await asyncio.sleep(0)  # every step begins by letting what is already ready run first
        self.kill(process)

    def kill(self, process: Process) -> None:
        """As kill -9 would: the process's coroutines never run again, nothing is cleaned up."""
        if process.crashed:
            return
        op_id = self.invoke(HARNESS, "crash", None, {"process": process.name})
        process.crashed = True
        process.dead.set_result(True)
        self.add(Fault, process.name, fault="crash")
        for client in self.clients:
            if client.process is process and not client.ended:
                client.ended = True
                self.add(StreamEnd, process.name, client=client.token, reason="crashed")
        self.active = {k: v for k, v in self.active.items() if k[0] != process.name}
        self.add(Complete, HARNESS, op_id=op_id, status="ok")

    async def restart(self, process: Process) -> Process:
        await asyncio.sleep(0)
        self.kill(process)
        new = self.spawn()
        op_id = self.invoke(HARNESS, "restart", None, {"process": new.name, "replaces": process.name})
        self.add(Fault, new.name, fault="restart", replaces=process.name)
        self.add(Complete, HARNESS, op_id=op_id, status="ok")
        return new

    async def shutdown(self, process: Process) -> None:
        """As SIGTERM: the process's tasks are cancelled and get SHUTDOWN_GRACE to clean up, then
        it is gone as after a crash (the same records as the harness's graceful shutdown)."""
        await asyncio.sleep(0)
        if process.crashed or process.stopping:
            return
        op_id = self.invoke(HARNESS, "shutdown", None, {"process": process.name})
        process.stopping = True
        self.add(Fault, process.name, fault="shutdown")
        for client in self.clients:
            if client.process is process and not client.ended:
                client.ended = True
                self.add(StreamEnd, process.name, client=client.token, reason="shutdown")
        running = [t for t in process.tasks if not t.done()]
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=SHUTDOWN_GRACE)
        if not process.crashed:
            process.crashed = True
            process.dead.set_result(True)
        self.active = {k: v for k, v in self.active.items() if k[0] != process.name}
        self.add(Complete, HARNESS, op_id=op_id, status="ok")

    async def wait(self, seconds: float) -> None:
        """Quiet: virtual time passes; database calls return before timers meanwhile."""
        await asyncio.sleep(0)
        op_id = self.invoke(HARNESS, "wait", None, {"seconds": seconds})
        self.waits += 1
        self.loop.slow_offloads = False
        try:
            await asyncio.sleep(seconds)
        finally:
            self.waits -= 1
            if not self.waits:
                self.loop.slow_offloads = True
        self.add(Complete, HARNESS, op_id=op_id, status="ok")

    async def start_process(self) -> Process:
        await asyncio.sleep(0)
        return self.spawn()

    # -- operations --

    async def op(
        self,
        process: Process | None,
        name: str,
        task: TaskRef | None,
        args: dict[str, Any],
        body: Callable[[], Awaitable[Any]],
    ) -> Any:
        await asyncio.sleep(0)  # every step begins by letting what is already ready run first
        if process is None or process.crashed or process.stopping:
            return None  # its process crashed (or is shutting down) first: the operation never happens
        op_id = self.invoke(process.name, name, task, args)

        async def inside() -> Any:
            try:
                value = await body()
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                self.add(Complete, process.name, op_id=op_id, status="fail", error=error)
                return None
            token = self.obj(value) if name in ("create", "lookup", "reload") else None
            self.add(Complete, process.name, op_id=op_id, status="ok", value=token)
            return value

        job = process.run(inside())
        await asyncio.wait({job, process.dead}, return_when=asyncio.FIRST_COMPLETED)
        if job.done() and not job.cancelled():
            return job.result()
        return None  # crashed or shut down under it: outcome unknown

    async def create(self, process: Process) -> Any:
        return await self.op(process, "create", None, {}, lambda: STATE.model.objects.acreate())

    async def start(self, process: Process, instance: Any) -> None:
        if instance is None:
            return
        await self.op(
            process,
            "start",
            self.task(instance),
            {"via": self.obj(instance)},
            lambda: process.coordinator.start_task(instance, STATE.app_label, MODEL_NAME),
        )

    async def lookup(self, process: Process, task: TaskRef | None, spelling: int = 0) -> Any:
        """A new client's request: the coordinator's lookup with the URL's strings, spelled the
        `spelling`-th way Django's rules accept (the harness's default spellings)."""
        if task is None:
            return None
        names = default_spellings(STATE.app_label, MODEL_NAME, str(task.pk))
        app_label, model_name, pk = names[spelling % len(names)]
        args = {} if spelling % len(names) == 0 else {"spelling": [app_label, model_name, pk]}
        task_id: Any = int(pk) if LOOKUP_PK_AS_INT else pk
        return await self.op(
            process,
            "lookup",
            task,
            args,
            lambda: process.coordinator.get_task_instance(app_label, model_name, task_id),
        )

    async def reload(self, process: Process, task: TaskRef | None) -> Any:
        if task is None:
            return None
        return await self.op(process, "reload", task, {}, lambda: STATE.model.objects.aget(pk=task.pk))

    async def attach(self, process: Process, instance: Any) -> Client | None:
        if instance is None or process is None or process.crashed:
            return None
        task = self.task(instance)
        assert task is not None
        client = Client(f"c{len(self.clients) + 1}", task, process, instance)
        self.clients.append(client)

        async def body() -> None:
            client.consumer = asyncio.get_running_loop().create_task(self.consume(client))
            await instance.add_client(client.queue)

        await self.op(process, "attach", task, {"client": client.token, "via": self.obj(instance)}, body)
        return client

    async def detach(self, client: Client | None) -> None:
        if client is None or client.process.crashed:
            return
        # As the harness does: the client reads what the implementation already handed it, then
        # leaves (events in its queue were delivered; it is owed nothing after it left).
        while not client.ended and not client.queue.empty():
            self.read(client, client.queue.get_nowait())

        async def body() -> None:
            await client.via.remove_client(client.queue)
            if not client.ended:
                client.ended = True
                if client.consumer is not None:
                    client.consumer.cancel()
                self.add(StreamEnd, client.process.name, client=client.token, reason="detached")

        await self.op(client.process, "detach", client.task, {"client": client.token}, body)

    def open_gate(self, name: str, task: TaskRef | None, command: str, times: int = 1, **args: Any) -> None:
        if task is None:
            return
        op_id = self.invoke(HARNESS, name, task, {"count": times, **args} if times > 1 else args)
        for _ in range(times):
            self.probe.open(task.pk, command)
        self.add(Complete, HARNESS, op_id=op_id, status="ok")

    async def stall(self, client: Client | None) -> None:
        """The client stops reading but stays connected; it reads again once the run settled."""
        await asyncio.sleep(0)
        if client is None or client.ended or client.stalled or client.process.crashed:
            return
        op_id = self.invoke(client.process.name, "stall", client.task, {"client": client.token})
        client.stalled = True
        if client.consumer is not None:
            client.consumer.cancel()  # a cancelled Queue.get() loses no item
        self.add(Complete, client.process.name, op_id=op_id, status="ok")

    async def release(self, task: TaskRef | None, count: int = 1) -> None:
        """Let the task send its next event (its next `count` events)."""
        await asyncio.sleep(0)
        self.open_gate("release", task, "send", count)

    async def finish_ok(self, task: TaskRef | None, how: str = "complete") -> None:
        """Let the task finish: send `complete` and return, or another of the probe's ways."""
        await asyncio.sleep(0)
        if how == "complete":
            self.open_gate("finish_ok", task, "return")
        else:
            self.open_gate("finish_ok", task, f"return:{how}", how=how)

    async def finish_fail(self, task: TaskRef | None, how: str = "exception") -> None:
        """Make the task's process() raise: an exception, or another of the probe's ways."""
        await asyncio.sleep(0)
        if how == "exception":
            self.open_gate("finish_fail", task, "raise")
        else:
            self.open_gate("finish_fail", task, f"raise:{how}", how=how)

    # -- the task's process() and the clients' queues --

    async def run_task(self, instance: Any) -> Any:
        """The task's process(): the probe's own gates (inlined from the engine) decide each step."""
        try:
            return await self.probe.run(instance)
        except Exception as exc:
            # An exception raised in this script's own code (not the probe's planned failure, nor the
            # implementation's) is the script broken: the implementation would take it for the
            # task failing, and the verdict would be about the script, not the implementation.
            frames = traceback.extract_tb(exc.__traceback__)
            if not isinstance(exc, ProbeFailure) and frames and frames[-1].filename == __file__:
                BROKEN.append("".join(traceback.format_exception(exc)))
            raise

    def _entered(self, instance: Any) -> None:
        process = PROCESS.get()
        name = process.name if process else "?"
        self.active[(name, instance.pk)] = self.active.get((name, instance.pk), 0) + 1
        self.add(ProcessEnter, name, task=self.task_of_pk(instance.pk).token, obj=self.obj(instance))

    def _exited(self, instance: Any, outcome: str) -> None:
        process = PROCESS.get()
        name = process.name if process else "?"
        if self.active.get((name, instance.pk)):
            self.active[(name, instance.pk)] -= 1
        self.add(ProcessExit, name, task=self.task_of_pk(instance.pk).token, obj=self.obj(instance),
                 outcome=outcome)

    def _sending(self, instance: Any, n: int, event_type: str) -> None:
        process = PROCESS.get()
        self.add(Send, process.name if process else "?", task=self.task_of_pk(instance.pk).token, seq=n,
                 event_type=event_type)

    def _sent(self, instance: Any, n: int) -> None:
        process = PROCESS.get()
        self.add(Sent, process.name if process else "?", task=self.task_of_pk(instance.pk).token, seq=n)

    async def consume(self, client: Client) -> None:
        while not client.ended:
            self.read(client, await client.queue.get())

    def read(self, client: Client, event: Any) -> None:
        """The client read `event`: a delivery, and the end of its stream if it was the last."""
        if not client.ended:
            client.ended = record_read(self.add, client.process.name, client.token, client.task.token, event,
                                       STATE.conventions)

    # -- the end of the run --

    async def settle(self) -> None:
        """Let everything run, finish what still runs, deliver, then look at what is left."""
        self.loop.slow_offloads = False  # what is owed must arrive under fair scheduling
        opened: dict[tuple[str, Any], int] = {}
        for _ in range(SETTLE_ROUNDS):  # a task may start only now (a takeover once a lease ran out)
            for key, n in list(self.active.items()):
                for _ in range(n - opened.get(key, 0)):
                    self.open_gate("finish_ok", self.tasks[key[1]], "return", teardown=True)
                opened[key] = max(n, opened.get(key, 0))
            pending = [
                c.consumer
                for c in self.clients
                if c.consumer is not None and not c.ended and not c.stalled and not c.process.crashed
            ]
            if pending:
                await asyncio.wait(pending, timeout=SETTLE_SECONDS)
            await asyncio.sleep(SETTLE_SECONDS)
            if not any(self.active.values()):
                break
        persisted = {task.token: await stored_row(task.pk) for task in self.tasks.values()}
        buffers = {c.token: c.queue.qsize() for c in self.clients if not c.ended}
        for process in self.processes:
            if not process.crashed:
                self.add(
                    Snapshot,
                    process.name,
                    resources=resources(process.coordinator),
                    persisted=persisted,
                    buffers=buffers,
                    buffer_limit=BUFFER_LIMIT,
                )
        for client in self.clients:  # the stalled read again: what waited is delivered
            if client.stalled and not client.process.crashed:
                while not client.ended and not client.queue.empty():
                    self.read(client, client.queue.get_nowait())


BROKEN: list[str] = []
"""Tracebacks of exceptions the script's own code raised inside the task (see `World.run_task`)."""


# == attempts ======================================================================================


def attempt(choices: Choices) -> History:
    """Run the steps once on a fresh loop and fresh coordinators; what happened, as a history."""
    empty_tables()
    loop = Loop(choices)
    asyncio.set_event_loop(loop)
    world = STATE.world = World(loop)
    end = "done"

    async def main() -> None:
        await steps(world)
        await world.settle()

    try:
        loop.run_until_complete(main())
    except Hang:
        end = "hang"
    except Bound:
        end = "bound"
    world.add(RunEnd, HARNESS, reason=end, waiting=[c.token for c in world.clients if not c.ended])
    FROZEN.extend(t for t in asyncio.all_tasks(loop) if not t.done())
    for task in asyncio.all_tasks(loop):
        task._log_destroy_pending = False  # type: ignore[attr-defined]
    FROZEN.append(loop)  # a loop left with frozen tasks is never closed: closing would run them
    asyncio.set_event_loop(None)
    STATE.world = None
    return History(world.records, bracketed_sends=True)


def describe(record: Record) -> str:
    """One evidence line: the record's index, process, kind and fields."""
    values = {k: v for k, v in record.to_dict().items() if k not in ("index", "time", "process", "kind")}
    shown = ", ".join(f"{k}={v}" for k, v in values.items() if v not in (None, {}, []))
    return f"  #{record.index} {record.process}: {record.kind} {shown}".rstrip()


def report(result: ClauseResult, history: History) -> None:
    """What the checker found: the requirement, then each violation with its evidence."""
    print(f"expected: {REQUIREMENT}")
    for violation in result.violations:
        print(f"actual:   {violation.explanation}")
        for index in violation.evidence:
            print(describe(history[index]))


def judge_file(path: str) -> int:
    """``--judge FILE``: judge a history streamspec wrote (a history document, or a failure
    document holding one) with this script's checker; no Django, no implementation needed."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    history = History.from_dict(data.get("history", data))
    result = check(history)
    print(f"{CLAUSE} {TITLE} ({LEVEL}) on {path}: {result.verdict.upper()}")
    for note in result.notes:
        print(f"note: {note}")
    if result.verdict is Verdict.FAIL:
        report(result, history)
        print(f"RESULT: {CLAUSE} is violated in this history (exit 1)")
        return 1
    print(f"RESULT: {CLAUSE} is not violated in this history (exit 0)")
    return 0


def main(argv: list[str]) -> int:
    args = list(argv)
    if "--judge" in args:
        return judge_file(args[args.index("--judge") + 1])
    search = 0
    if "--search" in args:  # used when the script is generated: find an interleaving, print its tape
        at = args.index("--search")
        search = int(args[at + 1])
        del args[at : at + 2]
    package = (args[0] if args else None) or os.environ.get("STREAMSPEC_REPRO_PACKAGE") or DEFAULT_PACKAGE
    try:
        folder = setup_django(package)
    except Exception as exc:
        print(f"cannot set up Django with {package!r}: {type(exc).__name__}: {exc}")
        return 2
    try:
        STATE.conventions = load_conventions()
    except Exception as exc:
        print(f"cannot load the adapter {ADAPTER!r}, whose hooks say how {package!r}'s clients read "
              f"their events: {type(exc).__name__}: {exc} (put its module on PYTHONPATH)")
        shutil.rmtree(folder, ignore_errors=True)
        return 2
    STATE.worker = Worker()
    print(
        f"streamspec reproduction of {CLAUSE} {TITLE} ({LEVEL}) against {package!r} "
        f"(generated from a run of {IMPLEMENTATION})"
    )
    print(f"requirement: {REQUIREMENT}")
    print("steps:\n  " + STEPS.replace("\n", "\n  "))
    if search:
        tries = [("plain FIFO order", Choices())]
        tries += [(f"seeded interleaving {seed}", Choices(seed=seed)) for seed in range(search)]
    else:
        tries = [(f"the recorded interleaving ({len(TAPE)} decisions)", Choices(TAPE))]
        tries += [(f"seeded interleaving {seed}", Choices(seed=seed)) for seed in SEEDS]
    undecided = 0
    try:
        for label, choices in tries:
            history = attempt(choices)
            if BROKEN:
                print("the script itself broke inside the task's process() (exit 2):\n" + BROKEN[0])
                return 2
            result = check(history)
            if result.verdict is Verdict.FAIL:
                print(f"tried {label}: {CLAUSE} is violated")
                report(result, history)
                print(f"RESULT: {CLAUSE} is violated: the bug is there (exit 1)")
                if search:
                    print("TAPE " + json.dumps(choices.made))
                return 1
            undecided += result.verdict is Verdict.UNKNOWN
        tried = f"tried {len(tries)} interleavings (the recorded one first)"
        if undecided:
            print(f"{tried}: {CLAUSE} was violated in none; {undecided} could not be judged (cut short)")
        else:
            print(f"{tried}: {CLAUSE} held in every one")
        print(f"RESULT: {CLAUSE} holds: fixed (exit 0)")
        return 0
    finally:
        sys.stdout.flush()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    except Exception:
        traceback.print_exc()
        code = 2  # the script itself broke: that must never read as "violated" (exit 1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # leave frozen coroutines of crashed processes alone (no finalisation)
