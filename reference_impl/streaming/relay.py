"""The event log in the database: how events cross processes and survive a crash.

The process that runs a task appends every event before `send_event` returns, so once an event
counts as sent, any process can read it: a process with clients of a task that runs elsewhere
follows the log and relays the events to them (S2, S3 across processes), and a process that
resumes a task after a crash continues its numbering and replays its last event (S7).

An append runs on the event loop's thread where that cannot stall the loop (a SQLite file in WAL
mode, `_LoopLog`), and otherwise on the log's writer thread (`_Writer`).
"""

from __future__ import annotations

import asyncio
import os
import queue
import sqlite3
import threading
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async
from django.db import DatabaseError, IntegrityError, connections, router, transaction

from .conf import streaming_settings
from .events import Event
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


def _params(key: Key, event: Event, connection: Any) -> tuple[Any, ...]:
    data = StreamEvent._meta.get_field("data").get_db_prep_save(event["data"], connection)
    return (key[0], str(key[1]), event["id"], event["type"], data, event["timestamp"] or "")


def _append(key: Key, event: Event) -> None:
    # One prepared INSERT on the driver's cursor instead of Model.save() or Django's cursor: the
    # append is on the path of every event, and save()'s machinery (signals, field walk,
    # compiler) and the cursor wrapper's (placeholder rewriting, debug hooks) cost more than the
    # write itself. The JSON data is adapted by its field exactly as save() would adapt it, and
    # driver errors become Django's (IntegrityError: another process took the task over).
    alias = router.db_for_write(StreamEvent)
    connection = connections[alias]
    params = _params(key, event, connection)
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


def _checkpoint(alias: str) -> None:
    with connections[alias].cursor() as cursor:
        cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")


_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6
_CHECKPOINT_EVERY = 1000
"""On-loop appends between two checkpoints handed to the writer thread (SQLite's own default)."""


class _LoopLog:
    """Appends on the event loop's own thread, for a SQLite database file in WAL mode.

    Why: the hop to the writer thread and back costs several times the append itself in CPU
    (about 125 against 30 µs per event on 2-core VMs), and one task's events cannot share a hop,
    since each is durable before `send_event` returns. Why it cannot stall the loop: in WAL mode
    with synchronous=NORMAL a commit writes to the WAL without an fsync (it survives a crash of
    the process, not a power cut, as SQLite documents for that mode); the connection never waits
    for a lock (a locked database hands the append to the writer thread instead); and it never
    checkpoints (the writer thread does, every `_CHECKPOINT_EVERY` appends). Any other database,
    or a file in another journal mode, uses the writer thread alone.

    The connection is the log's own (one per thread that runs a loop, per database file and
    process), not Django's: Django's may not be used from a thread that runs an event loop.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        # A forked child must not use its parent's SQLite connections: it starts with none (done
        # once at the fork, not checked on every append).
        os.register_at_fork(after_in_child=self._forget_all)

    def _forget_all(self) -> None:
        self._local = threading.local()

    def connection(self, alias: str, django_connection: Any) -> sqlite3.Connection | None:
        """This thread's connection to `alias`'s database, or None if appends may not run here."""
        if django_connection.vendor != "sqlite":
            return None
        name = str(django_connection.settings_dict["NAME"])
        known = getattr(self._local, "connections", None)
        if known is None:
            known = self._local.connections = {}
        if (alias, name) not in known:
            known[(alias, name)] = self._open(name)
        return known[(alias, name)]

    @staticmethod
    def _open(name: str) -> sqlite3.Connection | None:
        if name == ":memory:" or "mode=memory" in name:
            return None  # an in-memory database exists only on Django's own connection
        try:
            connection = sqlite3.connect(name, timeout=0, isolation_level=None, uri=name.startswith("file:"))
        except sqlite3.Error:
            return None
        try:
            mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                # A rollback journal syncs on every commit: never on the loop.
                connection.close()
                return None
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA wal_autocheckpoint=0")
        except sqlite3.Error:
            connection.close()
            return None
        return connection

    def append(self, alias: str, django_connection: Any, connection: sqlite3.Connection,
               key: Key, event: Event) -> bool:
        """Append `event` on this thread; False if it could not run here (the database is locked,
        or the connection failed): nothing was written, and the caller hands it to the thread."""
        try:
            connection.execute(_insert(alias, django_connection), _params(key, event, django_connection))
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(*exc.args) from exc
        except sqlite3.Error as exc:
            code = getattr(exc, "sqlite_errorcode", None)
            if code is None or code & 0xFF not in (_SQLITE_BUSY, _SQLITE_LOCKED):
                # Not a lock: this connection may be broken (a closed or replaced file). A new one
                # is opened next time; this append goes to the thread, whose errors are Django's.
                self._forget(connection)
            return False
        count = getattr(self._local, "appended", 0) + 1
        self._local.appended = count % _CHECKPOINT_EVERY
        if count == _CHECKPOINT_EVERY:
            _checkpoints_wanted(alias)
        return True

    def _forget(self, connection: sqlite3.Connection) -> None:
        known = getattr(self._local, "connections", {})
        for place, held in list(known.items()):
            if held is connection:
                del known[place]
        connection.close()


class _Writer:
    """The thread that appends events, in the order they were sent (one thread keeps each task's
    appends in order), on a connection of its own in autocommit: every append on a database the
    loop may not write to itself (see `_LoopLog`), and the appends the loop could not make.

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
            if loop is None:  # a checkpoint request, (None, None, alias, None): nobody waits for it
                try:
                    _checkpoint(key)
                except Exception:  # a later checkpoint (or SQLite's own) catches up
                    pass
                continue
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

    def checkpoint(self, alias: str) -> None:
        """Ask for a WAL checkpoint on the thread (no one waits for it)."""
        self._requests.put((None, None, alias, None))

    async def append(self, key: Key, event: Event) -> None:
        loop = asyncio.get_running_loop()
        if type(loop).run_in_executor is not _STOCK_RUN_IN_EXECUTOR:
            # A loop that schedules offloads itself (the harness's deterministic scheduler) gets
            # every append through run_in_executor, so it decides when the append completes. The
            # schedules it explores then include every schedule of an append on the loop (one that
            # completes before anything else runs) as well as those of the thread fallback.
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streaming-log")
            await loop.run_in_executor(self._executor, _append, key, event)
            return
        if streaming_settings().log_on_loop:
            alias = router.db_for_write(StreamEvent)
            django_connection = connections[alias]
            connection = _loop_log.connection(alias, django_connection)
            if connection is not None and _loop_log.append(alias, django_connection, connection, key, event):
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
_loop_log = _LoopLog()


def _the_writer() -> _Writer:
    global _writer
    if _writer is None:
        with _writer_lock:
            if _writer is None:
                _writer = _Writer()
    return _writer


def _checkpoints_wanted(alias: str) -> None:
    _the_writer().checkpoint(alias)


async def append(key: Key, event: Event) -> None:
    """Log `event`; durable when this returns. IntegrityError if its number is taken."""
    await _the_writer().append(key, event)


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
