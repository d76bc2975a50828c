"""The event log in the database: how events cross processes and survive a crash.

The process that runs a task appends every event before `send_event` returns, so once an event
counts as sent, any process can read it: a process with clients of a task that runs elsewhere
follows the log and relays the events to them (S2, S3 across processes), and a process that
resumes a task after a crash continues its numbering and replays its last event (S7).
"""

from __future__ import annotations

import asyncio
import queue
import threading
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
_local = threading.local()


def _insert(alias: str, connection: Any) -> str:
    sql = _insert_sql.get(alias)
    if sql is None:
        quote = connection.ops.quote_name
        columns = ", ".join(quote(StreamEvent._meta.get_field(name).column) for name in _COLUMNS)
        # The driver's own placeholders: the statement goes to its cursor, not through Django's.
        mark = "?" if connection.Database.paramstyle == "qmark" else "%s"
        sql = _insert_sql[alias] = (
            f"INSERT INTO {quote(StreamEvent._meta.db_table)} ({columns}) "
            f"VALUES ({', '.join([mark] * len(_COLUMNS))})"
        )
    return sql


def _driver_cursor(connection: Any) -> Any:
    """This thread's cursor of the driver's connection behind `connection`, made again whenever
    Django reconnected."""
    connection.ensure_connection()
    cached = getattr(_local, "cursor", None)
    if cached is None or cached[0] is not connection.connection:
        cached = _local.cursor = (connection.connection, connection.connection.cursor())
    return cached[1]


def _append(key: Key, event: Event) -> None:
    # One prepared INSERT on the driver's cursor instead of Model.save() or Django's cursor: the
    # append is on the path of every event, and save()'s machinery (signals, field walk,
    # compiler) and the cursor wrapper's (placeholder rewriting, debug hooks) cost more than the
    # write itself. The JSON data is adapted by its field exactly as save() would adapt it, and
    # driver errors become Django's (IntegrityError: another process took the task over).
    alias = router.db_for_write(StreamEvent)
    connection = connections[alias]
    data = StreamEvent._meta.get_field("data").get_db_prep_save(event["data"], connection)
    params = (key[0], str(key[1]), event["id"], event["type"], data, event["timestamp"] or "")
    try:
        with connection.wrap_database_errors:
            _driver_cursor(connection).execute(_insert(alias, connection), params)
    except IntegrityError:
        raise
    except DatabaseError:
        # This thread's connection may be broken (a restarted server): the next append reconnects.
        _local.cursor = None
        connection.close()
        raise


class _Writer:
    """The thread that appends events, in the order they were sent (one thread keeps each task's
    appends in order), on a connection of its own in autocommit.

    A request is a queue put and a `call_soon_threadsafe` back: about a third cheaper than the
    generic `run_in_executor` hop (its concurrent future and the chaining to an asyncio one), and
    the hop is on the path of every event."""

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._executor: ThreadPoolExecutor | None = None
        threading.Thread(target=self._serve, name="streaming-log", daemon=True).start()

    def _serve(self) -> None:
        while True:
            loop, future, key, event = self._requests.get()
            try:
                _append(key, event)
            except Exception as exc:  # handed to the awaiting sender
                outcome: Exception | None = exc
            else:
                outcome = None
            try:
                loop.call_soon_threadsafe(_settle, future, outcome)
            except RuntimeError:
                pass  # the sender's loop is closed: nobody waits for this append any more

    async def append(self, key: Key, event: Event) -> None:
        loop = asyncio.get_running_loop()
        if type(loop).run_in_executor is not _STOCK_RUN_IN_EXECUTOR:
            # A loop that schedules offloads itself (a deterministic test scheduler) gets this one
            # through run_in_executor too, so it decides when the append happens.
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streaming-log")
            await loop.run_in_executor(self._executor, _append, key, event)
            return
        future = loop.create_future()
        self._requests.put((loop, future, key, event))
        await future


_STOCK_RUN_IN_EXECUTOR = asyncio.BaseEventLoop.run_in_executor


def _settle(future: asyncio.Future, outcome: Exception | None) -> None:
    if future.cancelled():
        return
    if outcome is None:
        future.set_result(None)
    else:
        future.set_exception(outcome)


_writer: _Writer | None = None
_writer_lock = threading.Lock()


async def append(key: Key, event: Event) -> None:
    """Log `event`; durable when this returns. IntegrityError if its number is taken."""
    global _writer
    if _writer is None:
        with _writer_lock:
            if _writer is None:
                _writer = _Writer()
    await _writer.append(key, event)


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
