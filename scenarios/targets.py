"""Scores that steer the search (Hypothesis `target()`) toward states rarely reached at random.

Hypothesis keeps the examples that score highest under a label and mutates them, so a state that
takes several specific steps in a row is approached step by step instead of hit by chance. A score
only steers generation: every example is still judged on every clause, and shrinking ignores it.
"""

from __future__ import annotations

from collections.abc import Callable

from harness.checkers.s7_restart import unfinished_at
from harness.history import History

__all__ = ["SCORES", "TAKEOVER", "takeover_progress"]

TAKEOVER = "takeover progress"


def takeover_progress(history: History) -> float:
    """How far the history got toward a client joining a task that is taken over because it joined:
    1 a process died running an unfinished task; 2 the task had sent an event, durably, before
    that; 3 a client joined it afterwards in a process that had no client of it before; 4 the task
    then resumed in that client's process before the client had received anything (its lookup
    took the task over, rather than following it: the state where S7.2's replay is judged); 5
    clients joined so in two processes (both may take the task over: S7's "at most once"); 6 time
    passed after that (a relaying process polls the row, and takes it over too if its lease still
    looks abandoned)."""
    best = 0
    for crash in history.crashes():
        for task in unfinished_at(history, crash):
            score = 1 + (history.latest_completed_send_before(task, crash.index) is not None)
            clients = history.attachments(task)
            # Joins in a process that had no client of the task before: one that took no part in
            # it yet (a process already relaying the task knows its latest event).
            joins = [a for a in clients
                     if a.joined_from > crash.index and a.process != crash.process
                     and not any(b.process == a.process and b.joined_from < a.joined_from for b in clients)]
            if joins:
                score += 1
                if any(r.process == a.process and r.start > a.joined_from
                       and not any(d.index < r.start for d in a.task_deliveries())
                       for a in joins for r in history.runs(task)):
                    score += 1
                    processes = {a.process: a.joined_from for a in joins}
                    if len(processes) > 1:
                        score += 1
                        # Time passing once both joined: a process that follows the task polls
                        # its row and may take it over too, while the lease looks abandoned.
                        both = sorted(processes.values())[1]
                        score += any(w.invoke.index > both for w in history.ops("wait"))
            best = max(best, score)
    return float(best)


SCORES: dict[str, Callable[[History], float]] = {TAKEOVER: takeover_progress}
"""The scores a family may steer by (`Family.targets`), by Hypothesis target label."""
