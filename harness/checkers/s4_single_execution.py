"""S4 Single execution: process() never runs twice at once, nor again after it finished."""

from __future__ import annotations

from harness.checkers.base import ClauseResult, Judge, finish_lost_in_crash
from harness.history import Execution, History

CLAUSE_ID = "S4"


def _name(run: Execution) -> str:
    return f"{run.obj} ({run.process}, entered at #{run.start})"


def check(history: History) -> ClauseResult:
    judge = Judge(CLAUSE_ID, history)
    for task in history.tasks():
        runs = history.runs(task)  # ordered by entry
        if not runs:
            continue
        judge.saw("tasks run")
        judge.saw("runs", len(runs))
        for i, run in enumerate(runs):
            earlier = runs[:i]
            for other in earlier:
                if other.active_at(run.start):
                    judge.fail(
                        f"{_name(other)} and {_name(run)} ran process() of {task} at the same time",
                        other.start, run.start,
                    )
            # One report per late run, against the first finish it came after.
            done = next((o for o in earlier if o.finished and not o.active_at(run.start)), None)
            finish = history.finish(task)
            if (
                done is not None and finish is not None and done.end is not None
                and finish.index <= done.end and finish_lost_in_crash(history, finish) is not None
            ):
                done = None  # that finish died with its process unseen: resuming is allowed (S7)
            if done is not None:
                judge.fail(
                    f"{task} ran process() again on {_name(run)} after it had finished "
                    f"({done.outcome}) on {done.obj} at #{done.end}",
                    done.start, done.end, run.start,
                )
    return judge.result()
