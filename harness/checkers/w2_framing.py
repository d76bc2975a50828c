"""W2: the body is an event stream a standard SSE parser reads."""

from __future__ import annotations

from harness.checkers.base import ClauseResult, Judge
from harness.checkers.wire import faulted_by, over_the_wire, requests_of, wire_errors
from harness.history import History

CLAUSE_ID = "W2"


def check(history: History) -> ClauseResult:
    judge = Judge(CLAUSE_ID, history)
    if not over_the_wire(judge, history):
        return judge.result()
    judge.saw("streams", len(requests_of(history, "attach")))
    for error in wire_errors(history):
        if error.what != "framing":
            continue  # W3's
        if faulted_by(history, error.process, error.index):
            continue  # a killed server cuts its streams anywhere
        judge.fail(f"client {error.client} could not read its stream: {error.problem}", error.index)
    return judge.result()
