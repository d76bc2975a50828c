"""Let Hypothesis search the interleavings of one scenario for a clause violation.

Every scheduling decision of the controlled loop is a Hypothesis draw, so Hypothesis explores
orderings and, once one fails, shrinks it toward plain FIFO: the minimal failing run is returned
with its tape, which `TapeChoices` replays exactly.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from harness.adapters import Adapter
from harness.choice import HypothesisChoices
from harness.driver import Outcome, Scenario, run_scenario


class _Violated(AssertionError):
    """Raised inside the Hypothesis test to mark an example as failing."""


@dataclass
class Found:
    """The minimal failing run Hypothesis found, and how long the search took."""

    outcome: Outcome
    first: Outcome
    """The first failing run, before shrinking."""
    examples: int
    """Examples run up to and including the first one that failed."""
    clauses: list[str]
    """Clauses violated by the minimal run (within those searched for)."""


def explore(
    adapter: Adapter,
    scenario: Scenario,
    *,
    clauses: Collection[str] | None = None,
    max_examples: int = 200,
    seed: int | None = 0,
    shrink: bool = True,
    max_steps: int = 20_000,
) -> Found | None:
    """Search `scenario`'s interleavings for a failure of `clauses` (all clauses if None).

    Deterministic for a given `seed` (None lets Hypothesis pick one). Returns None when every
    example passed."""
    examples = 0
    first_failure: int | None = None
    last_failing: list[Outcome] = []

    def failing(outcome: Outcome) -> list[str]:
        return [r.clause for r in outcome.failed() if clauses is None or r.clause in clauses]

    phases = [Phase.generate, Phase.shrink] if shrink else [Phase.generate]

    @settings(max_examples=max_examples, deadline=None, database=None, phases=phases,
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False, print_blob=False)
    @given(st.data())
    def search(data: st.DataObject) -> None:
        nonlocal examples, first_failure
        examples += 1
        outcome = run_scenario(adapter, scenario, HypothesisChoices(data), max_steps=max_steps)
        violated = failing(outcome)
        if violated:
            if first_failure is None:
                first_failure = examples
            last_failing.append(outcome)
            raise _Violated(outcome.explain())

    if seed is not None:
        search = hypothesis_seed(seed)(search)
    try:
        search()
    except _Violated:
        # Hypothesis replays the minimal failing example last.
        minimal = last_failing[-1]
        return Found(minimal, last_failing[0], first_failure or examples, failing(minimal))
    return None
