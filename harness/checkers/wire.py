"""What the wire checkers share: the HTTP mode's records, and whether a fault excuses what a client
saw (a server the harness killed or stopped cannot be blamed for a broken answer)."""

from __future__ import annotations

from harness.checkers.base import Judge
from harness.history import History, Invoke, Response, WireError


def requests_of(history: History, op: str) -> list[tuple[Invoke, Response | None]]:
    """Every request of operation `op` ("attach": a client's stream request; "request": a malformed
    or hostile one), with the response head it got, if any."""
    heads = {r.client: r for r in history.records if isinstance(r, Response)}
    return [(r, heads.get(r.args["client"])) for r in history.records
            if isinstance(r, Invoke) and r.op == op]


def wire_errors(history: History) -> list[WireError]:
    return [r for r in history.records if isinstance(r, WireError)]


def faulted_by(history: History, process: str, index: int) -> bool:
    """Whether `process` was killed or stopped at or before record `index`."""
    crash = history.crash_index(process)
    return crash is not None and crash <= index


def is_wire(history: History) -> bool:
    """A history recorded over the wire: it has response heads."""
    return any(isinstance(r, Response) for r in history.records)


def over_the_wire(judge: Judge, history: History) -> bool:
    """Whether `history` was recorded over the wire; if not, the judge says it cannot tell (a wire
    clause is UNKNOWN on an in-process history, never PASS)."""
    if is_wire(history):
        return True
    judge.cannot_tell(f"no response heads: {judge.clause.id} is judged over the wire only (--mode http)")
    return False
