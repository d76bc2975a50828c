"""Mutants of the reference caught on a fixed program (the matrix searches for them: `streamspec mutants`)."""

from __future__ import annotations

from scenarios import run_program
from tests.mutants import BY_NAME, run_baseline
from tests.test_scenarios import STALLED_UNDER_A_FLOOD


def test_the_unbounded_buffer_mutant_fails_s8_2_where_the_reference_passes(sut_adapter):
    assert run_program(sut_adapter, STALLED_UNDER_A_FLOOD).verdict("S8.2") == "pass"
    with BY_NAME["unbounded_buffers"].patched():
        outcome = run_program(sut_adapter, STALLED_UNDER_A_FLOOD)
    assert outcome.verdict("S8.2") == "fail"
    explanation = outcome.result("S8.2").violations[0].explanation
    limit = sut_adapter.buffer_limit()
    assert f"the bound is {limit} (the implementation's documented bound)" in explanation


def test_the_example_baseline_passes_the_reference_and_catches_the_seeds_bug():
    # Run under the harness adapter's settings (a 2-event client buffer): the baseline must still
    # judge the reference as configured by default, or it "kills" every mutant for nothing.
    clean = run_baseline(None)
    assert clean and not any(clean.values()), clean
    seeds_bug = run_baseline("state_on_the_object")
    assert seeds_bug["instance_consistency"] == "the second lookup returned another object"


# p1 and p2 (the restart of p0) follow a task that p0 ran when it crashed: once p0's lease runs out
# (while the run settles) one of them takes the task over.
TWO_FOLLOWERS_OF_A_CRASHED_TASK = [
    {"op": "spawn"},
    {"op": "create", "process": 0},
    {"op": "start", "obj": 0, "process": 0},
    {"op": "release", "task": 0},
    {"op": "lookup", "task": 0, "process": 1},
    {"op": "attach", "obj": 1, "process": 1},
    {"op": "restart", "process": 0},
    {"op": "lookup", "task": 0, "process": 2},
    {"op": "attach", "obj": 2, "process": 2},
]


def test_the_dead_lease_mutant_fails_s7_where_the_reference_passes(sut_adapter):
    assert run_program(sut_adapter, TWO_FOLLOWERS_OF_A_CRASHED_TASK).verdict("S7") == "pass"
    with BY_NAME["takeover_keeps_the_dead_lease"].patched():
        outcome = run_program(sut_adapter, TWO_FOLLOWERS_OF_A_CRASHED_TASK)
    assert outcome.verdict("S7") == "fail"
    assert "entered process() 2 times after p0 crashed" in outcome.result("S7").violations[0].explanation
