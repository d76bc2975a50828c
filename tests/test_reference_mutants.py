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


def test_fail_fast_stops_the_search_at_its_first_failure(sut_adapter):
    """`--fail-fast`: the round that found (and shrank) a failure is the last one; without it the
    same seed goes on into the next family."""
    from scenarios import verify

    families = ["reloads", "joins"]
    with BY_NAME["state_on_the_object"].patched():
        whole = verify(sut_adapter, families=families, profile="dev", seed=1)
        fast = verify(sut_adapter, families=families, profile="dev", seed=1, fail_fast=True)
    assert whole.failed and fast.failed
    assert fast.stats["fail_fast"] is True and whole.stats["fail_fast"] is False
    # The first round's failure is the same in both: the fail-fast run is a prefix of the whole one.
    assert fast.examples.get("joins", 0) == 0 < whole.examples.get("joins", 0)
    assert set(fast.failed) <= set(whole.failed)
    assert sum(fast.examples.values()) < sum(whole.examples.values())


def test_the_matrix_in_its_ci_size_kills_a_mutant_on_its_first_find(tmp_path):
    """`streamspec mutants --first-find`: the mutant's verify targets its clause and stops there."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "streamspec", "mutants", "--only", "loads_never_removed", "--first-find",
         "--profile", "dev", "--guard-seeds", "0", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    matrix = json.loads((tmp_path / "mutants.json").read_text())
    assert matrix["first_find"] is True
    [row] = matrix["mutants"]
    assert row["detected"] and row["expected"] == "S8" and row["examples_to_first"] is not None
    assert "CI size (`--first-find`)" in (tmp_path / "mutants.md").read_text()
