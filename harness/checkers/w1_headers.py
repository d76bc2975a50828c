"""W1: a stream request gets its head in time: 200, text/event-stream, not cacheable (or, from a
server at its limit, 503 with Retry-After)."""

from __future__ import annotations

from harness.checkers.base import ClauseResult, Judge
from harness.checkers.wire import faulted_by, over_the_wire, requests_of
from harness.history import History
from harness.spec import HEAD_BOUND

CLAUSE_ID = "W1"


def check(history: History) -> ClauseResult:
    judge = Judge(CLAUSE_ID, history)
    if not over_the_wire(judge, history):
        return judge.result()
    for invoke, head in requests_of(history, "attach"):
        client = invoke.args["client"]
        if head is None:
            if faulted_by(history, invoke.process, history.last_index):
                continue
            judge.fail(f"client {client}'s stream request to {invoke.process} got no response head at all",
                       invoke.index)
            continue
        if faulted_by(history, invoke.process, head.index):
            continue
        judge.saw("stream requests")
        kind = head.headers.get("content-type", "").partition(";")[0].strip()
        caching = head.headers.get("cache-control", "").lower()
        if head.status == 503 and "retry-after" in head.headers and head.after <= HEAD_BOUND:
            judge.saw("refusals under load")
            continue  # a server at its limit may turn a client away, telling it when to come back
        problems = []
        if head.status != 200:
            problems.append(f"status {head.status}")
        if kind != "text/event-stream":
            problems.append(f"Content-Type {kind or 'missing'!r}, not 'text/event-stream'")
        if "no-cache" not in caching and "no-store" not in caching:
            problems.append(f"Cache-Control {caching or 'missing'!r} (neither no-cache nor no-store)")
        if head.after > HEAD_BOUND:
            problems.append(f"the head came {head.after:.1f} s after the request (bound {HEAD_BOUND:g} s)")
        if problems:
            judge.fail(f"client {client}'s stream request for {invoke.task} on {invoke.process}: "
                       + "; ".join(problems), invoke.index, head.index)
    return judge.result()
