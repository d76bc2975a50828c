#!/usr/bin/env python3
"""@@DOC@@"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import importlib
import inspect
import json
import logging
import os
import queue
import random
import shutil
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

# >>> generated: what this script reproduces (everything below the marker is the same in every script)
CLAUSE = "S1"
TITLE = "Identity"
LEVEL = "MUST"
REQUIREMENT = (
    "While a task's process() runs in a process, every lookup of that task in the same process returns "
    "the very object executing process()."
)
IMPLEMENTATION = "django-streaming-coordinator"
DEFAULT_PACKAGE = "streaming"
EXTRA_APPS: list[str] = []
EXTRA_SETTINGS: dict[str, Any] = {}
BUFFER_LIMIT: int | None = None
TAPE: list[int] = []
SEEDS = range(200)
STEPS = """1. Create task row T1 in p0.
2. At the same time: start T1 through obj1; look T1 up with p0's coordinator."""


async def steps(w: World) -> None:
    p0 = w.processes[0]
    # 1. Create task row T1 in p0: object obj1.
    obj1 = await w.create(p0)
    T1 = w.task(obj1)
    # 2. At the same time: start T1 through obj1; look T1 up with p0's coordinator: object obj2.
    _, obj2 = await asyncio.gather(w.start(p0, obj1), w.lookup(p0, T1))
    # 3. Attach client c1 through obj2 in p0.
    _c1 = await w.attach(p0, obj2)
    # 4. Let T1 send its next event.
    await w.release(T1)


# <<< generated

MAX_STEPS = 20_000
MAX_VIRTUAL_TIME = 3_600.0
SETTLE_SECONDS = 60.0
DEVIATION = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75)
"""How often a seeded attempt leaves plain FIFO order (cycled by seed)."""
TERMINAL = ("complete", "error")
FINAL_STATE = "final_state"
MAX_CLIENT_BUFFER = 1024
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


# == Django, on a throw-away SQLite database ======================================================

APP_LABEL = ""
MODEL_NAME = "ReproTask"
Model: Any = None
coordinator_module: Any = None
WORLD: World | None = None


def setup_django(package: str) -> str:
    """Configure Django for the implementation's app plus a task model of this script's own."""
    global APP_LABEL, Model, coordinator_module
    sys.path.insert(0, os.getcwd())
    import django
    from django.conf import settings

    folder = tempfile.mkdtemp(prefix="streamspec-repro-")
    settings.configure(
        INSTALLED_APPS=[package, *EXTRA_APPS],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": os.path.join(folder, "db.sqlite3"),
                "OPTIONS": {"timeout": 20},
            }
        },
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        SECRET_KEY="streamspec-repro",
        **EXTRA_SETTINGS,
    )
    django.setup()
    from django.db.backends.signals import connection_created

    def fast(sender: Any, connection: Any, **kwargs: Any) -> None:
        with connection.cursor() as cursor:  # a throw-away database: no need to wait for the disk
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=OFF")

    connection_created.connect(fast, weak=False)
    logging.disable(logging.CRITICAL)  # the implementation logs planted failures; this script says it all
    from django.apps import apps
    from django.core.management import call_command
    from django.db import connection

    config = next(c for c in apps.get_app_configs() if c.name == package)
    APP_LABEL = config.label
    models = importlib.import_module(f"{package}.models")
    coordinator_module = importlib.import_module(f"{package}.coordinator")

    class ReproTask(models.StreamTask):
        """A task whose process() does nothing on its own: the steps decide when it sends, ends, fails."""

        class Meta:
            app_label = APP_LABEL

        async def process(self) -> Any:
            assert WORLD is not None
            return await WORLD.run_task(self)

    Model = ReproTask
    call_command("migrate", run_syncdb=True, verbosity=0)
    if Model._meta.db_table not in connection.introspection.table_names():
        with connection.schema_editor() as editor:
            editor.create_model(Model)
    connection.close()
    return folder


def empty_tables() -> None:
    """Every attempt starts from empty tables."""
    from django.apps import apps
    from django.db import connection

    for model in apps.get_app_config(APP_LABEL).get_models():
        if model._meta.managed and model._meta.db_table in connection.introspection.table_names():
            model._base_manager.all().delete()
    connection.close()


def loop_clock() -> datetime:
    """The loop's virtual time as a date, for a coordinator that takes a clock (leases run out when
    the loop jumps time forward, as they would over real time)."""
    return EPOCH + timedelta(seconds=asyncio.get_running_loop().time())


def new_coordinator(name: str) -> Any:
    """A coordinator of its own for a simulated process (bypassing a process-wide singleton)."""
    cls = coordinator_module.TaskCoordinator
    coordinator = object.__new__(cls)
    coordinator.__dict__["_initialized"] = False  # a singleton's __init__ would return early otherwise
    try:
        parameters = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        parameters = {}
    kwargs = {"clock": loop_clock} if "clock" in parameters else {}
    try:
        coordinator.__init__(name, **kwargs)
    except TypeError:
        coordinator.__init__()
    return coordinator


def resources(coordinator: Any) -> dict[str, int]:
    """What a coordinator still holds: its own count if it reports one, else its containers' sizes."""
    report = getattr(coordinator, "resources", None)
    if callable(report):
        return {str(k): int(v) for k, v in dict(report()).items()}
    return {
        name.lstrip("_"): len(value)
        for name, value in sorted(vars(coordinator).items())
        if isinstance(value, dict | set | list)
    }


# == a controlled event loop: ready callbacks, offloaded database calls, virtual time ==============


class Hang(Exception):
    """Nothing can run any more although the steps are not done."""


class Bound(Exception):
    """Too many steps, or too much virtual time: a livelock."""


class Choices:
    """Where every ordering decision comes from: the tape, then a seeded PRNG (or FIFO, index 0)."""

    def __init__(self, tape: list[int] | None = None, seed: int | None = None) -> None:
        self.tape = list(tape or [])
        self.position = 0
        self.random = random.Random(seed) if seed is not None else None
        self.deviation = DEVIATION[seed % len(DEVIATION)] if seed is not None else 0.0
        self.made: list[int] = []

    def choose(self, n: int) -> int:
        if self.position < len(self.tape):
            index = self.tape[self.position] % n
            self.position += 1
        elif self.random is not None and self.random.random() < self.deviation:
            index = self.random.randrange(1, n)
        else:
            index = 0
        self.made.append(index)
        return index


class Worker:
    """The one thread that runs Django's database calls, one at a time, while the loop waits."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.results: queue.SimpleQueue[Any] = queue.SimpleQueue()
        threading.Thread(target=self.serve, name="repro-db", daemon=True).start()

    def serve(self) -> None:
        while True:
            fn, args = self.jobs.get()
            try:
                self.results.put((True, fn(*args)))
            except BaseException as exc:
                self.results.put((False, exc))

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[bool, Any]:
        self.jobs.put((fn, args))
        return self.results.get(timeout=60)


WORKER: Worker | None = None
FROZEN: list[Any] = []
"""What a crashed process left behind; kept so that garbage collection never runs its finally blocks."""
PROCESS: contextvars.ContextVar[Process | None] = contextvars.ContextVar("repro_process", default=None)


class Offload(asyncio.Handle):
    """A database call handed to the worker thread: one more thing the loop may choose to run next."""

    def __init__(self, loop: Loop, func: Callable[..., Any], args: tuple[Any, ...], future: Any) -> None:
        super().__init__(loop.run_offload, (), loop)
        self._args = (self,)
        self.func, self.offload_args, self.future = func, args, future

    def __repr__(self) -> str:
        return "<offload>"


class Loop(asyncio.BaseEventLoop):
    """An asyncio loop where every ordering decision is a choice: which ready callback runs next,
    when a database call returns, when the clock jumps to the next timer (virtual time)."""

    def __init__(self, choices: Choices) -> None:
        super().__init__()
        self.choices = choices
        self.now = 0.0
        self.steps = 0
        self.slow_offloads = True
        """Whether a database call may take longer than a timer (off while the run settles)."""

    def time(self) -> float:
        return self.now

    def run_in_executor(self, executor: Any, func: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        future = self.create_future()
        self._ready.append(Offload(self, func, args, future))
        return future

    def run_offload(self, handle: Offload) -> None:
        if handle.future.cancelled():
            return
        assert WORKER is not None
        ok, value = WORKER.call(handle.func, handle.offload_args)
        if handle.future.cancelled():
            return
        if ok:
            handle.future.set_result(value)
        else:
            handle.future.set_exception(value)

    def call_soon_threadsafe(
        self, callback: Callable[..., Any], *args: Any, context: contextvars.Context | None = None
    ) -> asyncio.Handle:
        return self.call_soon(callback, *args, context=context)

    def _write_to_self(self) -> None:
        pass

    def _next_timer(self) -> asyncio.TimerHandle | None:
        while self._scheduled:
            timer = self._scheduled[0]
            if timer._cancelled or frozen(timer):
                heapq.heappop(self._scheduled)
                timer._scheduled = False
                FROZEN.append(timer)
                continue
            return timer
        return None

    def _advance(self, when: float) -> None:
        if when > MAX_VIRTUAL_TIME:
            raise Bound(f"virtual time went past {MAX_VIRTUAL_TIME}s")
        self.now = max(self.now, when)

    def _run_once(self) -> None:
        while self._scheduled and self._scheduled[0]._when <= self.now:
            timer = heapq.heappop(self._scheduled)
            timer._scheduled = False
            if not timer._cancelled:
                self._ready.append(timer)
        live = []
        for handle in self._ready:
            if handle._cancelled:
                continue
            if frozen(handle):
                FROZEN.append(handle)
                continue
            live.append(handle)
        self._ready.clear()
        if not live:
            timer = self._next_timer()
            if timer is None:
                if not self._stopping:
                    raise Hang("nothing can run any more")
                return
            self._advance(timer._when)
            return
        options = len(live)
        timer = None
        if self.slow_offloads and all(isinstance(h, Offload) for h in live):
            timer = self._next_timer()  # a database call may take longer than a timer
            options += timer is not None
        if self.steps >= MAX_STEPS:
            raise Bound(f"more than {MAX_STEPS} steps")
        index = self.choices.choose(options) if options > 1 else 0
        if index == len(live):
            assert timer is not None
            self._ready.extend(live)
            self._advance(timer._when)
            return
        handle = live.pop(index)
        self._ready.extend(live)
        self.steps += 1
        handle._run()


def frozen(handle: asyncio.Handle) -> bool:
    context = getattr(handle, "_context", None)
    process = context.get(PROCESS) if context is not None else None
    return process is not None and process.crashed


# == the world: simulated processes, operations, and what happened (a small history) ===============


class Process:
    """A simulated server process: its own coordinator, the shared database; it can crash."""

    def __init__(self, world: World, name: str) -> None:
        self.world, self.name, self.crashed = world, name, False
        self.coordinator = new_coordinator(name)
        self.dead = world.loop.create_future()

    def run(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        context = contextvars.copy_context()
        context.run(PROCESS.set, self)
        activate = getattr(self.coordinator, "activate", None)
        if callable(activate):
            context.run(activate)  # an implementation that finds its coordinator through a contextvar
        return self.world.loop.create_task(coro, context=context)


class Gate:
    """The commands waiting for one task's process(). Every run of the task waits on the same gate:
    a command wakes them all and the first live one takes it."""

    def __init__(self) -> None:
        self.commands: deque[str] = deque()
        self.changed = asyncio.Event()

    def open(self, command: str) -> None:
        self.commands.append(command)
        self.changed.set()
        self.changed = asyncio.Event()

    async def take(self) -> str:
        while not self.commands:
            await self.changed.wait()
        return self.commands.popleft()


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
        self.records: list[dict[str, Any]] = []
        self.processes: list[Process] = []
        self.tasks: dict[Any, TaskRef] = {}
        self.objects: dict[int, tuple[str, Any]] = {}
        self.clients: list[Client] = []
        self.gates: dict[Any, Gate] = {}
        self.seq: dict[Any, int] = {}
        self.active: dict[tuple[str, Any], int] = {}
        self.ops = 0
        self.spawn()

    # -- recording --

    def add(self, kind: str, process: str, **fields: Any) -> dict[str, Any]:
        record = {"i": len(self.records), "kind": kind, "process": process, **fields}
        self.records.append(record)
        return record

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
        if process.crashed:
            return
        self.ops += 1
        op = f"op{self.ops}"
        self.add("invoke", "harness", op=op, name="crash", task=None, args={"process": process.name})
        process.crashed = True
        process.dead.set_result(True)
        self.add("crash", process.name)
        for client in self.clients:
            if client.process is process and not client.ended:
                client.ended = True
                self.add("end", process.name, client=client.token, reason="crashed")
        self.active = {k: v for k, v in self.active.items() if k[0] != process.name}
        self.add("complete", "harness", op=op, status="ok", value=None)

    async def restart(self, process: Process) -> Process:
        await self.crash(process)
        return await self.start_process()

    async def start_process(self) -> Process:
        await asyncio.sleep(0)
        new = self.spawn()
        self.add("restart", new.name)
        return new

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
        if process is None or process.crashed:
            return None  # its process crashed first: the operation never happens
        self.ops += 1
        op = f"op{self.ops}"
        self.add("invoke", process.name, op=op, name=name, task=task.token if task else None, args=args)

        async def inside() -> Any:
            try:
                value = await body()
            except Exception as exc:
                self.add(
                    "complete",
                    process.name,
                    op=op,
                    status="fail",
                    value=None,
                    error=f"{type(exc).__name__}: {exc}",
                )
                return None
            token = self.obj(value) if name in ("create", "lookup", "reload") else None
            self.add("complete", process.name, op=op, status="ok", value=token)
            return value

        job = process.run(inside())
        await asyncio.wait({job, process.dead}, return_when=asyncio.FIRST_COMPLETED)
        return job.result() if job.done() else None

    async def create(self, process: Process) -> Any:
        return await self.op(process, "create", None, {}, lambda: Model.objects.acreate())

    async def start(self, process: Process, instance: Any) -> None:
        if instance is None:
            return
        task = self.task(instance)
        await self.op(
            process,
            "start",
            task,
            {"via": self.obj(instance)},
            lambda: process.coordinator.start_task(instance, APP_LABEL, MODEL_NAME),
        )

    async def lookup(self, process: Process, task: TaskRef | None) -> Any:
        if task is None:
            return None
        return await self.op(
            process,
            "lookup",
            task,
            {},
            lambda: process.coordinator.get_task_instance(APP_LABEL, MODEL_NAME, task.pk),
        )

    async def reload(self, process: Process, task: TaskRef | None) -> Any:
        if task is None:
            return None
        return await self.op(process, "reload", task, {}, lambda: Model.objects.aget(pk=task.pk))

    async def attach(self, process: Process, instance: Any) -> Client | None:
        if instance is None or process is None or process.crashed:
            return None
        client = Client(f"c{len(self.clients) + 1}", self.task(instance), process, instance)
        self.clients.append(client)

        async def body() -> None:
            client.consumer = asyncio.get_running_loop().create_task(self.consume(client))
            await instance.add_client(client.queue)

        await self.op(
            process, "attach", client.task, {"client": client.token, "via": self.obj(instance)}, body
        )
        return client

    async def detach(self, client: Client | None) -> None:
        if client is None or client.process.crashed:
            return

        async def body() -> None:
            await client.via.remove_client(client.queue)
            if not client.ended:
                client.ended = True
                if client.consumer is not None:
                    client.consumer.cancel()
                self.add("end", client.process.name, client=client.token, reason="detached")

        await self.op(client.process, "detach", client.task, {"client": client.token}, body)

    def open_gate(self, name: str, task: TaskRef | None, command: str, times: int = 1) -> None:
        if task is None:
            return
        self.ops += 1
        op = f"op{self.ops}"
        args = {"count": times} if times > 1 else {}
        self.add("invoke", "harness", op=op, name=name, task=task.token, args=args)
        for _ in range(times):
            self.gates.setdefault(task.pk, Gate()).open(command)
        self.add("complete", "harness", op=op, status="ok", value=None)

    async def stall(self, client: Client | None) -> None:
        """The client stops reading but stays connected; it reads again once the run settled."""
        await asyncio.sleep(0)
        if client is None or client.ended or client.stalled or client.process.crashed:
            return
        self.ops += 1
        op = f"op{self.ops}"
        self.add("invoke", client.process.name, op=op, name="stall", task=client.task.token,
                 args={"client": client.token})
        client.stalled = True
        if client.consumer is not None:
            client.consumer.cancel()
        self.add("complete", client.process.name, op=op, status="ok", value=None)

    async def release(self, task: TaskRef | None, count: int = 1) -> None:
        """Let the task send its next event (its next `count` events)."""
        await asyncio.sleep(0)
        self.open_gate("release", task, "send", count)

    async def finish_ok(self, task: TaskRef | None) -> None:
        """Let the task send `complete` and return."""
        await asyncio.sleep(0)
        self.open_gate("finish_ok", task, "return")

    async def finish_fail(self, task: TaskRef | None) -> None:
        """Make the task's process() raise."""
        await asyncio.sleep(0)
        self.open_gate("finish_fail", task, "raise")

    # -- the task's process() and the clients' queues --

    async def run_task(self, instance: Any) -> Any:
        process = PROCESS.get()
        name = process.name if process else "?"
        task, obj = self.task_of_pk(instance.pk), self.obj(instance)
        self.active[(name, instance.pk)] = self.active.get((name, instance.pk), 0) + 1
        self.add("enter", name, task=task.token, obj=obj)
        outcome = "error"
        try:
            gate = self.gates.setdefault(instance.pk, Gate())
            while True:
                command = await gate.take()
                if command == "send":
                    await self.send(instance, "progress")
                elif command == "return":
                    n = await self.send(instance, "complete")
                    outcome = "ok"
                    return {"n": n}
                else:
                    raise RuntimeError(f"task {instance.pk} made to fail")
        finally:
            if self.active.get((name, instance.pk)):
                self.active[(name, instance.pk)] -= 1
            self.add("exit", name, task=task.token, obj=obj, outcome=outcome)

    async def send(self, instance: Any, event_type: str) -> int:
        n = self.seq[instance.pk] = self.seq.get(instance.pk, 0) + 1
        process = PROCESS.get()
        name = process.name if process else "?"
        task = self.task_of_pk(instance.pk).token
        self.add("send", name, task=task, seq=n, type=event_type)
        await instance.send_event(event_type, {"n": n})
        self.add("sent", name, task=task, seq=n)
        return n

    async def consume(self, client: Client) -> None:
        while not client.ended:
            self.read(client, await client.queue.get())

    def read(self, client: Client, event: Any) -> None:
        """The client read `event`: a delivery, and the end of its stream if it was the last."""
        if client.ended:
            return
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "overflow":
            client.ended = True
            self.add("end", client.process.name, client=client.token, reason="overflow")
            return
        data = event.get("data") if isinstance(event, dict) else None
        seq = data.get("n") if isinstance(data, dict) and isinstance(data.get("n"), int) else None
        self.add(
            "deliver",
            client.process.name,
            client=client.token,
            task=client.task.token,
            seq=seq,
            type=str(kind),
        )
        if kind in TERMINAL:
            client.ended = True
            self.add("end", client.process.name, client=client.token, reason="terminal")

    # -- the end of the run --

    async def settle(self) -> None:
        """Let everything run, finish what still runs, deliver, then look at what is left."""
        self.loop.slow_offloads = False  # what is owed must arrive under fair scheduling
        opened: dict[tuple[str, Any], int] = {}
        for _ in range(5):  # a task may start only now (a takeover once a lease ran out)
            for key, n in list(self.active.items()):
                for _ in range(n - opened.get(key, 0)):
                    self.open_gate("finish_ok", self.tasks[key[1]], "return")
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
        persisted = {}
        for task in self.tasks.values():
            persisted[task.token] = await stored_row(task.pk)
        buffers = {c.token: c.queue.qsize() for c in self.clients if not c.ended}
        for process in self.processes:
            if not process.crashed:
                self.add(
                    "snapshot",
                    process.name,
                    resources=resources(process.coordinator),
                    persisted=persisted,
                    buffers=buffers,
                    limit=BUFFER_LIMIT,
                )
        for client in self.clients:  # the stalled read again: what waited is delivered
            if client.stalled and not client.process.crashed:
                while not client.ended and not client.queue.empty():
                    self.read(client, client.queue.get_nowait())


async def stored_row(pk: Any) -> dict[str, Any]:
    row = await Model._base_manager.filter(pk=pk).values().afirst()
    if row is None:
        return {"status": "missing", "error": None, "last": None}
    status = row.get("status") or ("completed" if row.get("completed_at") else "pending")
    last = row.get("last_event")
    data = last.get("data") if isinstance(last, dict) else None
    seq = data.get("n") if isinstance(data, dict) and isinstance(data.get("n"), int) else None
    return {"status": status, "error": row.get("error"), "last": seq}


# == judging: the clause, on what happened ========================================================


class Op:
    def __init__(self, invoke: dict[str, Any], complete: dict[str, Any] | None) -> None:
        self.invoke, self.complete = invoke, complete
        self.id, self.name, self.task = invoke["op"], invoke["name"], invoke["task"]
        self.process, self.args, self.start = invoke["process"], invoke["args"], invoke["i"]
        self.end = complete["i"] if complete else None
        self.status = complete["status"] if complete else None
        self.value = complete.get("value") if complete else None


class Run:
    def __init__(self, task: str, obj: str, process: str, start: int, end: int | None, outcome: str | None):
        self.task, self.obj, self.process, self.start, self.end, self.outcome = (
            task,
            obj,
            process,
            start,
            end,
            outcome,
        )

    def active_at(self, i: int) -> bool:
        return self.start <= i and (self.end is None or i < self.end)

    def overlaps(self, lo: int, hi: int | None) -> bool:
        return (hi is None or self.start <= hi) and (self.end is None or self.end > lo)

    @property
    def finished(self) -> bool:
        return self.outcome in ("ok", "error")


class Attachment:
    def __init__(self, h: History, op: Op) -> None:
        self.op, self.client, self.task, self.process = op, op.args["client"], op.task, op.process
        self.joined_from, self.joined_by = op.start, op.end
        self.deliveries = [r for r in h.records if r["kind"] == "deliver" and r["client"] == self.client]
        self.stream_end = next(
            (r for r in h.records if r["kind"] == "end" and r["client"] == self.client), None
        )
        detach = next((o for o in h.ops if o.name == "detach" and o.args.get("client") == self.client), None)
        crash = h.crash_at.get(op.process)
        leaving = [
            detach.start if detach else None,
            self.stream_end["i"]
            if self.stream_end and self.stream_end["reason"] in ("detached", "overflow", "crashed")
            else None,
            crash,
        ]
        closing = [self.stream_end["i"] if self.stream_end else None, detach.end if detach else None, crash]
        self.left_at = min((i for i in leaving if i is not None), default=None)
        self.closed_at = min((i for i in closing if i is not None), default=None)

    def task_deliveries(self) -> list[dict[str, Any]]:
        return [d for d in self.deliveries if d["task"] == self.task]


class History:
    """The records of one attempt, with the few queries the judges need."""

    def __init__(self, records: list[dict[str, Any]], end: str, waiting: list[str]) -> None:
        self.records, self.end, self.waiting = records, end, waiting
        completes = {r["op"]: r for r in records if r["kind"] == "complete"}
        self.ops = [Op(r, completes.get(r["op"])) for r in records if r["kind"] == "invoke"]
        self.crash_at = {}
        for r in records:
            if r["kind"] == "crash":
                self.crash_at.setdefault(r["process"], r["i"])
        self.runs: list[Run] = []
        open_runs: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for r in records:
            key = (r["process"], r.get("task"), r.get("obj"))
            if r["kind"] == "enter":
                open_runs.setdefault(key, []).append(r)
            elif r["kind"] == "exit" and open_runs.get(key):
                enter = open_runs[key].pop(0)
                crash = self.crash_at.get(r["process"])
                if crash is not None and crash < r["i"]:
                    self.runs.append(Run(r["task"], r["obj"], r["process"], enter["i"], crash, "crashed"))
                else:
                    self.runs.append(Run(r["task"], r["obj"], r["process"], enter["i"], r["i"], r["outcome"]))
        for entered in open_runs.values():
            for enter in entered:
                crash = self.crash_at.get(enter["process"])
                if crash is not None and crash > enter["i"]:
                    self.runs.append(
                        Run(enter["task"], enter["obj"], enter["process"], enter["i"], crash, "crashed")
                    )
                else:
                    self.runs.append(
                        Run(enter["task"], enter["obj"], enter["process"], enter["i"], None, None)
                    )
        self.runs.sort(key=lambda run: run.start)
        self.attachments = [
            Attachment(self, o)
            for o in self.ops
            if o.name == "attach" and o.status == "ok" and o.task is not None
        ]
        self.sent = {(r["task"], r["seq"]): r["i"] for r in records if r["kind"] == "sent"}

    @property
    def complete(self) -> bool:
        return self.end == "done"

    def tasks(self) -> list[str]:
        return list(dict.fromkeys(r["task"] for r in self.records if r.get("task")))

    def sends(self, task: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["kind"] == "send" and r["task"] == task]

    def send(self, task: str, seq: int) -> dict[str, Any] | None:
        return next((s for s in self.sends(task) if s["seq"] == seq), None)

    def sent_by(self, send: dict[str, Any]) -> int:
        return self.sent.get((send["task"], send["seq"]), len(self.records))

    def latest_completed_send_before(self, task: str, i: int) -> dict[str, Any] | None:
        done = [s for s in self.sends(task) if self.sent_by(s) < i]
        return max(done, key=lambda s: s["seq"]) if done else None

    def sends_between(self, task: str, after: int, before: int | None = None) -> list[dict[str, Any]]:
        return [s for s in self.sends(task) if after < s["i"] and (before is None or s["i"] < before)]

    def finish(self, task: str) -> dict[str, Any] | None:
        terminal = next((s for s in self.sends(task) if s["type"] in TERMINAL), None)
        exited = min(
            (r for r in self.runs if r.task == task and r.finished), key=lambda r: r.end or 0, default=None
        )
        if terminal is not None and (exited is None or terminal["i"] < (exited.end or 0)):
            return {
                "i": terminal["i"],
                "outcome": "ok" if terminal["type"] == "complete" else "error",
                "seq": terminal["seq"],
            }
        if exited is not None:
            return {"i": exited.end, "outcome": exited.outcome, "seq": terminal["seq"] if terminal else None}
        return None

    def terminal_delivery(self, finish: dict[str, Any], d: dict[str, Any]) -> bool:
        if d["seq"] is not None:
            return d["seq"] == finish["seq"]
        return d["type"] in ("complete" if finish["outcome"] == "ok" else "error", FINAL_STATE)

    def persisted(self, task: str, after: int = -1) -> tuple[dict[str, Any], dict[str, Any]] | None:
        for snap in reversed([r for r in self.records if r["kind"] == "snapshot"]):
            if snap["i"] <= after:
                break
            if task in snap["persisted"]:
                return snap, snap["persisted"][task]
        return None

    def can_no_longer_arrive(self, a: Attachment, seq: int | None = None) -> bool:
        if self.complete or a.client in self.waiting or a.closed_at is not None:
            return True
        return seq is not None and any(d["seq"] is not None and d["seq"] > seq for d in a.task_deliveries())


Violations = list[tuple[str, str]]
"""(expected, actual) pairs. The judges follow streamspec's checkers, except that a client that
detached is owed nothing from then on, not even a terminal event queued for it that it had not read."""


# judge: S1
def judge_S1(h: History) -> Violations:
    out = []
    for op in (o for o in h.ops if o.name == "lookup"):
        if op.complete is None or op.status == "unknown":
            continue
        running = [
            r
            for r in h.runs
            if r.task == op.task and r.process == op.process and r.overlaps(op.start, op.end)
        ]
        if not any(r.active_at(op.end) for r in running):
            continue
        objs = sorted({r.obj for r in running})
        if op.value in objs:
            continue
        got = "failed" if op.status == "fail" else f"returned {op.value or 'nothing'}"
        out.append(
            (
                f"lookup {op.id} of {op.task} in {op.process} returns {' or '.join(objs)}, the object "
                f"running process()",
                f"lookup {op.id} {got} while {' or '.join(objs)} was running process() of {op.task}",
            )
        )
    return out


# end judge


# judge: S2
def judge_S2(h: History) -> Violations:
    out = []
    for a in h.attachments:
        if a.stream_end is not None and a.stream_end["reason"] in ("overflow", "crashed"):
            continue  # dropped openly, or its server process died: owed nothing more
        received = {d["seq"] for d in a.task_deliveries() if d["seq"] is not None}
        owed = h.sends_between(a.task, a.joined_by, a.left_at)
        lost = [s["seq"] for s in owed if s["seq"] not in received]
        via = a.op.args.get("via")
        if lost and h.can_no_longer_arrive(a, lost[0]):
            out.append(
                (
                    f"client {a.client} (attached to {a.task} through {via}) receives every event sent "
                    f"after it joined: {', '.join(str(s['seq']) for s in owed)}",
                    f"client {a.client} never received event(s) {', '.join(map(str, lost))}",
                )
            )
        finish = h.finish(a.task)
        if finish is None or (a.left_at is not None and a.left_at < finish["i"]):
            continue
        if finish["seq"] is not None and any(s["seq"] == finish["seq"] for s in owed):
            continue
        if (
            not any(h.terminal_delivery(finish, d) for d in a.task_deliveries())
            and a.left_at is None
            and h.can_no_longer_arrive(a)
        ):
            out.append(
                (
                    f"client {a.client} (attached through {via}) receives the terminal event of {a.task}",
                    f"client {a.client} never received it",
                )
            )
    return out


# end judge


# judge: S3
def judge_S3(h: History) -> Violations:
    out = []
    for a in h.attachments:
        numbered = [d for d in a.task_deliveries() if d["seq"] is not None]
        for d in numbered:
            if h.send(a.task, d["seq"]) is None:
                out.append(
                    (
                        f"client {a.client} receives only events {a.task} sent",
                        f"it received event {d['seq']}, which was never sent",
                    )
                )
        numbered = [d for d in numbered if h.send(a.task, d["seq"]) is not None]
        latest = h.latest_completed_send_before(a.task, a.joined_from)
        allowed = {s["seq"] for s in h.sends(a.task) if s["i"] < a.joined_by and h.sent_by(s) > a.joined_from}
        required = latest is not None
        if latest is not None:
            allowed.add(latest["seq"])
            crash = h.crash_at.get(latest["process"])
            required = not (crash is not None and latest["i"] < crash < a.joined_from)
        if not required:
            after = h.sends_between(a.task, a.joined_from)
            if after:
                allowed.add(after[0]["seq"])
        finish = h.finish(a.task)
        stand_in = next(
            (
                d
                for d in a.task_deliveries()
                if d["seq"] is None
                and finish is not None
                and finish["i"] < a.joined_by
                and h.terminal_delivery(finish, d)
            ),
            None,
        )
        first = numbered[0] if numbered else None
        joined = f"joined {a.task} " + (f"after event {latest['seq']}" if latest else "before any event")
        wanted = ", ".join(map(str, sorted(allowed)))
        if stand_in is not None and (first is None or stand_in["i"] < first["i"]):
            pass
        elif first is None:
            if required and a.left_at is None and h.can_no_longer_arrive(a):
                out.append(
                    (
                        f"client {a.client}, which {joined}, first receives event {wanted}",
                        f"client {a.client} received no event of {a.task} at all",
                    )
                )
        elif first["seq"] not in allowed:
            out.append(
                (
                    f"client {a.client}, which {joined}, first receives event {wanted}",
                    f"its first event was {first['seq']}",
                )
            )
        for prev, cur in pairwise(numbered):
            if cur["seq"] != prev["seq"] + 1:
                out.append(
                    (
                        f"client {a.client} receives the events of {a.task} in order, each once",
                        f"it received event {cur['seq']} right after event {prev['seq']}",
                    )
                )
    return out


# end judge


# judge: S4
def judge_S4(h: History) -> Violations:
    out = []
    for task in h.tasks():
        runs = [r for r in h.runs if r.task == task]
        for i, run in enumerate(runs):
            for other in runs[:i]:
                if other.active_at(run.start):
                    out.append(
                        (
                            f"process() of {task} runs once at a time",
                            f"{other.obj} ({other.process}) and {run.obj} ({run.process}) ran it at the "
                            "same time",
                        )
                    )
            done = next((o for o in runs[:i] if o.finished and not o.active_at(run.start)), None)
            if done is not None:
                out.append(
                    (
                        f"process() of {task} never runs again after it finished ({done.outcome})",
                        f"it ran again on {run.obj} ({run.process})",
                    )
                )
    return out


# end judge


# judge: S5
def judge_S5(h: History) -> Violations:
    out = []
    for task in h.tasks():
        finish = h.finish(task)
        if finish is None:
            continue
        for a in (a for a in h.attachments if a.task == task):
            if a.left_at is not None and a.left_at < finish["i"]:
                continue
            deliveries = a.task_deliveries()
            late = a.joined_from > finish["i"]
            meaningful = [
                d for d in deliveries if d["seq"] is not None or d["type"] in (*TERMINAL, FINAL_STATE)
            ]
            if late and meaningful and not h.terminal_delivery(finish, meaningful[0]):
                out.append(
                    (
                        f"client {a.client}, which joined after {task} finished, first receives its final "
                        "state",
                        f"its first event was {meaningful[0]['seq'] or meaningful[0]['type']}",
                    )
                )
            terminal = next((d for d in deliveries if h.terminal_delivery(finish, d)), None)
            if terminal is None:
                if a.left_at is None and h.can_no_longer_arrive(a):
                    out.append(
                        (
                            f"client {a.client} of {task} receives the terminal event "
                            f"({'complete' if finish['outcome'] == 'ok' else 'error'})",
                            f"client {a.client} never received it",
                        )
                    )
                continue
            after = [d for d in a.deliveries if d["i"] > terminal["i"]]
            if after:
                out.append(
                    (
                        f"client {a.client} receives nothing after the terminal event",
                        f"it received {after[0]['type']} after it",
                    )
                )
            if a.closed_at is None and h.can_no_longer_arrive(a):
                out.append((f"client {a.client}'s stream ends after the terminal event", "it never ended"))
        if finish["outcome"] != "ok":
            continue
        for run in (r for r in h.runs if r.task == task and r.start > finish["i"]):
            out.append((f"{task}, which completed, never runs again", f"it ran again on {run.obj}"))
        found = h.persisted(task, after=finish["i"])
        if found is not None and found[1]["status"] != "completed":
            out.append((f"{task}'s row is stored as completed", f"it is stored as {found[1]['status']!r}"))
    return out


# end judge


# judge: S6
def judge_S6(h: History) -> Violations:
    out = []
    for task in h.tasks():
        finish = h.finish(task)
        if finish is None or finish["outcome"] != "error":
            continue
        found = h.persisted(task, after=finish["i"])
        if found is not None and (found[1]["status"] != "failed" or not found[1]["error"]):
            out.append(
                (
                    f"{task}, whose process() raised, is stored as failed with its error",
                    f"its row is stored as {found[1]['status']!r} with error {found[1]['error']!r}",
                )
            )
        for a in (a for a in h.attachments if a.task == task):
            if a.left_at is not None and a.left_at < finish["i"]:
                continue
            types = [d["type"] for d in a.task_deliveries()]
            if "complete" in types:
                out.append((f"client {a.client} receives the error of {task}", "it received 'complete'"))
            if "error" not in types and a.left_at is None and h.can_no_longer_arrive(a):
                out.append(
                    (
                        f"client {a.client} receives the error of {task}",
                        f"client {a.client} never received it",
                    )
                )
        for run in (r for r in h.runs if r.task == task and r.start > finish["i"]):
            out.append(
                (
                    f"{task}, which failed, is not run again on its own",
                    f"it ran again on {run.obj} ({run.process})",
                )
            )
    return out


# end judge


def unfinished_at(h: History, crash: dict[str, Any]) -> list[str]:
    before = {r.get("task") for r in h.records[: crash["i"]]}
    return [t for t in h.tasks() if t in before and ((f := h.finish(t)) is None or f["i"] > crash["i"])]


# judge: S7
def judge_S7(h: History) -> Violations:
    out = []
    crashes = [r for r in h.records if r["kind"] == "crash"]
    for n, crash in enumerate(crashes):
        until = crashes[n + 1]["i"] if n + 1 < len(crashes) else None
        for task in unfinished_at(h, crash):
            resumed = [
                r
                for r in h.runs
                if r.task == task and crash["i"] < r.start and (until is None or r.start < until)
            ]
            if len(resumed) > 1:
                out.append(
                    (
                        f"after {crash['process']} crashed, {task} resumes at most once",
                        f"it entered process() {len(resumed)} times",
                    )
                )
            finished = h.finish(task) is not None
            running = any(r.end is None for r in h.runs if r.task == task)
            for a in (a for a in h.attachments if a.task == task):
                if a.joined_from < crash["i"] or (until is not None and a.joined_from > until):
                    continue
                if a.closed_at is None and not finished and not running and h.can_no_longer_arrive(a):
                    out.append(
                        (
                            f"client {a.client}, which joined {task} after the crash, is not left waiting",
                            f"{task} is neither finished nor running and {a.client} waits forever",
                        )
                    )
    return out


# end judge


# judge: S7.2
def judge_S7_2(h: History) -> Violations:
    out = []
    for crash in (r for r in h.records if r["kind"] == "crash"):
        for task in unfinished_at(h, crash):
            latest = h.latest_completed_send_before(task, crash["i"])
            if latest is None or latest["process"] != crash["process"]:
                continue
            resent = h.sends_between(task, crash["i"])
            ended = [
                r["i"] for r in h.records
                if r["kind"] == "exit" and r["task"] == task and r["i"] > crash["i"]
                and r["outcome"] in ("ok", "error")
            ]
            until = min([*(s["i"] for s in resent[:1]), *ended], default=None)
            # A later send the crash cut short may have become durable all the same.
            latest_seqs = {latest["seq"]} | {
                s["seq"] for s in h.sends(task)
                if latest["i"] < s["i"] < crash["i"] and s["process"] == crash["process"]
                and h.sent_by(s) > crash["i"]
            }
            for snap in (r for r in h.records if r["kind"] == "snapshot"):
                if (
                    snap["i"] > crash["i"]
                    and (until is None or snap["i"] < until)
                    and task in snap["persisted"]
                ):
                    stored = snap["persisted"][task]["last"]
                    if stored not in latest_seqs:
                        out.append(
                            (
                                f"{task}'s row stores its latest event, {latest['seq']}, across the crash",
                                f"it stores {stored}",
                            )
                        )
            for a in (a for a in h.attachments if a.task == task):
                if a.joined_from < crash["i"] or (until is not None and a.joined_by > until):
                    continue
                firsts = [
                    d
                    for d in a.task_deliveries()
                    if d["seq"] is not None or d["type"] in (*TERMINAL, FINAL_STATE)
                ]
                if not firsts:
                    if a.left_at is None and h.can_no_longer_arrive(a):
                        out.append(
                            (
                                f"client {a.client}, which joined after the crash, first receives event "
                                f"{latest['seq']}",
                                "it received nothing",
                            )
                        )
                elif firsts[0]["seq"] not in latest_seqs:
                    out.append(
                        (
                            f"client {a.client}, which joined after the crash, first receives event "
                            f"{latest['seq']}",
                            f"it first received {firsts[0]['seq'] or firsts[0]['type']}",
                        )
                    )
    return out


# end judge


# judge: S8
def judge_S8(h: History) -> Violations:
    out = []
    for process in dict.fromkeys(r["process"] for r in h.records if r["kind"] == "snapshot"):
        if process in h.crash_at:
            continue
        snap = [r for r in h.records if r["kind"] == "snapshot" and r["process"] == process][-1]
        busy = any(r.process == process and r.active_at(snap["i"]) for r in h.runs)
        busy |= any(
            a.process == process and (a.closed_at is None or a.closed_at > snap["i"]) for a in h.attachments
        )
        busy |= any(
            o.process == process and o.start < snap["i"] and (o.end is None or o.end > snap["i"])
            for o in h.ops
        )
        left = {k: v for k, v in snap["resources"].items() if v}
        if not busy and left:
            out.append(
                (
                    f"{process}'s coordinator holds nothing once every task there finished and every "
                    "client left",
                    "it still holds " + ", ".join(f"{v} {k}" for k, v in left.items()),
                )
            )
    return out


# end judge


# judge: S8.2
def judge_S8_2(h: History) -> Violations:
    out = []
    for snap in (r for r in h.records if r["kind"] == "snapshot"):
        # The implementation's documented bound under this script's settings, never more than the spec's.
        bound = min(MAX_CLIENT_BUFFER, snap.get("limit") or MAX_CLIENT_BUFFER)
        for client, size in sorted((snap.get("buffers") or {}).items()):
            if size > bound:
                out.append(
                    (
                        f"client {client} has at most {bound} undelivered events buffered",
                        f"it had {size}",
                    )
                )
    return out


# end judge


# == attempts ======================================================================================


def attempt(choices: Choices) -> tuple[Violations, History]:
    """Run the steps once on a fresh loop and fresh coordinators, then judge the clause."""
    global WORLD
    empty_tables()
    loop = Loop(choices)
    asyncio.set_event_loop(loop)
    end, waiting = "done", []

    async def main() -> World:
        global WORLD
        world = WORLD = World(loop)
        await steps(world)
        await world.settle()
        return world

    try:
        loop.run_until_complete(main())
    except Hang:
        end = "hang"
    except Bound:
        end = "bound"
    world = WORLD
    assert world is not None
    waiting = [c.token for c in world.clients if not c.ended]
    FROZEN.extend(t for t in asyncio.all_tasks(loop) if not t.done())
    for task in asyncio.all_tasks(loop):
        task._log_destroy_pending = False  # type: ignore[attr-defined]
    FROZEN.append(loop)  # a loop left with frozen tasks is never closed: closing would run them
    asyncio.set_event_loop(None)
    WORLD = None
    history = History(world.records, end, waiting)
    judge = globals()["judge_" + CLAUSE.replace(".", "_")]
    return judge(history), history


def main(argv: list[str]) -> int:
    global WORKER
    args = list(argv)
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
    WORKER = Worker()
    print(
        f"streamspec reproduction of {CLAUSE} {TITLE} ({LEVEL}) against {package!r} "
        f"(generated from a run of {IMPLEMENTATION})"
    )
    print(f"requirement: {REQUIREMENT}")
    print("steps:\n  " + STEPS.replace("\n", "\n  "))
    tries: list[tuple[str, Choices]] = []
    if search:
        tries = [("plain FIFO order", Choices())]
        tries += [(f"seeded interleaving {seed}", Choices(seed=seed)) for seed in range(search)]
    else:
        tries = [(f"the recorded interleaving ({len(TAPE)} decisions)", Choices(TAPE))]
        tries += [(f"seeded interleaving {seed}", Choices(seed=seed)) for seed in SEEDS]
    try:
        for label, choices in tries:
            violations, _history = attempt(choices)
            if violations:
                print(f"tried {label}: {CLAUSE} is violated")
                for expected, actual in violations:
                    print(f"expected: {expected}")
                    print(f"actual:   {actual}")
                print(f"RESULT: {CLAUSE} is violated: the bug is there (exit 1)")
                if search:
                    print("TAPE " + json.dumps(choices.made))
                return 1
        print(f"tried {len(tries)} interleavings (the recorded one first): {CLAUSE} held in every one")
        print(f"RESULT: {CLAUSE} holds: fixed (exit 0)")
        return 0
    finally:
        sys.stdout.flush()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # leave frozen coroutines of crashed processes alone (no finalisation)
