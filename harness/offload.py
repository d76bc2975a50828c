"""The one worker thread on which the scheduler executes offloaded (``run_in_executor``) calls.

Why a real thread at all: Django refuses ORM calls from a thread that runs an event loop ("You
cannot call this from an async context"), and a SQLite connection must stay on the thread that
opened it. Why only one, and synchronous: the loop hands a call over and blocks until it returns,
so there is never real concurrency and a run is repeatable. The thread is shared by every run in
the process (starting a thread per run would cost more than a tiny run itself) and it is safe to
share because it only ever runs one call at a time, for whichever loop holds the lock.
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable
from typing import Any

from harness.errors import OffloadTimeout

__all__ = ["OffloadWorker", "on_worker_thread", "run_on_worker", "shared_worker", "shutdown_worker"]

_STOP = object()


class OffloadWorker:
    """A daemon thread that runs one call at a time, synchronously for the calling thread."""

    def __init__(self, name: str = "streamspec-offload") -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._results: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self.broken = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    @property
    def thread(self) -> threading.Thread:
        """The worker's thread (for identity checks)."""
        return self._thread

    def call(
        self, fn: Callable[..., Any], args: tuple[Any, ...] = (), timeout: float | None = None
    ) -> tuple[bool, Any]:
        """Run ``fn(*args)`` on the worker and wait; return ``(True, result)`` or ``(False, exception)``.

        Raises :class:`OffloadTimeout` if it does not return within ``timeout`` real seconds; the
        worker is then marked broken (its thread is still stuck in the call) and must be replaced.
        """
        if threading.current_thread() is self._thread:
            raise RuntimeError(
                "OffloadWorker.call() was called from the worker thread itself; it would deadlock"
            )
        with self._lock:
            if self.broken:
                raise OffloadTimeout("this offload worker is stuck in an earlier call; use a new one")
            self._jobs.put((fn, args))
            try:
                return self._results.get(timeout=timeout)
            except queue.Empty:
                self.broken = True
                raise OffloadTimeout(
                    f"offloaded call {_callable_name(fn)} did not return within {timeout}s of real time. It "
                    "is probably blocked on something only the event loop could provide (a lock, a queue, "
                    "an async_to_sync bridge) - but the loop waits for it. Make the call self-contained, or "
                    "raise offload_timeout if it is just slow."
                ) from None

    def close(self) -> None:
        """Ask the thread to exit after its current call (does not wait for a stuck call)."""
        self._jobs.put(_STOP)

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            fn, args = job
            try:
                result: tuple[bool, Any] = (True, fn(*args))
            except BaseException as exc:  # the caller re-raises it, like an executor future does
                result = (False, exc)
            # Drop our references before handing over so nothing of the call outlives it here.
            del job, fn, args
            self._results.put(result)
            del result


_shared: OffloadWorker | None = None
_shared_lock = threading.Lock()


def shared_worker() -> OffloadWorker:
    """The process-wide worker, started on first use and replaced if an earlier call got stuck."""
    global _shared
    worker = _shared
    if worker is not None and not worker.broken:
        return worker
    with _shared_lock:
        if _shared is None or _shared.broken:
            _shared = OffloadWorker()
        return _shared


def shutdown_worker() -> None:
    """Stop the shared worker thread (a later run starts a new one)."""
    global _shared
    with _shared_lock:
        if _shared is not None:
            _shared.close()
            _shared.thread.join(timeout=5)
            _shared = None


def on_worker_thread() -> bool:
    """True when called on the shared worker thread (i.e. inside an offloaded call)."""
    worker = _shared
    return worker is not None and threading.current_thread() is worker.thread


def run_on_worker(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn(*args, **kwargs)`` on the shared worker thread from sync code and return its result.

    Use it for setup or teardown that must happen on the same thread as the ORM calls of a run,
    e.g. migrating an in-memory SQLite database (each thread has its own connection, and so its
    own in-memory database) or closing that thread's connections. Called on the worker itself it
    just calls ``fn``. It waits as long as ``fn`` takes.
    """
    if on_worker_thread():
        return fn(*args, **kwargs)
    call = functools.partial(fn, *args, **kwargs) if kwargs else fn
    ok, value = shared_worker().call(call, args if not kwargs else ())
    if ok:
        return value
    raise value


def _callable_name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
