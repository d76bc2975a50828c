"""Django's async ORM under the controlled loop: offloaded queries complete where the scheduler
chooses, on a worker thread, and the same choices give the same run."""

from __future__ import annotations

import asyncio
import threading

from asgiref.sync import sync_to_async

from harness.choice import FifoChoices, RandomChoices, TapeChoices
from harness.offload import run_on_worker
from harness.probe.models import ProbeTask


def _make_row() -> int:
    return run_on_worker(lambda: ProbeTask.objects.create(label="").pk)


def _lost_update(pk: int, threads: set[int]):
    """Two coroutines append a letter to the same row's label: read, then write (no lock)."""

    async def append(letter: str) -> None:
        row = await ProbeTask.objects.aget(pk=pk)
        # Where the ORM's queries run: asgiref's executor, as Django's async ORM uses it.
        await sync_to_async(lambda: threads.add(threading.get_ident()))()
        row.label += letter
        await row.asave(update_fields=["label"])

    async def main() -> str:
        await asyncio.gather(append("a"), append("b"))
        return (await ProbeTask.objects.aget(pk=pk)).label

    return main


def test_fifo_runs_the_queries_in_order_and_off_the_loop_thread(controlled_run):
    threads: set[int] = set()
    result = controlled_run(_lost_update(_make_row(), threads), FifoChoices())
    assert result.error is None, result.describe()
    # FIFO: a's read, then b's read, before either write: b's write wins, a's update is lost.
    assert result.value == "b"
    assert threads and threading.get_ident() not in threads


def test_query_completion_order_is_a_choice_and_replays_exactly(controlled_run):
    outcomes = {}
    for seed in range(30):
        result = controlled_run(_lost_update(_make_row(), set()), RandomChoices(seed))
        assert result.error is None, result.describe()
        outcomes.setdefault(len(result.value), (seed, result))
    # Both orders occur: each write seen by the other (no update lost), and a lost update.
    assert set(outcomes) == {1, 2}, outcomes
    for _, recorded in outcomes.values():
        replay = controlled_run(_lost_update(_make_row(), set()), TapeChoices(recorded.tape))
        assert len(replay.value) == len(recorded.value)
        assert [e.label for e in replay.trace] == [e.label for e in recorded.trace]
