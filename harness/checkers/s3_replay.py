"""S3 Latest-event replay: a joiner first gets the latest event, then every later one in order."""

from __future__ import annotations

from itertools import pairwise

from harness.checkers.base import ClauseResult, Judge, died_in_flight, seqs
from harness.history import Attachment, Deliver, History

CLAUSE_ID = "S3"


def _allowed_first(history: History, a: Attachment) -> tuple[set[int], int | None, bool]:
    """Event numbers the client may legitimately receive first, the latest event sent before the
    attach was invoked (if any), and whether replaying that one is required here."""
    latest = history.latest_completed_send_before(a.task, a.joined_from)
    # The attach takes effect at some point inside [invoke, complete]; whatever was latest at that
    # point may come first: the latest send completed before the invoke, or any send in progress
    # at some moment of the window (begun before the attach completed, not done before it began).
    allowed = {
        s.seq for s in history.sends(a.task)
        if s.index < a.joined_by and history.sent_by(s) > a.joined_from
    }
    required = latest is not None
    if latest is not None:
        allowed.add(latest.seq)
        crash = history.crash_index(latest.process)
        # An event whose sender crashed before the join lives on only if persisted: S7.2, not here.
        required = not (crash is not None and latest.index < crash < a.joined_from)
    after = a.op.invoke.args.get("after_seq") if a.op.invoke.args.get("headers") else None
    if after is not None:
        # A client resuming with Last-Event-ID after event `after` (the HTTP mode's reconnect): the
        # next event it has not seen may come first instead of the latest; it is owed no replay of
        # one it has (W5 judges duplicates and gaps).
        allowed.add(after + 1)
        if latest is not None and latest.seq <= after:
            required = False
    if not required:
        # The first send after the join may come first; so may a later one when every send before
        # it died with its process (it may never have become durable).
        for send in history.sends_between(a.task, a.joined_from):
            allowed.add(send.seq)
            if not died_in_flight(history, send):
                break
    return allowed, latest.seq if latest else None, required


def _check_first(judge: Judge, history: History, a: Attachment, numbered: list[Deliver]) -> None:
    allowed, latest, required = _allowed_first(history, a)
    who = f"client {a.client} (attach {a.op.op_id}, #{a.joined_from}..#{a.joined_by})"
    joined = f"joined {a.task} " + (f"after event {latest}" if latest is not None else "before any event")
    finish = history.finish(a.task)
    stand_in = next(
        (
            d for d in a.task_deliveries()
            if d.seq is None and finish is not None and finish.index < a.joined_by
            and finish.is_terminal_delivery(d)
        ),
        None,
    )
    first = numbered[0] if numbered else None
    if stand_in is not None and (first is None or stand_in.index < first.index):
        return  # a synthesized final state replays a finished task's last event
    latest_send = history.send(a.task, latest) if latest is not None else None
    if first is None:
        if required and a.left_at is None:
            judge.missing(
                a,
                f"{who} {joined} but never received it (it received no event of {a.task})",
                a.joined_from, a.joined_by, latest_send.index if latest_send else None,
            )
        return
    if first.seq in allowed:
        return
    expected = f"event {seqs(allowed)}" if len(allowed) == 1 else f"one of events {seqs(allowed)}"
    judge.fail(
        f"{who} {joined} but its first event was {first.seq}; expected {expected}",
        a.joined_from, a.joined_by, latest_send.index if latest_send else None, first.index,
    )


def _check_sequence(judge: Judge, history: History, a: Attachment, numbered: list[Deliver]) -> None:
    for prev, cur in pairwise(numbered):
        assert prev.seq is not None and cur.seq is not None
        if cur.seq == prev.seq:
            judge.fail(f"client {a.client} received event {cur.seq} of {a.task} twice", prev.index, cur.index)
        elif cur.seq < prev.seq:
            judge.fail(
                f"client {a.client} received event {cur.seq} of {a.task} after event {prev.seq} "
                "(out of order)",
                prev.index, cur.index,
            )
        elif cur.seq > prev.seq + 1:
            # A send cut short by its process's crash may never have become durable: a resumed run
            # numbers on past it, and no implementation could fill that hole.
            missed = [
                seq for seq in range(prev.seq + 1, cur.seq)
                if (send := history.send(a.task, seq)) is None or not died_in_flight(history, send)
            ]
            if not missed:
                continue
            judge.fail(
                f"client {a.client} received event {cur.seq} of {a.task} right after event {prev.seq}, "
                f"missing event{'s' if len(missed) > 1 else ''} {seqs(missed)}",
                prev.index, cur.index,
            )


def check(history: History) -> ClauseResult:
    judge = Judge(CLAUSE_ID, history)
    for a in history.attachments():
        judge.saw("clients")
        numbered: list[Deliver] = []
        for d in a.task_deliveries():
            if d.seq is None:
                continue
            judge.saw("deliveries")
            if history.send(a.task, d.seq) is None:
                judge.fail(
                    f"client {a.client} received event {d.seq} of {a.task}, which was never sent", d.index
                )
            else:
                numbered.append(d)
        _check_first(judge, history, a, numbered)
        _check_sequence(judge, history, a, numbered)
    return judge.result()
