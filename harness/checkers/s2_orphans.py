"""S2 No orphan clients: a client attached through any instance receives the task's events."""

from __future__ import annotations

from harness.checkers.base import ClauseResult, Judge, delivers_end, describe_via, died_in_flight, seqs
from harness.history import History

CLAUSE_ID = "S2"


def check(history: History) -> ClauseResult:
    judge = Judge(CLAUSE_ID, history)
    for a in history.attachments():
        judge.saw("clients")
        who = f"client {a.client} (attached to {a.task} at #{a.joined_by}{describe_via(history, a)})"

        for d in a.deliveries:
            if d.task != a.task:
                judge.fail(f"{who} received event {d.seq} of another task, {d.task}", a.joined_by, d.index)

        if a.stream_end is not None and a.stream_end.reason == "overflow":
            # Dropped with an overflow notice: what it had not read was discarded openly, not lost.
            judge.saw("clients dropped for overflow")
            continue
        gone = a.stream_end is not None and a.stream_end.reason in ("crashed", "shutdown", "detached")
        if a.left_at is not None and gone:
            # It went away (its server process died or shut down, or it disconnected): events still on their
            # way then are not owed. A client that stays is owed everything; S3 judges gaps in what
            # a leaving client did receive, and a reconnecting client is a new client.
            judge.saw("clients that left")
            continue
        received = {d.seq for d in a.task_deliveries() if d.seq is not None}
        # Owed: what was sent after the attach completed and before the client left.
        # A send its process died in the middle of is not owed: it may never have become durable.
        owed = [s for s in history.sends_between(a.task, a.joined_by, a.left_at)
                if not died_in_flight(history, s)]
        judge.saw("events owed", len(owed))
        lost = [s for s in owed if s.seq not in received]
        if lost:
            closed = ""
            if a.stream_end is not None and a.stream_end.reason == "closed":
                closed = f"; its stream was closed at #{a.stream_end.index} without a terminal event"
            judge.missing(
                a,
                f"{who} never received event{'s' if len(lost) > 1 else ''} "
                f"{seqs(s.seq for s in lost)} sent after it joined{closed}",
                a.joined_by,
                *(s.index for s in lost),
                a.stream_end.index if closed and a.stream_end else None,
                seq=lost[0].seq,
            )

        finish = history.finish(a.task)
        if finish is None or (a.left_at is not None and a.left_at < finish.index):
            continue
        if finish.seq is not None and any(s.seq == finish.seq for s in owed):
            continue  # the terminal event was owed like any other and was judged above
        judge.saw("terminal events owed")
        if not any(delivers_end(history, finish, d) for d in a.task_deliveries()):
            judge.missing(
                a,
                f"{who} never received the terminal event of {a.task} "
                f"({finish.event_type} at #{finish.index})",
                a.joined_by,
                finish.index,
            )
    return judge.result()
