"""The SQL a task costs the reference: what a task run writes and reads, statement by statement.

Every statement is a database round trip on the path of a task (and, under the harness, a step of
every explored scenario), so the counts are part of the design: a task that never ran is claimed
without reading the log, and an outcome stored with the terminal event is not written twice.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from django.db.backends import utils

from reference_impl.example.models import SignalTask
from reference_impl.streaming.coordinator import coordinator
from reference_impl.streaming.models import TaskStatus

pytestmark = pytest.mark.usefixtures("reference_defaults", "fresh_coordinator")

TASK_TABLE = SignalTask._meta.db_table
LOG_TABLE = "streaming_streamevent"


@pytest.fixture
def statements(monkeypatch) -> list[str]:
    """Every SQL statement executed from now on, in any thread, whitespace collapsed."""
    seen: list[str] = []
    execute = utils.CursorWrapper.execute

    def counting(self, sql, params=None):
        seen.append(re.sub(r"\s+", " ", str(sql)))
        return execute(self, sql, params)

    monkeypatch.setattr(utils.CursorWrapper, "execute", counting)
    return seen


def touching(statements: list[str], verb: str, table: str) -> list[str]:
    return [s for s in statements if s.startswith(verb) and f'"{table}"' in s]


async def run_released(task: SignalTask) -> None:
    """Start `task`, release it once it sent its first event, and wait until it finished. Released
    through its row, as from another process, so it reads and returns the payload."""
    await coordinator.start_task(task)
    async with asyncio.timeout(5):
        while task._latest_data is None:
            await asyncio.sleep(0.002)
        await SignalTask.objects.filter(pk=task.pk).aupdate(released=True, payload={"done": 1})
        await coordinator.join()


async def test_a_task_that_never_ran_is_claimed_without_reading_the_log(statements):
    task = await SignalTask.objects.acreate()
    statements.clear()
    await run_released(task)
    assert touching(statements, "SELECT", LOG_TABLE) == []
    claim = f'UPDATE "{TASK_TABLE}" SET "status" = %s, "owner" = %s, "lease_expires_at" = %s'
    claims = [s for s in statements if s.startswith(claim)]
    assert len(claims) == 1, claims


async def test_a_task_that_ran_before_reads_its_log_to_resume(statements):
    # A row left running by a dead owner: the claim must look for events to continue from.
    task = await SignalTask.objects.acreate(status=TaskStatus.RUNNING, owner="gone:0")
    statements.clear()
    await run_released(task)
    assert len(touching(statements, "SELECT", LOG_TABLE)) == 1
    assert (await SignalTask.objects.aget(pk=task.pk)).status == TaskStatus.COMPLETED


async def test_the_outcome_is_written_once_when_the_coordinator_stores_it(statements):
    task = await SignalTask.objects.acreate()
    statements.clear()
    await run_released(task)
    outcome_writes = [s for s in touching(statements, "UPDATE", TASK_TABLE) if '"final_value" =' in s]
    assert len(outcome_writes) == 1, outcome_writes
    row = await SignalTask.objects.aget(pk=task.pk)
    assert (row.status, row.final_value, row.owner) == (TaskStatus.COMPLETED, {"done": 1}, "")
    assert row.completed_at is not None and row.last_event["type"] == "complete"


async def test_mark_completed_called_by_an_application_still_writes(statements):
    task = await SignalTask.objects.acreate()
    statements.clear()
    await task.mark_completed({"by": "admin"})
    assert len(touching(statements, "UPDATE", TASK_TABLE)) == 1
    row = await SignalTask.objects.aget(pk=task.pk)
    assert (row.status, row.final_value) == (TaskStatus.COMPLETED, {"by": "admin"})
