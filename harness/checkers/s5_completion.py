"""S5 Completion: the terminal event reaches every client and ends its stream; nothing follows."""

from __future__ import annotations

from harness.checkers.base import ClauseResult, Judge, delivers_end, finish_lost_in_crash
from harness.history import FINAL_STATE, TERMINAL_EVENT_TYPES, Attachment, Finish, History

CLAUSE_ID = "S5"
STATE_TYPES = (*TERMINAL_EVENT_TYPES, FINAL_STATE)


def _final_state_due_first(history: History, a: Attachment, finish: Finish) -> bool:
    """Whether the joiner's first event must already be the final state: the task's terminal
    event had been sent (its send completed) before the join began. When process() returned or
    raised without one, the implementation makes the terminal event up and stores the outcome
    after process() ended; a joiner in that window may first get the latest event (S3), as long
    as the final state follows."""
    if finish.seq is None:
        return False
    send = history.send(finish.task, finish.seq)
    return send is not None and history.sent_by(send) < a.joined_from


def _check_client(judge: Judge, history: History, a: Attachment, finish: Finish) -> None:
    deliveries = a.task_deliveries()
    late = a.joined_from > finish.index
    timing = "joined after" if late else "was connected when"
    who = f"client {a.client} {timing} {a.task} finished at #{finish.index}"
    if late:
        judge.saw("late joiners")
        # The implementation's own notices (e.g. overflow) are not the task's state: skip them.
        meaningful = [d for d in deliveries if d.seq is not None or d.event_type in STATE_TYPES]
        if (
            meaningful and _final_state_due_first(history, a, finish)
            and not finish.is_terminal_delivery(meaningful[0])
        ):
            first = meaningful[0]
            judge.fail(
                f"{who} but its first event was {first.seq if first.seq is not None else first.event_type} "
                f"({first.event_type}), not the final state",
                a.joined_from, finish.index, first.index,
            )
    else:
        judge.saw("clients connected at the end")

    terminal = next((d for d in deliveries if delivers_end(history, finish, d)), None)
    if terminal is None:
        judge.missing(a, f"{who} but never received the terminal event", a.joined_from, finish.index)
        return
    for d in a.deliveries:
        if d.index > terminal.index:
            what = f"event {d.seq}" if d.seq is not None else "an event"
            judge.fail(
                f"client {a.client} received {what} ({d.event_type}) at #{d.index} after the terminal "
                f"event of {a.task} at #{terminal.index}",
                terminal.index, d.index,
            )
    if a.closed_at is None:
        judge.missing(
            a,
            f"client {a.client} received the terminal event of {a.task} at #{terminal.index} "
            "but its stream never ended",
            terminal.index,
        )


def _check_no_false_end(judge: Judge, history: History, task: str) -> None:
    """A task that never finished (no terminal event sent, no run of process() returned or raised)
    has no end to announce: a client told it ended stops listening to a task that may still run,
    or that never ran at all. Storage counts too: a row persisted as finished is an end."""
    found = history.persisted(task)
    if found is not None and found[1].status in ("completed", "failed"):
        return
    for a in history.attachments(task):
        end = next((d for d in a.task_deliveries() if d.event_type in STATE_TYPES), None)
        if end is not None and found is None:
            # The run was cut short before any snapshot: the row may well be stored as finished
            # (a run that called mark_completed() and died before returning), so this is no proof.
            judge.cannot_tell(
                f"client {a.client} received {end.event_type!r} for {task} at #{end.index} with no finish "
                f"recorded, and no snapshot reports {task}'s stored row: whether it had finished is unknown"
            )
        elif end is not None:
            judge.fail(
                f"client {a.client} received {end.event_type!r} for {task} at #{end.index}, but {task} "
                "never finished: no terminal event was sent, no run of process() returned or raised, "
                "and its row is not stored as finished",
                a.joined_from, end.index,
            )


def check(history: History) -> ClauseResult:
    judge = Judge(CLAUSE_ID, history)
    judge.note("'the coordinator forgets finished tasks' is judged by S8 from the resource counts")
    for task in history.tasks():
        finish = history.finish(task)
        if finish is None:
            _check_no_false_end(judge, history, task)
            continue
        judge.saw("finished tasks")
        for a in history.attachments(task):
            if a.left_at is not None:
                # It left (detached, dropped, or its process died): what was still on its way when
                # it left is not owed. Clients that stay are owed the end; S3 judges gaps.
                continue
            _check_client(judge, history, a, finish)
        if finish.outcome != "ok":
            continue  # a failed task's row and re-runs are S6's
        lost = finish_lost_in_crash(history, finish)
        if lost is not None:
            judge.note(f"{task}'s completion at #{finish.index} died with its process (crash #{lost}) "
                       "before any client saw it: an interrupted run, judged by S7")
            continue
        for run in history.runs(task):
            if run.start > finish.index:
                judge.fail(
                    f"{task} completed at #{finish.index} but ran process() again on {run.obj} "
                    f"({run.process}) at #{run.start}",
                    finish.index, run.start,
                )
        found = history.persisted(task, after=finish.index)
        if found is None:
            judge.note(f"no snapshot after #{finish.index} reports {task}'s persisted row")
            continue
        snap, row = found
        judge.saw("persisted rows")
        if row.status != "completed":
            judge.fail(
                f"{task} completed at #{finish.index} but {snap.process}'s snapshot #{snap.index} "
                f"reports its row as {row.status!r}",
                finish.index, snap.index,
            )
    return judge.result()
