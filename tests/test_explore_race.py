"""The engine finds the seed's lookup-versus-start race (S1) without being told the ordering.

The scenario only says "a client looks the task up while it is being started"; which of the two
runs first, and when the lookup's database load completes, is left to Hypothesis. Against an
implementation with the race it must find and shrink a violation; against the reference, none.
"""

from __future__ import annotations

import pytest

from harness.choice import TapeChoices
from harness.driver import run_scenario
from harness.runner import Run
from scenarios.explore import explore


async def lookup_while_starting(run: Run) -> None:
    created = await run.create()
    await run.concurrently(run.start(created), run.lookup(created.task))


@pytest.mark.clause("S1")
def test_lookup_racing_start(sut_adapter):
    found = explore(sut_adapter, lookup_while_starting, clauses={"S1"}, max_examples=200)
    if sut_adapter.name == "reference":
        assert found is None, found.outcome.explain()
        return
    assert found is not None, "200 examples did not find the lookup-versus-start race"
    assert "S1" in found.clauses
    assert "returned obj" in found.outcome.result("S1").violations[0].explanation
    # Shrunk toward FIFO: no more deviations than the first failure had, a handful in all, and the
    # tape replays the same history exactly.
    assert found.outcome.tape.deviations <= found.first.tape.deviations
    assert found.outcome.tape.deviations <= 4, found.outcome.tape
    replay = run_scenario(sut_adapter, lookup_while_starting, TapeChoices(found.outcome.tape))
    assert replay.history.to_json() == found.outcome.history.to_json()
