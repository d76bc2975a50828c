"""S8.2 Bounded client buffers (SHOULD): a client that stops reading cannot grow memory unboundedly."""

from __future__ import annotations

from harness.checkers.base import ClauseResult, Judge
from harness.history import History
from harness.spec import MAX_CLIENT_BUFFER

CLAUSE_ID = "S8.2"


def check(history: History) -> ClauseResult:
    judge = Judge(CLAUSE_ID, history)
    attaches = {a.client: a for a in history.attachments()}
    reported = [s for s in history.snapshots() if s.buffers is not None]
    if not reported:
        if attaches:
            judge.cannot_tell("no snapshot reports per-client buffer sizes")
        else:
            judge.note("no clients in this history: nothing to judge")
    for snap in reported:
        assert snap.buffers is not None
        judge.saw("snapshots with buffer sizes")
        # The implementation's documented bound, if it has one, and never more than the spec's.
        bound = min(MAX_CLIENT_BUFFER, snap.buffer_limit or MAX_CLIENT_BUFFER)
        documented = " (the implementation's documented bound)" if bound < MAX_CLIENT_BUFFER else ""
        for client, size in sorted(snap.buffers.items()):
            judge.saw("buffer sizes")
            if size > bound:
                a = attaches.get(client)
                judge.fail(
                    f"client {client} had {size} undelivered events buffered in {snap.process} at snapshot "
                    f"#{snap.index}; the bound is {bound}{documented}",
                    a.joined_from if a else None, snap.index,
                )
    overflowed = [a for a in attaches.values() if a.stream_end and a.stream_end.reason == "overflow"]
    if overflowed:
        judge.note(f"clients dropped with an overflow notice: {', '.join(a.client for a in overflowed)}")
    return judge.result()
