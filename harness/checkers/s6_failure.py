"""S6 Failure: a task that raised is persisted as failed, clients get the error, no silent re-run."""

from __future__ import annotations

from harness.checkers.base import ClauseResult, Judge, finish_lost_in_crash
from harness.history import History

CLAUSE_ID = "S6"


def check(history: History) -> ClauseResult:
    judge = Judge(CLAUSE_ID, history)
    if not any((f := history.finish(t)) and f.outcome == "error" for t in history.tasks()):
        judge.note("no task failed in this history: nothing to judge")
    for task in history.tasks():
        finish = history.finish(task)
        if finish is None or finish.outcome != "error":
            continue
        judge.saw("failed tasks")
        failed = f"{task} failed at #{finish.index}"
        lost = finish_lost_in_crash(history, finish)
        if lost is not None:
            judge.note(f"{task}'s failure at #{finish.index} died with its process (crash #{lost}) "
                       "before any client saw it: an interrupted run, judged by S7")
            continue

        found = history.persisted(task, after=finish.index)
        if found is None:
            judge.cannot_tell(f"no snapshot after #{finish.index} reports {task}'s persisted row")
        else:
            snap, row = found
            judge.saw("persisted rows")
            if row.status != "failed" or not row.error:
                judge.fail(
                    f"{failed} but {snap.process}'s snapshot #{snap.index} reports its row as "
                    f"{row.status!r} with error {row.error!r}",
                    finish.index, snap.index,
                )

        for a in history.attachments(task):
            if a.left_at is not None:
                # It left (detached, dropped, or its process died): an error still on its way
                # then is not owed, as for S5. Clients that stay are owed it.
                continue
            judge.saw("clients owed the error")
            timing = "joined after" if a.joined_from > finish.index else "was connected when"
            deliveries = a.task_deliveries()
            for d in deliveries:
                if d.event_type == "complete":
                    judge.fail(
                        f"client {a.client} received 'complete' for {task}, which failed",
                        finish.index, d.index,
                    )
            if not any(d.event_type == "error" for d in deliveries):
                judge.missing(
                    a, f"client {a.client} {timing} {failed} but never received the error",
                    a.joined_from, finish.index,
                )

        for run in history.runs(task):
            if run.start > finish.index:
                judge.fail(
                    f"{failed} but ran process() again on {run.obj} ({run.process}) at #{run.start}",
                    finish.index, run.start,
                )
    return judge.result()
