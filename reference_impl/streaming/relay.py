"""The event log in the database: how events cross processes and survive a crash.

The process that runs a task appends every event before `send_event` returns, so once an event
counts as sent, any process can read it: a process with clients of a task that runs elsewhere
follows the log and relays the events to them (S2, S3 across processes), and a process that
resumes a task after a crash continues its numbering and replays its last event (S7).
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async
from django.db import DatabaseError, IntegrityError, connections, router, transaction

from .channel import Event
from .models import StreamEvent

Key = tuple[str, Hashable]


def _row(key: Key) -> dict[str, Any]:
    return {"task_label": key[0], "task_pk": str(key[1])}


def _event(row: StreamEvent) -> Event:
    return Event(row.type, row.data, row.timestamp, row.seq)


def _new(key: Key, event: Event) -> StreamEvent:
    return StreamEvent(
        **_row(key), seq=event["id"], type=event["type"], data=event["data"],
        timestamp=event["timestamp"] or "",
    )


_COLUMNS = ("task_label", "task_pk", "seq", "type", "data", "timestamp")
_insert_sql: dict[str, str] = {}


def _append(key: Key, event: Event) -> None:
    # One prepared INSERT instead of Model.save(): the append is on the path of every event, and
    # save()'s generic machinery (signals, field walk, compiler) cost more than the write itself.
    # The JSON data is adapted by its field exactly as save() would adapt it.
    alias = router.db_for_write(StreamEvent)
    connection = connections[alias]
    sql = _insert_sql.get(alias)
    if sql is None:
        quote = connection.ops.quote_name
        columns = ", ".join(quote(StreamEvent._meta.get_field(name).column) for name in _COLUMNS)
        sql = _insert_sql[alias] = (
            f"INSERT INTO {quote(StreamEvent._meta.db_table)} ({columns}) "
            f"VALUES ({', '.join(['%s'] * len(_COLUMNS))})"
        )
    data = StreamEvent._meta.get_field("data").get_db_prep_save(event["data"], connection)
    params = (key[0], str(key[1]), event["id"], event["type"], data, event["timestamp"] or "")
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
    except IntegrityError:
        raise
    except DatabaseError:
        # This thread's connection may be broken (a restarted server): the next append reconnects.
        connection.close()
        raise


_writer: ThreadPoolExecutor | None = None


async def append(key: Key, event: Event) -> None:
    """Log `event`; durable when this returns. IntegrityError if its number is taken.

    On a thread of its own (with its own connection, in autocommit) rather than through asgiref's
    `sync_to_async`: the append is on the path of every event, and the plain executor hop costs
    half as much. One thread keeps each task's appends in order."""
    global _writer
    if _writer is None:
        _writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streaming-log")
    await asyncio.get_running_loop().run_in_executor(_writer, _append, key, event)


def _commit_end(key: Key, event: Event, model: type, pk: Any, fields: dict[str, Any], log: bool) -> None:
    with transaction.atomic():
        if log:
            _new(key, event).save(force_insert=True)
        model._default_manager.filter(pk=pk).update(**fields)


async def commit_end(key: Key, event: Event, model: type, pk: Any, fields: dict[str, Any], log: bool) -> None:
    """Log the terminal event and store the outcome on the task row in one transaction, so no crash
    can leave clients told "complete" while the row still says running."""
    await sync_to_async(_commit_end)(key, event, model, pk, fields, log)


async def latest(key: Key) -> Event | None:
    row = await StreamEvent.objects.filter(**_row(key)).order_by("-seq").afirst()
    return None if row is None else _event(row)


async def after(key: Key, seq: int) -> list[Event]:
    return [_event(row) async for row in StreamEvent.objects.filter(**_row(key), seq__gt=seq).order_by("seq")]
