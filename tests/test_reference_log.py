"""Where the reference appends an event to its log: on the loop's thread or through the writer thread.

On a SQLite file in WAL mode (the test database is one) an append runs on the loop's thread, on a
connection of the log's own; a locked database, a failed connection, another journal mode or
``STREAMING_LOG_ON_LOOP = False`` hands it to the writer thread instead. Whichever path it takes,
the event is durable and readable by Django when `append` returns, and a taken number is an
IntegrityError (tests/test_reference_processes.py checks what is stored).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import django
import pytest
from django.db import IntegrityError, connections
from django.test import override_settings

from reference_impl.example.models import ExampleTask
from reference_impl.streaming import relay

pytestmark = pytest.mark.usefixtures("reference_defaults")


@pytest.fixture
def thread_appends(monkeypatch) -> list[int]:
    """The numbers of the events the writer thread appended (its `_append`), in order."""
    seen: list[int] = []
    append = relay._append

    def recording(key, event):
        seen.append(event["id"])
        return append(key, event)

    monkeypatch.setattr(relay, "_append", recording)
    return seen


@pytest.fixture
def database_file() -> str:
    name = str(connections["default"].settings_dict["NAME"])
    if connections["default"].vendor != "sqlite" or "mode=memory" in name:
        pytest.skip("these tests are about a SQLite database file (DATABASE_URL names another)")
    return name


async def logged_task() -> tuple[relay.Key, ExampleTask]:
    task = await ExampleTask.objects.acreate(message="logged")
    return ("example.exampletask", task.pk), task


def event(seq: int) -> relay.Event:
    return relay.Event("progress", {"step": seq}, "t", seq)


async def logged_numbers(key: relay.Key) -> list[int]:
    return [e["id"] for e in await relay.after(key, 0)]


async def test_a_wal_database_is_appended_on_the_loop(database_file, thread_appends):
    key, _ = await logged_task()
    for seq in (1, 2, 3):
        await relay.append(key, event(seq))
    assert thread_appends == []
    assert await logged_numbers(key) == [1, 2, 3]
    with pytest.raises(IntegrityError):
        await relay.append(key, event(2))


async def test_with_the_setting_off_every_append_goes_to_the_thread(database_file, thread_appends):
    key, _ = await logged_task()
    with override_settings(STREAMING_LOG_ON_LOOP=False):
        for seq in (1, 2):
            await relay.append(key, event(seq))
        with pytest.raises(IntegrityError):
            await relay.append(key, event(2))
    assert thread_appends == [1, 2, 2]
    assert await logged_numbers(key) == [1, 2]


async def test_a_locked_database_hands_the_append_to_the_thread_instead_of_blocking_the_loop(
    database_file, thread_appends
):
    key, _ = await logged_task()
    await relay.append(key, event(1))
    locker = sqlite3.connect(database_file, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # holds the write lock, as another process's write would
    try:
        appending = asyncio.ensure_future(relay.append(key, event(2)))
        ticks = 0
        while not thread_appends:  # the loop keeps running while the thread waits for the lock
            await asyncio.sleep(0.005)
            ticks += 1
            assert ticks < 400, "the locked append never reached the writer thread"
        assert not appending.done()
    finally:
        locker.execute("COMMIT")
        locker.close()
    async with asyncio.timeout(10):
        await appending
    await relay.append(key, event(3))  # the lock is gone: on the loop again
    assert thread_appends == [2]
    assert await logged_numbers(key) == [1, 2, 3]


async def test_a_broken_loop_connection_hands_the_append_to_the_thread_and_is_opened_again(
    database_file, thread_appends
):
    key, _ = await logged_task()
    await relay.append(key, event(1))
    held = relay._loop_log.connection("default", connections["default"])
    assert held is not None
    held.close()
    await relay.append(key, event(2))
    await relay.append(key, event(3))
    assert thread_appends == [2]
    assert relay._loop_log.connection("default", connections["default"]) not in (None, held)
    assert await logged_numbers(key) == [1, 2, 3]


def test_only_a_wal_file_gets_a_loop_connection(tmp_path):
    rollback = tmp_path / "rollback.sqlite3"
    sqlite3.connect(rollback).execute("CREATE TABLE t (x)").connection.close()
    wal = tmp_path / "wal.sqlite3"
    setup = sqlite3.connect(wal)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.close()
    assert relay._LoopLog._open(str(rollback)) is None
    assert relay._LoopLog._open(":memory:") is None
    assert relay._LoopLog._open("file:memorydb_default?mode=memory&cache=shared") is None
    opened = relay._LoopLog._open(str(wal))
    assert opened is not None
    try:
        assert opened.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: no fsync per commit
        assert opened.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        assert opened.execute("PRAGMA busy_timeout").fetchone()[0] == 0
    finally:
        opened.close()


async def test_the_writer_thread_checkpoints_what_the_loop_appended(database_file, monkeypatch):
    checkpointed = threading.Event()
    checkpoint = relay._checkpoint

    def recording(alias):
        checkpoint(alias)
        checkpointed.set()

    monkeypatch.setattr(relay, "_CHECKPOINT_EVERY", 3)
    monkeypatch.setattr(relay, "_checkpoint", recording)
    key, _ = await logged_task()
    for seq in range(1, 5):  # enough for one checkpoint whatever this thread counted before
        await relay.append(key, event(seq))
    assert await asyncio.to_thread(checkpointed.wait, 10), "no checkpoint was asked of the writer thread"


def test_the_standalone_settings_put_their_sqlite_file_in_wal_mode(tmp_path):
    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    subprocess.run([sys.executable, str(root / "reference_impl" / "manage.py"), "migrate", "-v0"],
                   cwd=tmp_path, env=env, check=True, timeout=300)
    database = sqlite3.connect(tmp_path / "streamspec-reference.sqlite3")
    try:
        mode = database.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        database.close()
    # Django 4.2 has no init_command for SQLite: its deployments set the mode on the file themselves.
    assert mode == ("wal" if django.VERSION >= (5, 1) else "delete")


def test_the_setting_must_be_a_boolean():
    from django.core.exceptions import ImproperlyConfigured

    from reference_impl.streaming.conf import streaming_settings

    with override_settings(STREAMING_LOG_ON_LOOP="yes"), pytest.raises(
        ImproperlyConfigured, match="STREAMING_LOG_ON_LOOP must be True or False, got 'yes'"
    ):
        streaming_settings()



def test_a_forked_child_starts_without_its_parents_loop_connections(database_file):
    log = relay._LoopLog()
    assert log.connection("default", connections["default"]) is not None
    pid = os.fork()
    if pid == 0:  # the child: touches no connection, only says whether it inherited any
        os._exit(0 if getattr(log._local, "connections", None) is None else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
