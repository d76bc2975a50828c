"""W3: after a terminal event or a final state, the server closes the stream in time, and sends
nothing more on it."""

from __future__ import annotations

from harness.checkers.base import ClauseResult, Judge
from harness.checkers.wire import faulted_by, over_the_wire, wire_errors
from harness.history import FINAL_STATE, TERMINAL_EVENT_TYPES, History

CLAUSE_ID = "W3"
ENDING = TERMINAL_EVENT_TYPES | {FINAL_STATE}


def check(history: History) -> ClauseResult:
    judge = Judge(CLAUSE_ID, history)
    if not over_the_wire(judge, history):
        return judge.result()
    ended = {a.client: d for a in history.attachments() for d in a.deliveries if d.event_type in ENDING}
    judge.saw("ended streams", len(ended))
    for error in wire_errors(history):
        if error.what == "framing" or faulted_by(history, error.process, error.index):
            continue
        end = ended.get(error.client)
        judge.fail(f"client {error.client}: {error.problem}", end.index if end else None, error.index)
    return judge.result()
