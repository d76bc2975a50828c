"""W4: a malformed or hostile request gets a 4xx in time: never a 5xx, a 2xx or a hang."""

from __future__ import annotations

from harness.checkers.base import ClauseResult, Judge
from harness.checkers.wire import faulted_by, over_the_wire, requests_of
from harness.history import History

CLAUSE_ID = "W4"


def check(history: History) -> ClauseResult:
    judge = Judge(CLAUSE_ID, history)
    if not over_the_wire(judge, history):
        return judge.result()
    for invoke, head in requests_of(history, "request"):
        what = f"{invoke.args['method']} {invoke.args['path']}"
        if invoke.args.get("headers"):
            what += f" with {invoke.args['headers']}"
        if head is None:
            if faulted_by(history, invoke.process, history.last_index):
                continue
            judge.fail(f"the bad request {what} to {invoke.process} got no answer within the bound",
                       invoke.index)
            continue
        judge.saw("bad requests")
        if invoke.args.get("may_stream") and head.status < 500:
            continue  # a bad header on a valid request may be ignored: the stream as without it
        if not 400 <= head.status < 500:
            judge.fail(f"the bad request {what} to {invoke.process} was answered {head.status}, not 4xx",
                       invoke.index, head.index)
    return judge.result()
