"""`get_task_instance` hot (the task runs: its instance is in memory) and cold (a finished row,
loaded from SQLite by a coordinator that has not seen it).

Hot: `lookup_hot` lookups of one running task per round. Raw baseline: an awaited coroutine that
does one dict lookup, the floor of any async lookup. Cold: `lookup_cold` distinct finished rows
per round, each round on a fresh coordinator (upstream keeps finished tasks it loaded).
"""

from __future__ import annotations

import pytest
from django.utils import timezone

from benchmarks.benchapp.models import BenchTask
from benchmarks.config import sizes
from benchmarks.figures import LOWER, Timed, record
from benchmarks.inproc import APP, MODEL, Process

SIZES = sizes()


async def _hot(lookup, pk, count: int) -> None:
    for _ in range(count):
        found = await lookup(APP, MODEL, pk)
    assert found is not None


@pytest.mark.parametrize("contender", ["sut", "raw"], indirect=True)
def test_lookup_hot(benchmark, aloop, sut_adapter, contender):
    benchmark.group = "lookup-hot"
    process = task = None
    if contender == "raw":
        table = {(APP, MODEL, 1): object()}

        async def lookup(app, model, pk):
            return table.get((app, model, pk))

        pk = 1
    else:
        process = Process(sut_adapter)
        task = aloop.run_until_complete(process.start_parked())
        lookup, pk = process.lookup_fn(), task.pk
        assert aloop.run_until_complete(lookup(APP, MODEL, pk)) is not None
    timed = Timed(lambda: aloop.run_until_complete(_hot(lookup, pk, SIZES.lookup_hot)))
    benchmark.pedantic(timed, rounds=SIZES.rounds, warmup_rounds=1, iterations=1)
    record(benchmark, "lookup/hot", contender, timed.best / SIZES.lookup_hot * 1e9, "ns", LOWER,
           clock=timed.clock, lookups=SIZES.lookup_hot)
    if task is not None:
        aloop.run_until_complete(process.finish(task))


async def _finished_rows(count: int) -> list[int]:
    now = timezone.now()
    rows = [BenchTask(completed_at=now, final_value={"done": True}) for _ in range(count)]
    if hasattr(BenchTask, "status"):  # the reference records the status as well
        for row in rows:
            row.status = "completed"
    created = await BenchTask.objects.abulk_create(rows)
    if created and created[0].pk is None:  # a backend that returns no keys
        return [pk async for pk in BenchTask.objects.order_by("-pk").values_list("pk", flat=True)[:count]]
    return [row.pk for row in created]


async def _cold(lookup, pks: list[int]) -> None:
    for pk in pks:
        found = await lookup(APP, MODEL, pk)
        assert found is not None and found.completed_at is not None


def test_lookup_cold(benchmark, aloop, sut_adapter, sut_label):
    benchmark.group = "lookup-cold"
    count = SIZES.lookup_cold
    rounds: list[tuple[Process, list[int]]] = []

    def setup():
        process = Process(sut_adapter, f"cold{len(rounds)}")
        pks = aloop.run_until_complete(_finished_rows(count))
        rounds.append((process, pks))
        return (process.lookup_fn(), pks), {}

    timed = Timed(lambda lookup, pks: aloop.run_until_complete(_cold(lookup, pks)))
    benchmark.pedantic(timed, setup=setup, rounds=SIZES.rounds, warmup_rounds=1, iterations=1)
    record(benchmark, "lookup/cold", sut_label, timed.best / count * 1e6, "µs", LOWER, clock=timed.clock,
           lookups=count)
