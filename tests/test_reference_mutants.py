"""Mutants of the reference caught on a fixed program (the matrix searches for them: `streamspec mutants`)."""

from __future__ import annotations

from scenarios import run_program
from tests.mutants import BY_NAME
from tests.test_scenarios import STALLED_UNDER_A_FLOOD


def test_the_unbounded_buffer_mutant_fails_s8_2_where_the_reference_passes(sut_adapter):
    assert run_program(sut_adapter, STALLED_UNDER_A_FLOOD).verdict("S8.2") == "pass"
    with BY_NAME["unbounded_buffers"].patched():
        outcome = run_program(sut_adapter, STALLED_UNDER_A_FLOOD)
    assert outcome.verdict("S8.2") == "fail"
    explanation = outcome.result("S8.2").violations[0].explanation
    limit = sut_adapter.buffer_limit()
    assert f"the bound is {limit} (the implementation's documented bound)" in explanation
