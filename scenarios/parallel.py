"""Family passes run ahead in worker processes, so that a verify uses more than one core.

A verify spends its budget pass by pass and, within a pass, family by family (`scenarios.verify`):
what one family finds is no longer a target for the families after it. That order is kept. The
workers run every family's passes *speculatively*, from the state the search starts with, as if
no family found anything; the parent then takes their passes in its own order (pass by pass,
family by family). A pass that found nothing ran exactly as it would have in one process, so its
statistics are merged as they are. From the first pass that found something on, the targets of
the later ones would have been different: the parent runs that pass and every later one itself,
as it would without workers, and drops what the workers did for them.

So the result is the same with any number of jobs: a conforming implementation is searched on
every core, and a failing one costs about what it costs in one process (its first find ends the
speculation). Why processes: the search is Python on one event loop per run, held by the GIL, and
an implementation keeps per-process state (a coordinator, Django's connections). Why spawned and
configured once: a forked child would inherit the parent's database connection and threads. Each
worker has a database of its own, so only the default temporary SQLite database can be used (a
DATABASE_URL is shared by every process that reads it, and the workers empty it between runs).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from scenarios.stats import Stats

__all__ = ["FamilyPass", "WorkerPool", "default_jobs", "parallel_refusal"]


@dataclass
class FamilyPass:
    """What one pass of a family did in a worker, for the parent to take or drop."""

    family: str
    found: bool
    """A round found a failure: the parent runs this family's pass again itself."""
    stats: Stats
    generated: int
    rounds: int
    finished: bool
    said: list[str]


def default_jobs() -> int:
    """Worker processes when none are asked for: one per core, at most 8 (`verify` also caps them
    at one per family)."""
    return max(1, min(os.cpu_count() or 1, 8))


def parallel_refusal(jobs: int, on_example: Any, database_url: str | None) -> str | None:
    """Why a verify with `jobs` cannot use worker processes, or None if it can."""
    if jobs <= 1:
        return None
    if on_example is not None:
        return "an on_example callback sees every example in this process"
    if database_url:
        return ("DATABASE_URL names one database for every process, and each worker empties it between "
                "its runs")
    return None


# -- the worker side ------------------------------------------------------------------------------

_adapter: Any = None
_generation: Any = None
"""The parent's generation counter (shared memory): work of an older generation was dropped."""


def _start_worker(sut: str, generation: Any, parent: int) -> None:
    from harness.adapters import load_adapter
    from harness.django_setup import configure

    # First, and with the parent's pid as the parent gave it: a parent killed while this process
    # was still starting is gone already, and its pid is no longer this process's parent's.
    threading.Thread(target=_exit_with, args=(parent,), name="streamspec-parent-watch", daemon=True).start()
    global _adapter, _generation
    _adapter = load_adapter(sut)
    configure(_adapter)  # a temporary SQLite database of this process's own
    _generation = generation


def _exit_with(parent: int) -> None:
    """End this worker when its parent is gone (killed: it could not shut the pool down). A worker
    holds both ends of its task queue, so it would otherwise wait on it forever."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_SECONDS)
    from django.conf import settings

    if settings.configured:
        folder = os.path.dirname(str(settings.DATABASES["default"]["NAME"]))
        if os.path.basename(folder).startswith("streamspec-"):
            shutil.rmtree(folder, ignore_errors=True)  # the temporary database: atexit will not run
    os._exit(3)


PARENT_POLL_SECONDS = 0.5


def _run_family_passes(family: str, shares: tuple[float, ...], state: dict[str, Any],
                       generation: int) -> list[FamilyPass]:
    from scenarios.verify import _Verification

    run = _Verification.for_worker(_adapter, state, lambda _line: None)
    # Stop at the first failing example, unshrunk (the parent runs this pass again itself), and as
    # soon as the parent dropped this generation's work.
    run.halt = lambda search: search.before_failure is not None or _generation.value != generation
    return run.family_passes(family, shares)


# -- the parent side ------------------------------------------------------------------------------


class WorkerPool:
    """`jobs` spawned processes, each configured once for the implementation `sut` names."""

    def __init__(self, sut: str, jobs: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._generation = context.Value("q", 0, lock=False)
        self._pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_start_worker,
                                         initargs=(sut, self._generation, os.getpid()))

    def submit(self, family: str, shares: tuple[float, ...],
               state: dict[str, Any]) -> Future[list[FamilyPass]]:
        """`family`'s passes (one per share of its budget), from `state`."""
        return self._pool.submit(_run_family_passes, family, shares, state, self._generation.value)

    def abandon(self) -> None:
        """Drop the work submitted so far: queued passes never start, running ones end at their
        next example (their results are not used)."""
        self._generation.value += 1

    def close(self) -> None:
        self.abandon()
        self._pool.shutdown(wait=True, cancel_futures=True)
