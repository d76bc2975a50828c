"""The run driver: the one place where a run is set up on a controlled loop, driven, settled,
ended and judged.

A :class:`RunDriver` owns one persistent :class:`~harness.scheduler.ControlledLoop`, the recorder
and the `Run` on it. Callers drive it one piece at a time (:meth:`RunDriver.drive`: a program
step, a whole scenario function) and end it with :meth:`RunDriver.finish`, which settles the
system, records how the run ended, checks every clause and returns an :class:`Outcome`. The search
(`scenarios.program.Session`, one example of a state machine) and :func:`run_scenario` (a scenario
function, as the pytest plugin's `scenario_runner` runs one) both go through it, so a run ends the
same way whoever started it, and a tape recorded by one replays in the other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from harness.adapters import Adapter
from harness.bounds import RUN_MAX_STEPS, RUN_MAX_VIRTUAL_TIME
from harness.checkers import check_all
from harness.choice import ChoiceSource, FifoChoices, Tape
from harness.errors import BoundExceeded, Deadlock
from harness.history import HARNESS, History, RunEnd
from harness.recorder import Recorder
from harness.runner import Run, RunStacks
from harness.scheduler import ControlledLoop

__all__ = ["Outcome", "RunDriver", "Scenario", "reset_database", "run_scenario"]


@dataclass
class Outcome:
    """What one run gave: the history, every clause's result, and how to replay it."""

    history: History
    results: list[Any]
    tape: Tape
    steps: int
    virtual_time: float
    stacks: RunStacks | None = None
    """Where the implementation created objects, started runs and touched client queues."""
    cut_short: str | None = None
    """Why the run ended early, if it did: the scheduler's report of a bound or a hang, with the
    stack of every coroutine still waiting (the history's RunEnd says which clients waited)."""

    def result(self, clause: str) -> Any:
        for result in self.results:
            if result.clause == clause:
                return result
        raise KeyError(f"no result for clause {clause!r}")

    def verdict(self, clause: str) -> str:
        return str(self.result(clause).verdict)

    def failed(self) -> list[Any]:
        return [r for r in self.results if str(r.verdict) == "fail"]

    def explain(self) -> str:
        lines = []
        for result in self.failed():
            lines.append(f"{result.clause}: " + "; ".join(v.explanation for v in result.violations))
        return "\n".join(lines) or "no violation"


class RunDriver:
    """One run's live state: the loop, the recorder and the `Run` on it.

    Drive it with :meth:`drive` and end it with :meth:`finish` (settle, record the end, check
    every clause) or :meth:`close` (discard). `fresh_database` empties the implementation's and the
    probe's tables first, so primary keys, and with them a replayed run, are the same every time.
    """

    def __init__(self, adapter: Adapter, choices: ChoiceSource | None = None, *,
                 max_steps: int = RUN_MAX_STEPS, max_virtual_time: float = RUN_MAX_VIRTUAL_TIME,
                 record_trace: bool = False, fresh_database: bool = True,
                 capture_stacks: bool = True) -> None:
        self.adapter = adapter
        if fresh_database:
            reset_database(adapter)
        self.choices: ChoiceSource = choices if choices is not None else FifoChoices()
        self._tape_start = len(self.choices.tape)
        self.loop = ControlledLoop(self.choices, max_steps=max_steps, max_virtual_time=max_virtual_time,
                                   record_trace=record_trace)
        self.ended: str | None = None
        """None while running; else how the run ended: "done", "bound" or "hang"."""
        self.end_error: BaseException | None = None
        self.outcome: Outcome | None = None
        self._closed = False
        self.recorder: Recorder = None  # type: ignore[assignment]
        self.run: Run = None  # type: ignore[assignment]

        async def setup() -> None:
            self.recorder = Recorder(self.loop.time)
            self.run = Run(adapter, self.recorder, capture_stacks=capture_stacks)

        self.drive(setup)

    def drive(self, fn: Callable[[], Awaitable[Any]]) -> bool:
        """Run `fn()` to completion on the loop; False if the run ended (bound or hang) instead."""
        if self.ended is not None:
            return False
        task = self.loop.create_task(fn())
        try:
            self.loop.run_until_complete(task)
        except (BoundExceeded, Deadlock) as exc:
            self.end_error = exc
            self.ended = "bound" if isinstance(exc, BoundExceeded) else "hang"
            if self.recorder is not None and self.run is not None:
                self.recorder.close(RunEnd, HARNESS, reason=self.ended, waiting=self.run.waiting_clients())
            return False
        return True

    def history(self) -> History:
        """The history so far (a prefix while the run goes on)."""
        return self.recorder.history()

    def finish(self) -> Outcome:
        """Settle, record the end of the run, check every clause, and close the loop."""
        if self.outcome is not None:
            return self.outcome
        try:
            if self.ended is None:

                async def settle() -> None:
                    await self.run.settle()

                if self.drive(settle):
                    self.ended = "done"
                    self.recorder.close(RunEnd, HARNESS, reason="done", waiting=self.run.waiting_clients())
                    finish = getattr(self.choices, "finish", None)
                    if finish is not None:
                        finish()  # a replayed tape must be used up exactly
            history = self.recorder.history()
            self.outcome = Outcome(history, check_all(history), self.tape, self.loop.steps, self.loop.time(),
                                   stacks=self.run.stacks if self.run.capture_stacks else None,
                                   cut_short=None if self.end_error is None else str(self.end_error))
            return self.outcome
        finally:
            self.close()

    def close(self) -> None:
        """Cancel what is left and close the loop (idempotent)."""
        if not self._closed:
            self._closed = True
            if not self.loop.is_closed():
                self.loop.shutdown()

    @property
    def tape(self) -> Tape:
        """The decisions taken in this run so far."""
        return self.choices.tape.since(self._tape_start)


Scenario = Callable[[Run], Awaitable[None]]
"""A scenario function: a coroutine function taking the run's `Run` handle."""


def run_scenario(adapter: Adapter, scenario: Scenario, choices: ChoiceSource | None = None, *,
                 max_steps: int = RUN_MAX_STEPS, max_virtual_time: float = RUN_MAX_VIRTUAL_TIME,
                 fresh_database: bool = True) -> Outcome:
    """Run `scenario` on a fresh driver (FIFO when no choices), settle, and check every clause."""
    driver = RunDriver(adapter, choices, max_steps=max_steps, max_virtual_time=max_virtual_time,
                       fresh_database=fresh_database)
    try:
        driver.drive(lambda: scenario(driver.run))
        return driver.finish()
    finally:
        driver.close()


# -- the database every run starts from --------------------------------------------------------

_FLUSH: dict[tuple[str, ...], list[str]] = {}


def _tables(adapter: Adapter) -> list[str]:
    from django.apps import apps

    from harness.django_setup import PROBE_APP

    names = {*adapter.installed_apps, PROBE_APP}
    tables: list[str] = []
    for config in apps.get_app_configs():
        if config.name in names:
            tables.extend(m._meta.db_table for m in config.get_models() if m._meta.managed)
    return sorted(tables)


def _flush(tables: tuple[str, ...]) -> None:
    from django.core.management.color import no_style
    from django.db import connection, transaction

    statements = _FLUSH.get(tables)
    if statements is None:
        existing = set(connection.introspection.table_names())
        present = [t for t in tables if t in existing]
        statements = list(connection.ops.sql_flush(no_style(), present, reset_sequences=True))
        _FLUSH[tables] = statements
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def reset_database(adapter: Adapter) -> None:
    """Empty the probe's and the implementation's tables and restart their primary keys at 1.

    Every run starts from the same database, so primary keys (which the implementation may put in
    what it stores, e.g. an error message) are the same when the run is replayed, and nothing an
    earlier run stored (events, claims) can leak into the next one.
    """
    from harness.offload import run_on_worker

    run_on_worker(_flush, tuple(_tables(adapter)))
