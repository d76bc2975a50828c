"""S7.3 Graceful shutdown: a shutdown interrupts a task; it is not the task's end."""

from __future__ import annotations

from harness.checkers.base import ClauseResult, Judge
from harness.checkers.s7_restart import unfinished_at
from harness.history import FINAL_STATE, TERMINAL_EVENT_TYPES, History

CLAUSE_ID = "S7.3"


def check(history: History) -> ClauseResult:
    judge = Judge(CLAUSE_ID, history)
    shutdowns = [f for f in history.crashes() if f.fault == "shutdown"]
    if not shutdowns:
        judge.note("no graceful shutdown in this history: nothing to judge")
    for shutdown in shutdowns:
        judge.saw("shutdowns")
        for task in unfinished_at(history, shutdown):
            judge.saw("tasks interrupted by a shutdown")
            if history.finish(task) is not None:
                continue  # a run finished it later: S5/S6 judge that end
            stored = history.persisted(task, after=shutdown.index)
            if stored is not None and stored[1].status in ("completed", "failed"):
                snap, row = stored
                judge.fail(
                    f"{task} was running in {shutdown.process} when it shut down at #{shutdown.index}; "
                    f"no run of {task} returned or raised, yet {snap.process}'s snapshot #{snap.index} "
                    f"reports its row as {row.status!r}: the shutdown was stored as the task's end",
                    shutdown.index, snap.index,
                )
            for a in history.attachments(task):
                for d in a.task_deliveries():
                    if d.index > shutdown.index and (
                        d.event_type in TERMINAL_EVENT_TYPES or d.event_type == FINAL_STATE
                    ):
                        judge.fail(
                            f"client {a.client} ({a.process}) received {d.event_type!r} of {task} at "
                            f"#{d.index}, after {shutdown.process} shut down at #{shutdown.index} while "
                            f"running it; no run of {task} returned or raised: the shutdown was "
                            "announced as the task's end",
                            shutdown.index, d.index,
                        )
                        break
    return judge.result()
