"""Explicit regression programs: the seed's own flow and the lookup-versus-start race.

State machines take no ``@example``; these programs play that part. Each is run with its
interleavings searched (:func:`search_program`): the program fixes the operations, never an
ordering. ``upstream`` lists the clauses django-streaming-coordinator 0.2.1 is known to fail on it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from harness.adapters import Adapter
from harness.choice import HypothesisChoices
from harness.driver import Outcome
from scenarios.program import run_program

__all__ = ["REGRESSIONS", "Regression", "search_program"]


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


@dataclass
class ProgramFailure:
    outcome: Outcome
    clauses: list[str]
    examples: int


def search_program(adapter: Adapter, program: list[dict[str, Any]], *,
                   clauses: Collection[str] | None = None, max_examples: int = 100, seed: int = 0,
                   max_steps: int = 10_000) -> ProgramFailure | None:
    """Search the interleavings of one fixed program for a failure of `clauses` (all if None);
    the minimal failing run, or None if every example passed. Deterministic for a seed."""
    examples = 0
    failing_runs: list[Outcome] = []

    def failing(outcome: Outcome) -> list[str]:
        return [r.clause for r in outcome.failed() if clauses is None or r.clause in clauses]

    @settings(max_examples=max_examples, deadline=None, database=None, phases=[Phase.generate, Phase.shrink],
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False, print_blob=False,
              verbosity=Verbosity.quiet)
    @given(st.data())
    def search(data: Any) -> None:
        nonlocal examples
        examples += 1
        outcome = run_program(adapter, program, HypothesisChoices(data), max_steps=max_steps)
        if failing(outcome):
            failing_runs.append(outcome)
            raise AssertionError(outcome.explain())

    try:
        hypothesis_seed(seed)(search)()
    except AssertionError:
        minimal = failing_runs[-1]
        return ProgramFailure(minimal, failing(minimal), examples)
    return None
