"""The search finds the seed's lookup-versus-start race (S1) without being told the ordering.

The program only says "a client looks the task up while it is being started"; which of the two
runs first, and when the lookup's database load completes, is left to Hypothesis. Against an
implementation with the race it must find and shrink a violation; against the reference, none.
"""

from __future__ import annotations

import pytest

from harness.choice import TapeChoices
from scenarios import REGRESSIONS, run_program, search_program

RACE = REGRESSIONS["lookup_vs_start"].program


@pytest.mark.clause("S1")
def test_lookup_racing_start(sut_adapter):
    found = search_program(sut_adapter, RACE, clauses={"S1"}, max_examples=200)
    if sut_adapter.name == "reference":
        assert found is None, found.outcome.explain()
        return
    assert found is not None, "200 examples did not find the lookup-versus-start race"
    assert found.clause == "S1" and "S1" in found.clauses
    assert "returned obj" in found.outcome.result("S1").violations[0].explanation
    # Shrunk toward FIFO: a handful of deviations in all, and the tape replays the same history.
    assert found.outcome.tape.deviations <= 4, found.outcome.tape
    replay = run_program(sut_adapter, RACE, TapeChoices(found.outcome.tape))
    assert replay.history.to_json() == found.outcome.history.to_json()
