"""The harness itself: in-process scenarios per second, and (opt-in) time to detect each mutant.

Scenarios/s: `harness_scenarios` runs per round of a small scenario (a lookup racing a start, as in
tests/test_explore_race.py) on the controlled loop, each with a different random interleaving,
history recorded and every clause checked - what one exploration example costs.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import Callable
from typing import Any

import pytest

from benchmarks.config import sizes
from benchmarks.figures import HIGHER, LOWER, WALL, Timed, record
from harness import scheduler
from harness.choice import RandomChoices
from harness.driver import run_scenario
from harness.runner import Run

SIZES = sizes()


async def lookup_while_starting(run: Run) -> None:
    created = await run.create()
    await run.concurrently(run.start(created), run.lookup(created.task))


def test_harness_scenarios_per_second(benchmark, sut_adapter, sut_label):
    benchmark.group = "harness"
    count = SIZES.harness_scenarios
    seeds = iter(range(10**9))

    def scenarios() -> None:
        for _ in range(count):
            run_scenario(sut_adapter, lookup_while_starting, RandomChoices(next(seeds)))

    timed = Timed(scenarios)
    benchmark.pedantic(timed, rounds=SIZES.rounds, warmup_rounds=1, iterations=1)
    record(benchmark, "harness/scenarios", sut_label, count / timed.best, "scenarios/s", HIGHER,
           clock=timed.clock, scenarios=count)


def test_scheduler_tiny_runs_per_second(benchmark, sut_label):
    """What the controlled loop costs by itself: a run whose coroutine only yields once (was a
    wall-clock assertion in tests/test_scheduler.py; timings belong here)."""
    benchmark.group = "harness"

    async def tiny() -> int:
        await asyncio.sleep(0)
        return 1

    count = SIZES.harness_scenarios * 10
    seeds = iter(range(10**9))

    def runs() -> None:
        for _ in range(count):
            scheduler.run(tiny, RandomChoices(next(seeds)))

    timed = Timed(runs)
    benchmark.pedantic(timed, rounds=SIZES.rounds, warmup_rounds=1, iterations=1)
    record(benchmark, "harness/tiny-runs", sut_label, count / timed.best, "runs/s", HIGHER,
           clock=timed.clock, runs=count)


# -- time to detect each mutant (opt-in: BENCH_MUTANTS=1, or run.py --mutants) ---------------------

MUTANT_CATALOGUE = os.environ.get("BENCH_MUTANT_CATALOGUE", "tests.mutants")


def mutant_detection_cases() -> list[tuple[str, Callable[[], Any]]]:
    """(name, detect) for every mutant of the catalogue; `detect()` verifies the reference with that
    mutant planted and returns the mutant matrix's row (`detected`, `seconds_to_first`, ...).

    HOOK: uses the mutant matrix of `streamspec.mutation` (one `verify` process per mutant, so minutes
    per catalogue: opt-in with BENCH_MUTANTS=1 and BENCH_MUTANT_PROFILE, default ``ci``). Returns
    no case when it is off or the catalogue/matrix cannot be imported; adapt here if the matrix's
    interface changes."""
    if os.environ.get("BENCH_MUTANTS", "") in ("", "0"):
        return []
    try:
        from streamspec.mutation import run_matrix

        catalogue = importlib.import_module(MUTANT_CATALOGUE)
    except ImportError:
        return []
    profile = os.environ.get("BENCH_MUTANT_PROFILE", "ci")

    def case(name: str) -> Callable[[], Any]:
        def detect() -> Any:
            rows = run_matrix(MUTANT_CATALOGUE, profile=profile, names=[name])
            return rows[0] if rows else None

        return detect

    return [(mutant.name, case(mutant.name)) for mutant in catalogue.CATALOGUE]


_CASES = mutant_detection_cases()


@pytest.mark.parametrize(
    "name,detect",
    _CASES or [pytest.param(None, None, marks=pytest.mark.skip(
        reason="mutant detection times are opt-in: BENCH_MUTANTS=1 (see mutant_detection_cases())"))],
)
def test_mutant_detection_time(benchmark, sut_adapter, name, detect):
    if sut_adapter.name != "reference":
        pytest.skip("mutants are planted in the reference implementation")
    benchmark.group = "mutants"
    outcome: list[Any] = []
    timed = Timed(lambda: outcome.append(detect()), warmup=0, clock=WALL)
    benchmark.pedantic(timed, rounds=1, iterations=1)
    row = outcome[-1]
    detected = bool(getattr(row, "detected", False))
    record(benchmark, f"mutant/{name}", "reference",
           getattr(row, "seconds_to_first", None) if detected else None, "s", LOWER, clock=WALL,
           detected=detected, examples_to_first=getattr(row, "examples_to_first", None),
           verify_seconds=getattr(row, "seconds", timed.best_wall))
