"""W5: a client that reconnects with Last-Event-ID gets no event again and misses none."""

from __future__ import annotations

from harness.checkers.base import ClauseResult, Judge, seqs
from harness.checkers.wire import over_the_wire
from harness.history import History

CLAUSE_ID = "W5"


def check(history: History) -> ClauseResult:
    judge = Judge(CLAUSE_ID, history)
    if not over_the_wire(judge, history):
        return judge.result()
    for a in history.attachments():
        args = a.op.invoke.args
        if "resumes" not in args:
            continue
        after = args.get("after_seq")
        if after is None:
            continue  # the dropped client had read no event: nothing to resume from
        judge.saw("resumed streams")
        if "Last-Event-ID" not in (args.get("headers") or {}):
            judge.fail(f"client {args['resumes']} read events up to {after} of {a.task} but none carried an "
                       f"id, so {a.client} could not resume after it (no Last-Event-ID to send)",
                       a.joined_from)
            continue
        numbered = [d for d in a.task_deliveries() if d.seq is not None]
        again = [d for d in numbered if d.seq <= after]
        if again:
            judge.fail(f"client {a.client} resumed {a.task} after event {after} and received "
                       f"event {seqs({d.seq for d in again})} again", a.joined_from, again[0].index)
        later = [d for d in numbered if d.seq > after]
        following = history.send(a.task, after + 1)
        if following is None:
            continue  # nothing after it was ever sent: nothing to miss
        if later and later[0].seq != after + 1:
            judge.fail(f"client {a.client} resumed {a.task} after event {after}, but its next event was "
                       f"{later[0].seq}: {seqs(range(after + 1, later[0].seq))} lost", a.joined_from,
                       later[0].index)
        elif not later and a.left_at is None:
            judge.missing(a, f"client {a.client} resumed {a.task} after event {after} but never received "
                             f"event {after + 1}", a.joined_from, following.index)
    return judge.result()
