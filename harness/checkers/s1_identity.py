"""S1 Identity: a lookup while the task runs returns the object executing process()."""

from __future__ import annotations

from harness.checkers.base import ClauseResult, Judge
from harness.history import History

CLAUSE_ID = "S1"


def check(history: History) -> ClauseResult:
    judge = Judge(CLAUSE_ID, history)
    for lookup in history.ops("lookup"):
        judge.saw("lookups")
        if lookup.complete is None or lookup.status == "unknown" or lookup.task is None:
            judge.saw("lookups skipped (no known outcome)")
            continue
        assert lookup.end is not None
        # Constrained only if a run is still going when the lookup returns: one that ended during
        # the lookup lets it legitimately return a fresh object. A run that *started* during the
        # lookup does constrain it: the lookup must not load its own copy over the running one.
        running = history.runs_during(lookup.task, lookup.start, lookup.end, process=lookup.process)
        if not any(r.active_at(lookup.end) for r in running):
            continue
        judge.saw("lookups during a run")
        objs = sorted({r.obj for r in running})
        if lookup.value in objs:
            continue
        runner = " or ".join(objs)
        evidence = [lookup.start, lookup.end, *(r.start for r in running)]
        if lookup.status == "fail":
            got = f"failed ({lookup.complete.error or 'no error text'})"
        elif lookup.value is None:
            got = "returned nothing"
        else:
            got = f"returned {lookup.value}"
        judge.fail(
            f"lookup {lookup.op_id} of {lookup.task} in {lookup.process} {got} while {runner} "
            f"was running process() of {lookup.task}",
            *evidence,
        )
    return judge.result()
