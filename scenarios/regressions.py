"""Explicit regression programs: the seed's own flow and the lookup-versus-start race.

State machines take no ``@example``; these programs play that part. Each is run with its
interleavings searched (`scenarios.search.search_program`, the same search loop as the
families'): the program fixes the operations, never an ordering. ``upstream`` lists the clauses
django-streaming-coordinator 0.2.1 is known to fail on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["REGRESSIONS", "Regression"]


@dataclass(frozen=True)
class Regression:
    name: str
    description: str
    program: list[dict[str, Any]]
    upstream: frozenset[str]
    """Clauses upstream 0.2.1 fails on this program (some interleaving of it)."""


REGRESSIONS: dict[str, Regression] = {
    r.name: r
    for r in (
        Regression(
            "seed_lookup",
            "issue #1's reproduction: a client attaches, the task starts and sends, a second client "
            "attaches through the coordinator's lookup, the task sends again and completes",
            [
                {"op": "create", "process": 0},
                {"op": "attach", "obj": 0, "process": 0},
                {"op": "start", "obj": 0, "process": 0},
                {"op": "release", "task": 0},
                {"op": "lookup", "task": 0, "process": 0},
                {"op": "attach", "obj": 1, "process": 0},
                {"op": "release", "task": 0},
                {"op": "finish_ok", "task": 0},
            ],
            frozenset(),
        ),
        Regression(
            "seed_reload",
            "issue #1's diagnosis: the second client attaches through a fresh instance loaded from the "
            "database while the task runs",
            [
                {"op": "create", "process": 0},
                {"op": "attach", "obj": 0, "process": 0},
                {"op": "start", "obj": 0, "process": 0},
                {"op": "release", "task": 0},
                {"op": "reload", "task": 0, "process": 0},
                {"op": "attach", "obj": 1, "process": 0},
                {"op": "release", "task": 0},
                {"op": "finish_ok", "task": 0},
            ],
            frozenset({"S2", "S3", "S5"}),
        ),
        Regression(
            "lookup_vs_start",
            "a lookup launched together with the task's start (issue #7): which runs first, and when "
            "the lookup's database load completes, is the scheduler's choice",
            [
                {"op": "create", "process": 0},
                {"op": "concurrently", "steps": [
                    {"op": "start", "obj": 0, "process": 0},
                    {"op": "lookup", "task": 0, "process": 0},
                ]},
            ],
            frozenset({"S1"}),
        ),
    )
}
