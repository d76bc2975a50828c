"""W6: a server told to stop (SIGTERM) exits within the bound, and a server lets go of the
connections of clients that left."""

from __future__ import annotations

from harness.checkers.base import ClauseResult, Judge
from harness.checkers.wire import over_the_wire
from harness.history import Connections, History
from harness.spec import LEAVE_BOUND, SHUTDOWN_BOUND

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
    counts = [r for r in history.records if isinstance(r, Connections)]
    if not counts:
        judge.cannot_tell("no connection counts (the run ended early, or the kernel's TCP tables "
                          "could not be read): connections after clients left are not judged")
    for count in counts:
        judge.saw("servers counted after every client left")
        if count.held:
            judge.fail(f"{count.process} still held {count.held} connection(s) {LEAVE_BOUND:g} s after "
                       "every client had left", count.index)
    return judge.result()
