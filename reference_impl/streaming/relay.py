"""The event log in the database: how events cross processes and survive a crash.

The process that runs a task appends every event before `send_event` returns, so once an event
counts as sent, any process can read it: a process with clients of a task that runs elsewhere
follows the log and relays the events to them (S2, S3 across processes), and a process that
resumes a task after a crash continues its numbering and replays its last event (S7).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from .channel import Event
from .models import StreamEvent

Key = tuple[str, Hashable]


def _row(key: Key) -> dict[str, Any]:
    return {"task_label": key[0], "task_pk": str(key[1])}


def _event(row: StreamEvent) -> Event:
    return Event(row.type, row.data, row.timestamp, row.seq)


async def append(key: Key, event: Event) -> None:
    await StreamEvent.objects.acreate(
        **_row(key), seq=event["id"], type=event["type"], data=event["data"],
        timestamp=event["timestamp"] or "",
    )


async def latest(key: Key) -> Event | None:
    row = await StreamEvent.objects.filter(**_row(key)).order_by("-seq").afirst()
    return None if row is None else _event(row)


async def after(key: Key, seq: int) -> list[Event]:
    return [_event(row) async for row in StreamEvent.objects.filter(**_row(key), seq__gt=seq).order_by("seq")]
