"""A deterministic asyncio event loop whose every scheduling decision comes from a choice source.

Bugs in streaming coordinators hide in one particular interleaving of a database call (Django's
async ORM sends it to a thread through asgiref ``sync_to_async``, i.e. ``loop.run_in_executor``)
and a task step. :class:`ControlledLoop` makes each such ordering an explicit decision:

* **virtual time** - ``loop.time()`` is a clock that jumps to the next timer when nothing else can
  run, so ``asyncio.sleep(3600)`` and timeouts cost nothing;
* **one callback per step** - whenever several callbacks are ready, the one to run next is
  ``choices.choose(n, ...)`` (index 0 = asyncio's own FIFO order);
* **offloads** - ``run_in_executor(<any executor>, fn, *args)`` becomes a pending step that competes
  with the ready callbacks; when chosen, ``fn`` runs on the one shared worker thread
  (:mod:`harness.offload`) while the loop waits, so the run stays repeatable;
* **simulated processes** - :func:`spawn_process` groups coroutines; :func:`crash` freezes them;
* **bounds** - ``max_steps`` / ``max_virtual_time`` raise :class:`BoundExceeded`; a run that can
  never progress raises :class:`Deadlock` with the waiting tasks' stacks instead of hanging.

:func:`run` is the entry point; it returns a :class:`RunResult` with the outcome of ``main``, the
tape of decisions (replayable with :class:`~harness.choice.TapeChoices`) and a compact trace.

CPython internals relied on (identical in 3.11, 3.12 and 3.13): ``BaseEventLoop._run_once`` is
the single place callbacks run and ``run_forever`` calls it in a loop; ``_ready`` (deque of
``Handle``) and ``_scheduled`` (heap of ``TimerHandle``); ``Handle._callback`` / ``_args`` /
``_context`` / ``_cancelled`` and ``TimerHandle._when`` / ``_scheduled``; the asyncgen hooks;
``Task._log_destroy_pending`` and ``asyncio.tasks._unregister_task``.

Long: one module because :class:`ControlledLoop` is one subclass of asyncio's loop whose methods
keep one invariant together (a step runs exactly one ready callback, offloaded call or timer, and
every choice among them is a recorded decision); its methods are short, and the parts that need no
loop internals live elsewhere (bounds in `harness.bounds`, the worker thread in `harness.offload`,
choice tapes in `harness.choice`).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import functools
import gc
import heapq
import inspect
import io
import sys
import threading
import time as _time
import weakref
from asyncio import events
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

from harness.bounds import (
    FOREIGN_GRACE,
    LOOP_MAX_STEPS,
    LOOP_MAX_VIRTUAL_TIME,
    OFFLOAD_TIMEOUT,
    SHUTDOWN_STEPS,
)
from harness.choice import ChoiceSource, FifoChoices, Tape
from harness.errors import BoundExceeded, Deadlock, OffloadTimeout, SchedulerError
from harness.offload import OffloadWorker, shared_worker

__all__ = [
    "ControlledLoop",
    "LoopError",
    "RunResult",
    "SimProcess",
    "TraceEvent",
    "crash",
    "current_process",
    "format_trace",
    "run",
    "spawn_process",
]

T = TypeVar("T")

# The shutdown budget (harness.bounds.SHUTDOWN_STEPS) cancels leftover tasks after main finished;
# it is not part of the explored run.

# Which simulated process the running code belongs to (None = the test driver). Every Handle
# copies the context it was created in, so the scheduler can tell whose callback it is.
_PROCESS: contextvars.ContextVar[SimProcess | None] = contextvars.ContextVar(
    "streamspec_process", default=None
)


class TraceEvent(NamedTuple):
    """One line of a run's trace."""

    step: int  # callbacks run before this event
    time: float  # virtual time
    label: str  # what ran: "task:<name>", "offload:<fn>", "call:<qualname>", "advance-time:+5", ...
    choice: int  # the index chosen (0 when there was no decision)
    options: int  # how many options there were (1 = no decision)


class LoopError(NamedTuple):
    """Something the loop's exception handler was told (e.g. "Task exception was never retrieved")."""

    message: str
    exception: BaseException | None


# --- simulated processes ---------------------------------------------------------------------


class SimProcess:
    """A simulated OS process: a named group of coroutines on the shared loop that can crash.

    Tasks started with :meth:`create_task` (or created while :meth:`context` is active) belong to
    the process, and so does everything they create in turn (tasks, callbacks, timers, offloaded
    calls), because asyncio copies the context into each of them. After :func:`crash` none of it
    runs again - not even ``finally`` blocks. A later :func:`spawn_process` with the same name is a
    restart (``incarnation`` goes up) over the same database.
    """

    def __init__(self, loop: ControlledLoop, name: str, incarnation: int) -> None:
        self.loop = loop
        self.name = name
        self.incarnation = incarnation
        self.label = f"{name}.{incarnation}"
        self._crashed = False
        self._tasks: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()

    @property
    def crashed(self) -> bool:
        """Whether :func:`crash` was called on this process."""
        return self._crashed

    def create_task(self, coro: Awaitable[T], *, name: str | None = None) -> asyncio.Task[T]:
        """Start ``coro`` as a task of this process (same as ``asyncio.create_task`` otherwise)."""
        if self._crashed and inspect.iscoroutine(coro):
            coro.close()  # it will never run; closing it avoids a "never awaited" warning
        self._check_alive()
        ctx = contextvars.copy_context()
        ctx.run(_PROCESS.set, self)
        return self.loop.create_task(coro, name=name, context=ctx)

    @contextlib.contextmanager
    def context(self) -> Iterator[SimProcess]:
        """Make the current code part of this process for the duration of the block.

        Tasks and callbacks created inside the block belong to the process for good; the current
        task's own steps belong to it while the block is active.
        """
        self._check_alive()
        token = _PROCESS.set(self)
        try:
            yield self
        finally:
            _PROCESS.reset(token)

    def crash(self) -> None:
        """Same as ``crash(self)``."""
        self.loop.crash(self)

    def tasks(self) -> list[asyncio.Task[Any]]:
        """The process's tasks that are not done (frozen ones included after a crash)."""
        return [t for t in self._tasks if not t.done()]

    def _check_alive(self) -> None:
        if self._crashed:
            raise SchedulerError(
                f"process {self.label} has crashed; spawn_process({self.name!r}) restarts it"
            )

    def __repr__(self) -> str:
        state = "crashed" if self._crashed else "alive"
        return f"<SimProcess {self.label} {state}>"


def spawn_process(name: str) -> SimProcess:
    """Start a simulated process on the running :class:`ControlledLoop` (a restart if ``name`` ran before)."""
    return _controlled_loop("spawn_process()").spawn_process(name)


def crash(proc: SimProcess) -> None:
    """Crash ``proc``: its coroutines never resume, its callbacks and timers never run, no ``finally``."""
    proc.loop.crash(proc)


def current_process() -> SimProcess | None:
    """The simulated process the calling code belongs to, or None for the test driver."""
    return _PROCESS.get()


def _controlled_loop(what: str) -> ControlledLoop:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if not isinstance(loop, ControlledLoop):
        raise SchedulerError(
            f"{what} must be called from a coroutine run by harness.scheduler.run() (or on a "
            f"ControlledLoop); the running loop is {loop!r}"
        )
    return loop


# --- keeping frozen coroutines alive ---------------------------------------------------------

# Coroutines of crashed processes must never run again. Garbage collection would close them,
# which throws GeneratorExit into them and runs their `finally` blocks, so they are kept here for
# the life of the interpreter (a few KB each). The list refers to itself so that interpreter
# teardown does not free it by reference counting, and `gc.freeze()` at exit keeps the final
# collection from finalising it; Python does not promise finalisation at exit anyway.
_GRAVEYARD: list[object] = []


def _bury(obj: object) -> None:
    if not _GRAVEYARD:
        _GRAVEYARD.append(_GRAVEYARD)
        atexit.register(gc.freeze)
    _GRAVEYARD.append(obj)


def frozen_object_count() -> int:
    """How many objects of crashed processes are being kept alive (for diagnostics)."""
    return max(0, len(_GRAVEYARD) - 1)


# --- the loop --------------------------------------------------------------------------------


class _OffloadHandle(events.Handle):
    """A pending ``run_in_executor`` call: a ready 'callback' whose run executes ``func`` on the worker."""

    __slots__ = ("func", "future", "name", "offload_args")

    def __init__(
        self, loop: ControlledLoop, func: Callable[..., Any], args: tuple[Any, ...], future: Any
    ) -> None:
        super().__init__(loop._run_offload, (), loop)
        self._args = (self,)
        self.func = func
        self.offload_args = args
        self.future = future
        self.name = _offload_name(func)

    def __repr__(self) -> str:
        # The base repr formats _args, which hold this handle: that would recurse.
        return f"<offload {self.name}{' cancelled' if self._cancelled else ''}>"


_unregister_task = asyncio.tasks._unregister_task


class ControlledLoop(asyncio.BaseEventLoop):
    """An asyncio loop with virtual time whose every scheduling decision comes from ``choices``.

    Usable on its own (``loop.run_until_complete(coro)``; read ``trace`` before ``close()``, which
    releases it) but normally driven by :func:`run`. It does no real I/O: sockets, subprocesses
    and signal handlers are not supported (the base class raises ``NotImplementedError``).

    ``offload_timeout`` bounds, in real seconds, each call run on the worker thread.
    ``foreign_grace`` is how long (real seconds) an idle loop waits for a callback from a thread
    the code under test started itself before it declares a deadlock.
    """

    def __init__(
        self,
        choices: ChoiceSource | None = None,
        *,
        max_steps: int = LOOP_MAX_STEPS,
        max_virtual_time: float = LOOP_MAX_VIRTUAL_TIME,
        offload_timeout: float | None = OFFLOAD_TIMEOUT,
        foreign_grace: float = FOREIGN_GRACE,
        record_trace: bool = True,
    ) -> None:
        super().__init__()
        self._choices: ChoiceSource | None = choices if choices is not None else FifoChoices()
        self._max_steps = max_steps
        self._max_virtual_time = max_virtual_time
        self._offload_timeout = offload_timeout
        self._foreign_grace = foreign_grace
        self._record_trace = record_trace
        self._now = 0.0
        self._steps = 0
        self._trace: list[TraceEvent] = []
        self._errors: list[LoopError] = []
        self._fifo_only = False  # during shutdown: no decisions are drawn or recorded
        self._stop_when: asyncio.Future[Any] | None = None
        self._fatal: BaseException | None = None  # raised out of _run_once after the current step
        self._pending_offloads = 0
        # Whether a pending database call may lose to a timer. A harness that waits for the system
        # to deliver what it owes (liveness) turns this off: under fair scheduling a call returns
        # before any timer, else "eventually" could be postponed past every deadline.
        self.slow_offloads = True
        self._in_offload = False
        self._worker: OffloadWorker | None = None
        self._task_seq = 0
        self._processes: list[SimProcess] = []
        self._incarnations: dict[str, int] = {}
        self._crashed_any = False
        self._frozen_ids: set[int] = set()
        self._agen_process: weakref.WeakKeyDictionary[Any, SimProcess] = weakref.WeakKeyDictionary()
        # Callbacks handed in by threads we do not control; drained at the start of each step.
        self._inbox: deque[events.Handle] = deque()
        self._foreign_callbacks = 0
        self._baseline_threads = {t.ident for t in threading.enumerate()}

    # -- public state ------------------------------------------------------------------------

    @property
    def steps(self) -> int:
        """Callbacks (including offloaded calls) run so far."""
        return self._steps

    @property
    def virtual_time(self) -> float:
        """Same as ``time()``."""
        return self._now

    @property
    def trace(self) -> list[TraceEvent]:
        """The trace so far (released by ``close()``)."""
        return self._trace

    @property
    def tape(self) -> Tape:
        """The choice source's tape."""
        if self._choices is None:
            raise SchedulerError(
                "the loop is closed and has released its choice source; read the tape before close()"
            )
        return self._choices.tape

    @property
    def processes(self) -> list[SimProcess]:
        """Every simulated process spawned on this loop, in order."""
        return list(self._processes)

    @property
    def errors(self) -> list[LoopError]:
        """What the exception handler was told (unretrieved task exceptions, failing callbacks...)."""
        return self._errors

    @property
    def foreign_callbacks(self) -> int:
        """Callbacks that arrived from uncontrolled threads (each one makes a run less repeatable)."""
        return self._foreign_callbacks

    # -- clock -------------------------------------------------------------------------------

    def time(self) -> float:
        """The virtual clock: moves only when the loop jumps to the next timer."""
        return self._now

    # -- processes ---------------------------------------------------------------------------

    def spawn_process(self, name: str) -> SimProcess:
        """See :func:`spawn_process`."""
        incarnation = self._incarnations.get(name, 0) + 1
        self._incarnations[name] = incarnation
        proc = SimProcess(self, name, incarnation)
        self._processes.append(proc)
        self._note(f"spawn:{proc.label}")
        return proc

    def crash(self, proc: SimProcess) -> None:
        """See :func:`crash`. Called from one of ``proc``'s own tasks, that task stops at its next await."""
        if proc.loop is not self:
            raise SchedulerError(f"{proc!r} belongs to another loop")
        if proc._crashed:
            return
        proc._crashed = True
        self._crashed_any = True
        victims = {t for t in proc._tasks if not t.done()}
        if hasattr(asyncio.Task, "get_context"):  # 3.12+: also catch tasks created via Task(...) directly
            victims.update(t for t in asyncio.all_tasks(self) if t.get_context().get(_PROCESS) is proc)
        for task in sorted(victims, key=lambda t: t.get_name()):
            self._freeze_task(task)
        # Their handles still sit in _ready/_scheduled; the scheduler drops them when it meets them.
        self._note(f"crash:{proc.label}")

    def _freeze_task(self, task: asyncio.Task[Any]) -> None:
        if task.done() or id(task) in self._frozen_ids:
            return
        self._frozen_ids.add(id(task))
        task._log_destroy_pending = False
        # Out of asyncio.all_tasks(): asyncio.run()/Runner and our own shutdown would otherwise
        # try to cancel it and wait forever for a task that can never run.
        _unregister_task(task)
        _bury(task)

    def _is_frozen(self, handle: events.Handle) -> bool:
        proc = handle._context.get(_PROCESS)
        return proc is not None and proc._crashed

    def _drop_frozen(self, handle: events.Handle) -> None:
        owner = getattr(handle._callback, "__self__", None)
        if isinstance(owner, asyncio.Task):
            # A task that joined the process through SimProcess.context() was not tracked at crash.
            self._freeze_task(owner)
        if type(handle) is _OffloadHandle:
            self._pending_offloads -= 1
        _bury(handle)

    # -- tasks -------------------------------------------------------------------------------

    def create_task(
        self, coro: Any, *, name: str | None = None, context: contextvars.Context | None = None, **kwargs: Any
    ) -> asyncio.Task[Any]:
        """Like ``BaseEventLoop.create_task``, plus process membership and deterministic names.

        asyncio's default names ("Task-17") come from a process-wide counter, so they would differ
        between two runs of the same tape; ours count per loop: ``<process>/<coroutine>-<n>``.
        """
        proc = _PROCESS.get() if context is None else context.get(_PROCESS)
        if name is None:
            self._task_seq += 1
            base = _coro_name(coro)
            name = f"{proc.label}/{base}-{self._task_seq}" if proc is not None else f"{base}-{self._task_seq}"
        task = super().create_task(coro, name=name, context=context, **kwargs)
        if proc is not None:
            proc._tasks.add(task)
            if proc._crashed:
                self._freeze_task(task)
        return task

    def run_until_complete(self, future: Any) -> Any:
        """Run until ``future`` is done, then stop right away.

        Unlike the base class this does not stop through a done-callback, which would be one more
        ready callback and so one more (useless) decision after the work is over.
        """
        self._check_closed()
        self._check_running()
        new_task = not asyncio.isfuture(future)
        future = asyncio.ensure_future(future, loop=self)
        if new_task:
            future._log_destroy_pending = False
        self._stop_when = future
        try:
            self.run_forever()
        except BaseException:
            if new_task and future.done() and not future.cancelled():
                future.exception()  # consumed: the caller cannot reach this task
            raise
        finally:
            self._stop_when = None
        if not future.done():
            raise RuntimeError("Event loop stopped before Future completed.")
        return future.result()

    # -- offloads ----------------------------------------------------------------------------

    def run_in_executor(self, executor: Any, func: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Queue ``func(*args)`` as a pending offload, whatever ``executor`` is.

        Every executor asgiref picks ends up here (the single-thread executor, a per-context
        executor under ThreadSensitiveContext, a CurrentThreadExecutor under async_to_sync, a
        caller's executor with thread_sensitive=False, the default one), and so does
        ``asyncio.to_thread``. The call runs on the shared worker thread when the scheduler picks
        it, so it competes with ready callbacks like any other step.
        """
        self._check_closed()
        if self._debug:
            self._check_callback(func, "run_in_executor")
        if asyncio.iscoroutine(func) or inspect.iscoroutinefunction(func):
            raise TypeError("coroutines cannot be used with run_in_executor()")
        _forget_asgiref_context_executor(executor)
        future: asyncio.Future[T] = self.create_future()
        self._ready.append(_OffloadHandle(self, func, args, future))
        self._pending_offloads += 1
        return future

    def _run_offload(self, handle: _OffloadHandle) -> None:
        self._pending_offloads -= 1
        future = handle.future
        func, args = handle.func, handle.offload_args
        handle.func = handle.offload_args = None
        if future.cancelled():
            return  # like a job cancelled while still queued in a ThreadPoolExecutor: it never starts
        if self._worker is None or self._worker.broken:
            self._worker = shared_worker()
        self._in_offload = True
        try:
            ok, value = self._worker.call(func, args, self._offload_timeout)
        except OffloadTimeout as exc:
            self._fatal = exc  # Handle._run would swallow it; _run_once re-raises it
            return
        finally:
            self._in_offload = False
        if future.cancelled():
            return
        if ok:
            future.set_result(value)
        else:
            if isinstance(value, StopIteration):  # a Future refuses StopIteration
                value = RuntimeError(f"offloaded call raised {value!r}")
            future.set_exception(value)

    # -- threads -----------------------------------------------------------------------------

    def call_soon_threadsafe(
        self, callback: Callable[..., Any], *args: Any, context: contextvars.Context | None = None
    ) -> events.Handle:
        """Schedule a callback from any thread, keeping the run repeatable where possible.

        * From the loop thread, or from the worker during an offloaded call (the loop is blocked
          waiting for it, so the moment is deterministic): an ordinary ``call_soon``.
        * Except asgiref's ``AsyncToSync`` inside an offloaded call, which schedules
          ``loop.create_task(coro)`` here and then blocks the worker until the coroutine is done -
          but the loop is blocked waiting for the worker. We raise RuntimeError (as a closed loop
          would); asgiref then runs the coroutine on a private loop in a new thread, and its
          thread-sensitive ``sync_to_async`` calls come back to the worker thread. The offloaded
          call stays one atomic step; what happens inside that private loop is not explored.
        * From any other thread: queued, and taken in at the start of the next step (recorded
          in the trace as ``foreign:...``; such a run is only as repeatable as that thread).
        """
        worker = self._worker
        if self._thread_id is None or threading.get_ident() == self._thread_id:
            return super().call_soon_threadsafe(callback, *args, context=context)
        if self._in_offload and worker is not None and threading.current_thread() is worker.thread:
            if callback == self.create_task:
                raise RuntimeError(
                    "streamspec: the controlled loop is waiting for this offloaded call and cannot run "
                    "a task for it now (asgiref falls back to a private event loop)"
                )
            return super().call_soon_threadsafe(callback, *args, context=context)
        self._check_closed()
        handle = events.Handle(callback, args, self, context)
        self._inbox.append(handle)
        return handle

    def _write_to_self(self) -> None:
        # There is no selector to wake up: the loop never sleeps in real time except in
        # _wait_for_foreign, which polls the inbox.
        pass

    def _drain_inbox(self) -> None:
        while self._inbox:
            handle = self._inbox.popleft()
            self._foreign_callbacks += 1
            self._ready.append(handle)
            self._note(f"foreign:{_describe(handle)}")

    def _stray_threads(self) -> list[threading.Thread]:
        """Live threads started since the loop was made that might still call back."""
        worker = self._worker
        frames = sys._current_frames()
        return [
            t
            for t in threading.enumerate()
            if t.ident not in self._baseline_threads
            and (worker is None or t is not worker.thread)
            and not t.name.startswith("streamspec-offload")
            and t.is_alive()
            and not _idle_executor_thread(frames.get(t.ident))
        ]

    def _wait_for_foreign(self) -> bool:
        """When idle, give threads the code under test started a moment to call back."""
        # Check the inbox first: a thread may have delivered its callback and exited since the
        # drain at the start of this step.
        if self._inbox:
            return True
        if self._foreign_grace <= 0:
            return False
        deadline = _time.monotonic() + self._foreign_grace
        while not self._inbox:
            if _time.monotonic() >= deadline or not self._stray_threads():
                return bool(self._inbox)
            _time.sleep(0.002)
        return True

    # -- async generators --------------------------------------------------------------------

    def _asyncgen_firstiter_hook(self, agen: Any) -> None:
        super()._asyncgen_firstiter_hook(agen)
        proc = _PROCESS.get()
        if proc is not None:
            self._agen_process[agen] = proc

    def _asyncgen_finalizer_hook(self, agen: Any) -> None:
        self._asyncgens.discard(agen)
        proc = self._agen_process.get(agen)
        if proc is not None and proc._crashed:
            _bury(agen)  # resurrected and kept: closing it would run its finally blocks
            return
        if not self.is_closed():
            # Straight to the base class: our override would mistake this create_task for asgiref's.
            super().call_soon_threadsafe(self.create_task, agen.aclose())

    async def shutdown_asyncgens(self) -> None:
        """Close the async generators still open, except those of crashed processes."""
        for agen in list(self._asyncgens):
            proc = self._agen_process.get(agen)
            if proc is not None and proc._crashed:
                self._asyncgens.discard(agen)
                _bury(agen)
        await super().shutdown_asyncgens()

    # -- errors ------------------------------------------------------------------------------

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        """Record what asyncio reports (see ``errors``); frozen tasks are never reported."""
        subject = context.get("task") or context.get("future")
        if subject is not None and id(subject) in self._frozen_ids:
            return
        self._errors.append(LoopError(str(context.get("message", "")), context.get("exception")))
        if self._exception_handler is not None:
            super().call_exception_handler(context)

    # -- the scheduler -----------------------------------------------------------------------

    def _note(self, label: str) -> None:
        if self._record_trace:
            self._trace.append(TraceEvent(self._steps, self._now, label, 0, 1))

    def _run_once(self) -> None:
        """One scheduling step: run one chosen ready callback (or offload), or advance time."""
        if self._stop_when is not None and self._stop_when.done():
            self._stopping = True
            return
        if self._inbox:
            self._drain_inbox()
        self._move_due_timers()

        ready = self._ready
        crashed = self._crashed_any
        live: list[events.Handle] = []
        for handle in ready:
            if handle._cancelled:
                continue
            if crashed and self._is_frozen(handle):
                self._drop_frozen(handle)
                continue
            live.append(handle)
        n = len(live)
        if n == 0:
            ready.clear()
            if not self._stopping:
                self._idle()
            return

        # A database call may take longer than a timer: when only offloads are ready, "the next
        # timer fires first" is one more option (the last one, so FIFO still means "fast DB").
        next_timer = None
        if (
            self._pending_offloads and self.slow_offloads and not self._fifo_only
            and all(type(h) is _OffloadHandle for h in live)
        ):
            next_timer = self._next_timer()
            if next_timer is not None and next_timer._when > self._max_virtual_time:
                next_timer = None
        options = n + (next_timer is not None)

        if self._steps >= self._max_steps:
            raise self._bound_exceeded("max_steps", self._max_steps)
        if options == 1 or self._fifo_only:
            index = 0
        else:
            assert self._choices is not None
            index = self._choices.choose(options, "ready+time" if next_timer is not None else "ready")

        if index == n:
            assert next_timer is not None
            self._advance_time(next_timer._when, index, options)
            return
        if index == 0 and n == len(ready):
            handle = ready.popleft()
        else:
            handle = live.pop(index)
            ready.clear()
            ready.extend(live)
        if self._record_trace:
            self._trace.append(TraceEvent(self._steps, self._now, _describe(handle), index, options))
        self._steps += 1
        handle._run()
        handle = None  # type: ignore[assignment]  # break cycles when the callback raised
        if self._fatal is not None:
            fatal, self._fatal = self._fatal, None
            raise fatal

    def _move_due_timers(self) -> None:
        scheduled = self._scheduled
        # Same housekeeping as the base class: purge cancelled timers when they pile up.
        if len(scheduled) > 100 and self._timer_cancelled_count / len(scheduled) > 0.5:
            kept = []
            for handle in scheduled:
                if handle._cancelled:
                    handle._scheduled = False
                else:
                    kept.append(handle)
            heapq.heapify(kept)
            self._scheduled = scheduled = kept
            self._timer_cancelled_count = 0
        now = self._now
        while scheduled and scheduled[0]._when <= now:
            handle = heapq.heappop(scheduled)
            handle._scheduled = False
            if handle._cancelled:
                self._timer_cancelled_count -= 1
                continue
            self._ready.append(handle)

    def _next_timer(self) -> asyncio.TimerHandle | None:
        scheduled = self._scheduled
        while scheduled:
            handle = scheduled[0]
            if handle._cancelled:
                heapq.heappop(scheduled)
                handle._scheduled = False
                self._timer_cancelled_count -= 1
            elif self._crashed_any and self._is_frozen(handle):
                heapq.heappop(scheduled)
                handle._scheduled = False
                self._drop_frozen(handle)
            else:
                return handle
        return None

    def _advance_time(self, when: float, index: int = 0, options: int = 1) -> None:
        if when > self._max_virtual_time:
            raise self._bound_exceeded("max_virtual_time", self._max_virtual_time, next_timer=when)
        delta = when - self._now
        if when > self._now:
            self._now = when
        if self._record_trace:
            self._trace.append(TraceEvent(self._steps, self._now, f"advance-time:+{delta:g}", index, options))

    def _idle(self) -> None:
        """Nothing is ready: jump to the next timer, wait for a foreign thread, or report a hang."""
        next_timer = self._next_timer()
        if next_timer is not None:
            self._advance_time(next_timer._when)
        elif not self._wait_for_foreign():
            raise self._deadlock()

    def _bound_exceeded(self, bound: str, limit: float, next_timer: float | None = None) -> BoundExceeded:
        recent = [e.label for e in self._trace[-12:]]
        if bound == "max_steps":
            what = f"ran {self._steps} callbacks (max_steps={limit})"
            hint = (
                "a livelock (tasks that keep waking each other) or a scenario that needs a higher max_steps"
            )
        else:
            what = f"would move virtual time to {next_timer:g}s (max_virtual_time={limit:g}s)"
            hint = (
                "something keeps sleeping or waiting on a timeout; raise max_virtual_time if that is expected"
            )
        message = (
            f"streamspec: the run {what} at step {self._steps}, virtual time {self._now:g}s: {hint}.\n"
            f"Last steps: {', '.join(recent) or '(trace off)'}\n{self._waiting_report()}"
        )
        return BoundExceeded(message, bound=bound, limit=limit, steps=self._steps, virtual_time=self._now)

    def _deadlock(self) -> Deadlock:
        waiting = _waiting_tasks(self)
        message = (
            f"streamspec: deadlock at step {self._steps}, virtual time {self._now:g}s: the run is not "
            "finished, but no callback is ready, no timer is pending and no offloaded call is waiting, "
            "so nothing can ever run again. Look for a task waiting on something that only a crashed "
            "process, a lost wake-up or a never-set event would provide.\n" + self._waiting_report(waiting)
        )
        return Deadlock(message, waiting=waiting, steps=self._steps, virtual_time=self._now)

    def _waiting_report(self, waiting: list[tuple[str, str]] | None = None) -> str:
        if waiting is None:
            waiting = _waiting_tasks(self)
        lines = [f"{len(waiting)} task(s) waiting:"]
        for name, stack in waiting:
            lines.append(f"  * {name}")
            lines.extend("      " + line for line in stack.splitlines())
        crashed = [p.label for p in self._processes if p._crashed]
        if crashed:
            lines.append(f"Crashed processes (frozen, never resumed): {', '.join(crashed)}")
        return "\n".join(lines)

    # -- shutdown ----------------------------------------------------------------------------

    def shutdown(self) -> BaseException | None:
        """Cancel what is left (like ``asyncio.run``), close async generators, then close the loop.

        Runs in FIFO order without drawing or recording decisions. Returns the error that stopped
        the clean-up (a task that will not finish after cancellation) instead of raising it; such
        tasks are frozen like a crashed process's, so none of their code runs after this.
        """
        if self.is_closed():
            return None
        error: BaseException | None = None
        self._fifo_only = True
        self._max_steps = self._steps + SHUTDOWN_STEPS
        self._max_virtual_time = self._now + max(self._max_virtual_time, LOOP_MAX_VIRTUAL_TIME)
        self._foreign_grace = min(self._foreign_grace, 0.1)
        self._note("shutdown")
        try:
            pending = [t for t in asyncio.all_tasks(self) if not t.done()]
            if pending:
                for task in pending:
                    task.cancel()
                self.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                for task in pending:
                    if not task.cancelled() and task.exception() is not None:
                        self.call_exception_handler(
                            {
                                "message": "unhandled exception during shutdown",
                                "exception": task.exception(),
                                "task": task,
                            }
                        )
            if len(self._asyncgens):
                self.run_until_complete(self.shutdown_asyncgens())
        except Exception as exc:
            error = exc
            for task in asyncio.all_tasks(self):
                self._freeze_task(task)
        finally:
            self.close()
        return error

    def close(self) -> None:
        """Close the loop and release the choice source and the trace (they may be large)."""
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        super().close()
        self._inbox.clear()
        # Frozen tasks keep this loop alive forever (see _GRAVEYARD): hold nothing big.
        self._choices = None
        self._trace = []
        self._stop_when = None


# --- helpers ---------------------------------------------------------------------------------


def _callable_name(fn: Any) -> str:
    while isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if name is None:
        return type(fn).__qualname__
    return name.replace("<locals>.", "")


def _offload_name(func: Any) -> str:
    while isinstance(func, functools.partial):
        inner = func.func
        owner = getattr(inner, "__self__", None)
        if isinstance(owner, contextvars.Context) and func.args:  # asyncio.to_thread: partial(ctx.run, fn)
            return _offload_name(func.args[0])
        func = inner
    owner = getattr(func, "__self__", None)
    # asgiref's SyncToAsync offloads its own thread_handler; the interesting name is what it wraps.
    if owner is not None and type(owner).__name__ == "SyncToAsync" and hasattr(owner, "func"):
        return _callable_name(owner.func)
    return _callable_name(func)


def _coro_name(coro: Any) -> str:
    name = getattr(coro, "__qualname__", None) or type(coro).__name__
    return name.replace("<locals>.", "")


def _describe(handle: events.Handle) -> str:
    if type(handle) is _OffloadHandle:
        return "offload:" + handle.name
    callback = handle._callback
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        return "task:" + owner.get_name()
    return "call:" + _callable_name(callback)


def _idle_executor_thread(frame: Any) -> bool:
    # An idle ThreadPoolExecutor worker (e.g. the one asgiref leaves behind after an async_to_sync
    # fallback) blocks in the C-level queue get, so its innermost Python frame is `_worker`.
    if frame is None:
        return True
    code = frame.f_code
    return code.co_name == "_worker" and code.co_filename.endswith(
        ("concurrent/futures/thread.py", "concurrent\\futures\\thread.py")
    )


def _task_stack(task: asyncio.Task[Any]) -> str:
    buf = io.StringIO()
    task.print_stack(limit=20, file=buf)
    lines = buf.getvalue().splitlines()[1:]  # drop the "Stack for <Task ...>" header
    waiter = getattr(task, "_fut_waiter", None)
    head = (
        f"waiting on {waiter!r}" if waiter is not None else "not waiting on a future (ready or just created)"
    )
    return "\n".join([head, *lines])


def _waiting_tasks(loop: ControlledLoop) -> list[tuple[str, str]]:
    tasks = sorted(asyncio.all_tasks(loop), key=lambda t: t.get_name())
    return [(t.get_name(), _task_stack(t)) for t in tasks if not t.done()]


def _forget_asgiref_context_executor(executor: Any) -> None:
    """Keep asgiref's ThreadSensitiveContext from waking the loop from a foreign thread.

    The one path that bypasses run_in_executor: ``ThreadSensitiveContext.__aexit__`` shuts down
    the per-context executor that ``sync_to_async`` created, joining it on a fresh real thread it
    awaits through ``asyncio.wrap_future`` - so the wake-up arrives via call_soon_threadsafe at a
    real-time moment. We never submit to that executor (the call comes here instead), so we take
    it out of asgiref's registry: __aexit__ finds nothing to join and stays on the loop. A
    caller-supplied executor (``ThreadSensitiveContext(executor=...)``) is not joined by asgiref
    and is left alone.
    """
    if not isinstance(executor, ThreadPoolExecutor):
        return
    sync = sys.modules.get("asgiref.sync")
    s2a = getattr(sync, "SyncToAsync", None)
    context_var = getattr(s2a, "thread_sensitive_context", None)
    registry = getattr(s2a, "context_to_thread_executor", None)
    if context_var is None or registry is None:
        return
    owner = context_var.get(None)
    if owner is None or getattr(owner, "_executor", None) is not None:
        return
    if registry.get(owner) is executor:
        registry.pop(owner, None)


# --- the entry point -------------------------------------------------------------------------


@dataclass
class RunResult(Generic[T]):
    """The outcome of one :func:`run`.

    ``error`` is what ``main`` raised, or the scheduler's finding (:class:`Deadlock`,
    :class:`BoundExceeded`, :class:`~harness.errors.TapeError`, ...); ``value`` is what ``main``
    returned. ``steps`` and ``virtual_time`` are taken when ``main`` finished (before shutdown);
    ``trace`` also covers the shutdown. ``loop_errors`` keeps growing if asyncio reports more
    after the run (e.g. an unretrieved task exception found by garbage collection).
    """

    value: T | None
    error: BaseException | None
    tape: Tape
    steps: int
    virtual_time: float
    trace: list[TraceEvent]
    loop_errors: list[LoopError]
    processes: list[SimProcess]
    foreign_callbacks: int = 0
    shutdown_error: BaseException | None = None

    @property
    def ok(self) -> bool:
        """True when ``main`` returned normally."""
        return self.error is None

    def unwrap(self) -> T:
        """Return ``value``, or raise ``error``."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]

    def format_trace(self, last: int | None = None) -> str:
        """The trace as text, one event per line (only the ``last`` N if given)."""
        return format_trace(self.trace, last)

    def describe(self, last: int = 40) -> str:
        """A short report: outcome, counters, tape, and the end of the trace."""
        outcome = "ok" if self.error is None else f"{type(self.error).__name__}: {self.error}"
        return (
            f"outcome: {outcome}\nsteps: {self.steps}, virtual time: {self.virtual_time:g}s, "
            f"decisions: {len(self.tape)}\ntape: {self.tape.to_json()}\n"
            f"trace (last {last}):\n{self.format_trace(last)}"
        )


def format_trace(trace: list[TraceEvent], last: int | None = None) -> str:
    """Render trace events as ``step  time  [choice/options]  label`` lines."""
    events_ = trace[-last:] if last else trace
    lines = []
    for ev in events_:
        pick = f"[{ev.choice}/{ev.options}]" if ev.options > 1 else ""
        lines.append(f"{ev.step:>6} {ev.time:>10.3f}s {pick:>8} {ev.label}")
    return "\n".join(lines)


def run(
    main: Callable[[], Awaitable[T]],
    choices: ChoiceSource | None = None,
    *,
    max_steps: int = LOOP_MAX_STEPS,
    max_virtual_time: float = LOOP_MAX_VIRTUAL_TIME,
    offload_timeout: float | None = OFFLOAD_TIMEOUT,
    foreign_grace: float = FOREIGN_GRACE,
    record_trace: bool = True,
) -> RunResult[T]:
    """Run ``main()`` on a fresh :class:`ControlledLoop` driven by ``choices`` (FIFO by default).

    Never raises for what happens inside the run: ``main``'s exception and the scheduler's
    findings go to ``RunResult.error``. Exceptions that are not ``Exception`` subclasses (e.g.
    KeyboardInterrupt, or Hypothesis's internal control flow from ``data.draw``) propagate after
    the loop is cleaned up. Must be called from synchronous code (not inside a running loop).
    """
    source: ChoiceSource = choices if choices is not None else FifoChoices()
    tape_start = len(source.tape)
    loop = ControlledLoop(
        source,
        max_steps=max_steps,
        max_virtual_time=max_virtual_time,
        offload_timeout=offload_timeout,
        foreign_grace=foreign_grace,
        record_trace=record_trace,
    )
    trace = loop.trace
    value: Any = None
    error: BaseException | None = None
    steps, vtime = 0, 0.0
    try:
        ctx = contextvars.copy_context()
        ctx.run(_PROCESS.set, None)  # the driver belongs to no process
        main_task = loop.create_task(ctx.run(main), name="main", context=ctx)
        try:
            loop.run_until_complete(main_task)
        except BaseException as exc:
            if not main_task.done():
                if not isinstance(exc, Exception):
                    raise
                error = exc
        if main_task.done():
            if main_task.cancelled():
                error = asyncio.CancelledError("the main coroutine was cancelled")
            else:
                error = main_task.exception()
                if error is None:
                    value = main_task.result()
        finish = getattr(source, "finish", None)
        if error is None and finish is not None:
            try:
                finish()
            except Exception as exc:
                error = exc
        steps, vtime = loop.steps, loop.virtual_time
    finally:
        foreign = loop.foreign_callbacks
        shutdown_error = loop.shutdown()
    return RunResult(
        value=value,
        error=error,
        tape=source.tape.since(tape_start),
        steps=steps,
        virtual_time=vtime,
        trace=trace,
        loop_errors=loop.errors,
        processes=loop.processes,
        foreign_callbacks=foreign,
        shutdown_error=shutdown_error,
    )
