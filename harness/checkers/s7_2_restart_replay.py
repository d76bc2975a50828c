"""S7.2 Replay after restart (SHOULD): the latest event survives a crash and is replayed."""

from __future__ import annotations

from harness.checkers.base import ClauseResult, Judge, died_in_flight
from harness.checkers.s7_restart import unfinished_at
from harness.history import FINAL_STATE, TERMINAL_EVENT_TYPES, History

CLAUSE_ID = "S7.2"


def check(history: History) -> ClauseResult:
    judge = Judge(CLAUSE_ID, history)
    crashes = history.crashes()
    if not crashes:
        judge.note("no crash in this history: nothing to judge")
    for crash in crashes:
        for task in unfinished_at(history, crash):
            # A send still in progress when its process died may never have become durable.
            latest = history.latest_completed_send_before(task, crash.index)
            if latest is None or latest.process != crash.process:
                continue  # nothing was lost with the crashed process
            judge.saw("tasks whose latest event was sent by a crashed process")
            # A later send the crash cut short may have become durable all the same: it may be
            # the latest event too.
            cut_short = history.sends_between(task, latest.index, crash.index)
            latest_seqs = {latest.seq} | {s.seq for s in cut_short if died_in_flight(history, s)}
            lost = (
                f"event {latest.seq} was the last {task} sent before {crash.process} "
                f"{'shut down' if crash.fault == 'shutdown' else 'crashed'} at #{crash.index}"
            )
            # Until the task sends again or finishes (a finished task's row holds its terminal
            # event: S5/S6), its latest event is the one sent before the crash.
            resent = history.sends_between(task, crash.index)
            ended = [r.end for r in history.runs(task)
                     if r.finished and r.end is not None and r.end > crash.index]
            until = min([*(s.index for s in resent[:1]), *ended], default=None)

            snaps = [
                s for s in history.snapshots()
                if s.index > crash.index and (until is None or s.index < until) and task in s.persisted
            ]
            if not snaps:
                judge.note(
                    f"no snapshot between the crash at #{crash.index} and {task}'s next event reports its row"
                )
            for snap in snaps:
                judge.saw("snapshots after a crash")
                stored = snap.persisted[task].last_event_seq
                if stored not in latest_seqs:
                    judge.fail(
                        f"{snap.process}'s snapshot #{snap.index} reports {task}'s persisted last event as "
                        f"{stored}, but {lost}",
                        latest.index, crash.index, snap.index,
                    )

            for a in history.attachments(task):
                if a.joined_from < crash.index or (until is not None and a.joined_by > until):
                    continue  # joined before the crash, or the task sent again meanwhile (S3)
                judge.saw("joiners after a crash")
                firsts = [
                    d for d in a.task_deliveries()
                    if d.seq is not None or d.event_type in (*TERMINAL_EVENT_TYPES, FINAL_STATE)
                ]
                if not firsts:
                    if a.left_at is None:
                        judge.missing(
                            a,
                            f"client {a.client} joined {task} at #{a.joined_from} and received nothing; "
                            f"{lost}",
                            crash.index, a.joined_from,
                        )
                    continue
                first = firsts[0]
                if first.seq not in latest_seqs:
                    got = f"event {first.seq}" if first.seq is not None else f"synthesized {first.event_type}"
                    judge.fail(
                        f"client {a.client} joined {task} at #{a.joined_from} and first received {got}, "
                        f"but {lost}",
                        latest.index, crash.index, a.joined_from, first.index,
                    )
    return judge.result()
