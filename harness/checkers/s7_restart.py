"""S7 Restart: after a crash an unfinished task resumes at most once and joiners never hang."""

from __future__ import annotations

from harness.checkers.base import ClauseResult, Judge
from harness.history import Fault, History

CLAUSE_ID = "S7"


def unfinished_at(history: History, crash: Fault) -> list[str]:
    """Tasks the crashed process was running when it crashed, unfinished then: process() was
    running there, or the process had been asked to start the task and died before process() began
    anywhere (it may have claimed the row already, and left a lease to run out).

    A task that never started, or ran in a process that survived, is not the crash's business."""
    found = []
    for t in history.tasks():
        finish = history.finish(t)
        if finish is not None and finish.index < crash.index:
            continue
        runs = history.runs(t)
        ran_here = any(r.process == crash.process and r.start < crash.index
                       and (r.end is None or r.end >= crash.index) for r in runs)
        starts = history.ops("start", task=t)
        starting_here = not any(r.start < crash.index for r in runs) and any(
            o.invoke.process == crash.process and o.invoke.index < crash.index for o in starts
        )
        if ran_here or starting_here:
            found.append(t)
    return found


def _died(fault: Fault) -> str:
    return "shut down" if fault.fault == "shutdown" else "crashed"


def check(history: History) -> ClauseResult:
    judge = Judge(CLAUSE_ID, history)
    crashes = history.crashes()
    if not crashes:
        judge.note("no crash in this history: nothing to judge")
    for i, crash in enumerate(crashes):
        judge.saw("crashes")
        # Judge each crash up to the next one: a resumed run may itself crash and resume again.
        until = crashes[i + 1].index if i + 1 < len(crashes) else None
        for task in unfinished_at(history, crash):
            judge.saw("unfinished tasks at a crash")
            resumed = [
                r for r in history.runs(task) if crash.index < r.start and (until is None or r.start < until)
            ]
            if len(resumed) > 1:
                runs = ", ".join(f"{r.obj} ({r.process}, #{r.start})" for r in resumed)
                judge.fail(
                    f"{task} entered process() {len(resumed)} times after {crash.process} {_died(crash)} at "
                    f"#{crash.index}: {runs}",
                    crash.index, *(r.start for r in resumed),
                )
            finished = history.finish(task) is not None
            running = any(r.end is None for r in history.runs(task))
            for a in history.attachments(task):
                if a.joined_from < crash.index or (until is not None and a.joined_from > until):
                    continue
                judge.saw("joiners after a crash")
                if a.closed_at is not None or finished or running:
                    continue  # its stream is over, or S5 judges how it ends, or the task still runs
                judge.missing(
                    a,
                    f"client {a.client} joined {task} at #{a.joined_from} after {crash.process} "
                    f"{_died(crash)} at #{crash.index}; {task} is neither finished nor running and the "
                    "client's stream never ended",
                    crash.index, a.joined_from,
                )
    return judge.result()
