"""W6: a server told to stop (SIGTERM) exits within the bound."""

from __future__ import annotations

from harness.checkers.base import ClauseResult, Judge
from harness.checkers.wire import over_the_wire
from harness.history import History
from harness.spec import SHUTDOWN_BOUND

CLAUSE_ID = "W6"


def check(history: History) -> ClauseResult:
    judge = Judge(CLAUSE_ID, history)
    if not over_the_wire(judge, history):
        return judge.result()
    for op in history.ops():
        if op.op != "shutdown" or op.complete is None:
            continue
        judge.saw("shutdowns")
        took = (op.complete.value or {}).get("seconds")
        if took is None:
            judge.fail(f"{op.invoke.args['process']} was still running {SHUTDOWN_BOUND:g} s after SIGTERM "
                       "and had to be killed", op.start, op.end)
    return judge.result()
