"""S8 Hygiene: nothing is left in a coordinator once its tasks finished and its clients left."""

from __future__ import annotations

from harness.checkers.base import ClauseResult, Judge
from harness.history import History

CLAUSE_ID = "S8"


def check(history: History) -> ClauseResult:
    judge = Judge(CLAUSE_ID, history)
    for process in history.processes():
        if history.crash_index(process) is not None:
            judge.note(f"{process} crashed: its memory is gone, nothing to judge")
            continue
        snaps = history.snapshots(process)
        if not snaps:
            judge.cannot_tell(f"{process} never reported a snapshot")
            continue
        snap = snaps[-1]
        judge.saw("processes")
        # Resources may legitimately be held while something is still in flight there.
        busy = [
            f"{r.obj} was running {r.task}"
            for r in history.runs()
            if r.process == process and r.active_at(snap.index)
        ]
        busy += [
            f"client {a.client} was still attached"
            for a in history.attachments()
            if a.process == process and (a.closed_at is None or a.closed_at > snap.index)
        ]
        busy += [
            f"{o.op} {o.op_id} was in flight"
            for o in history.ops()
            if o.process == process and o.start < snap.index and (o.end is None or o.end > snap.index)
        ]
        if busy:
            judge.cannot_tell(f"{process}'s last snapshot #{snap.index} was taken while {'; '.join(busy)}")
            continue
        if not snap.resources:
            judge.cannot_tell(f"{process}'s last snapshot #{snap.index} reports no resource counts")
            continue
        judge.saw("resource counts", len(snap.resources))
        left = {name: n for name, n in sorted(snap.resources.items()) if n}
        if left:
            held = ", ".join(f"{n} {name}" for name, n in left.items())
            judge.fail(
                f"{process} still holds {held} at its last snapshot #{snap.index}, after every task there "
                "finished and every client left",
                snap.index,
            )
    return judge.result()
