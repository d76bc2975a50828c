#!/usr/bin/env python3
"""The first piece of a standalone reproduction script: its generated block, Django, the controlled loop.

`streamspec.repro` writes ``repro_<clause>.py`` by concatenating, into one module namespace, this
piece (its generated block replaced and this docstring replaced by the script's own), the engine's
history and the clause's checker (inlined from `harness`, see `streamspec.inline`), then
`streamspec.reports.repro_world` (the simulated processes, the attempts and ``main``). The pieces
are never imported to run: they are modules so that ruff and the import contracts check them, and
their imports of one another and of `harness` are stripped when they are inlined. State set at run
time lives on `STATE`, an object, so that the pieces' imports and the script's one namespace see it
alike.
"""

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
import sys
import tempfile
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from harness.bounds import RUN_MAX_VIRTUAL_TIME, SCRIPT_MAX_STEPS
from harness.conventions import Conventions
from harness.records import PERSISTED_STATUSES, PersistedTask

if TYPE_CHECKING:
    from streamspec.reports.repro_world import Process, World

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
ADAPTER: str | None = None
LOOKUP_PK_AS_INT = False
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

DEVIATION = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75)
"""How often a seeded attempt leaves plain FIFO order (cycled by seed)."""
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
MODEL_NAME = "ReproTask"


class State:
    """What the script sets up at run time: Django's app and model, the implementation's
    coordinator module, the world of the current attempt and the database worker."""

    app_label = ""
    model: Any = None
    coordinator_module: Any = None
    conventions: Any = None
    world: World | None = None
    worker: Worker | None = None


STATE = State()


# == Django, on a throw-away SQLite database ======================================================

def setup_django(package: str) -> str:
    """Configure Django for the implementation's app plus a task model of this script's own."""
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
    STATE.app_label = config.label
    models = importlib.import_module(f"{package}.models")
    STATE.coordinator_module = importlib.import_module(f"{package}.coordinator")

    class ReproTask(models.StreamTask):
        """A task whose process() does nothing on its own: the steps decide when it sends, ends, fails."""

        class Meta:
            app_label = STATE.app_label

        async def process(self) -> Any:
            assert STATE.world is not None
            return await STATE.world.run_task(self)

    STATE.model = ReproTask
    call_command("migrate", run_syncdb=True, verbosity=0)
    if ReproTask._meta.db_table not in connection.introspection.table_names():
        with connection.schema_editor() as editor:
            editor.create_model(ReproTask)
    connection.close()
    return folder


def load_conventions() -> Conventions:
    """How the implementation's client items read: the reference's conventions (inlined below), or
    the `classify` / `event_parts` hooks of the adapter named by ADAPTER ("module:Class"), imported:
    an implementation that drops a slow client its own way is judged by its own reading here too."""
    if ADAPTER is None:
        return Conventions()
    module_name, _, name = ADAPTER.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in name.split("."):
        target = getattr(target, part)
    return Conventions.of(target() if callable(target) else target)


def empty_tables() -> None:
    """Every attempt starts from empty tables."""
    from django.apps import apps
    from django.db import connection

    for model in apps.get_app_config(STATE.app_label).get_models():
        if model._meta.managed and model._meta.db_table in connection.introspection.table_names():
            model._base_manager.all().delete()
    connection.close()


def loop_clock() -> datetime:
    """The loop's virtual time as a date, for a coordinator that takes a clock (leases run out when
    the loop jumps time forward, as they would over real time)."""
    return EPOCH + timedelta(seconds=asyncio.get_running_loop().time())


def new_coordinator(name: str) -> Any:
    """A coordinator of its own for a simulated process (bypassing a process-wide singleton)."""
    cls = STATE.coordinator_module.TaskCoordinator
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


async def stored_row(pk: Any) -> PersistedTask:
    """The task's row as the database holds it, read the way streamspec's adapters read it."""
    row = await STATE.model._base_manager.filter(pk=pk).values().afirst()
    if row is None:
        return PersistedTask(status="pending")
    status = row.get("status") or ("completed" if row.get("completed_at") else "pending")
    if status not in PERSISTED_STATUSES:
        status = "pending"
    error = row.get("error")
    last = row.get("last_event")
    seq = None if last is None else STATE.conventions.seq_of(last)
    return PersistedTask(
        status=status, error=None if error is None else json.dumps(error, sort_keys=True), last_event_seq=seq
    )


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
        assert STATE.worker is not None
        ok, value = STATE.worker.call(handle.func, handle.offload_args)
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
        if when > RUN_MAX_VIRTUAL_TIME:
            raise Bound(f"virtual time went past {RUN_MAX_VIRTUAL_TIME}s")
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
        if self.steps >= SCRIPT_MAX_STEPS:
            raise Bound(f"more than {SCRIPT_MAX_STEPS} steps")
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
