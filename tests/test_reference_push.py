"""Several servers on one PostgreSQL database, real processes and real clients:

- push fan-out (reference_impl/streaming/push.py): a client on the server that does not run the
  task gets its events as they are logged, woken by LISTEN/NOTIFY, where polling alone would keep
  it waiting for half a minute; the listener makes up for what it missed while disconnected;
- a deploy: SIGTERM to the server running a task with 100 streams open; the other server resumes
  the task at once and every client, reconnected with Last-Event-ID, has every event once.

Needs the PostgreSQL server of STREAMSPEC_PG_URL (default: the local one); `tox -e verify-http`
runs these tests (marker ``postgres``), and fails with the reason when the server cannot be reached.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from httpx_sse import aconnect_sse

from tests.http_server import (
    REPO_ROOT,
    SSEReader,
    free_port,
    manage_command,
    server_env,
    start_server,
    stop_server,
)

pytestmark = [pytest.mark.postgres, pytest.mark.http]

PG_URL = os.environ.get("STREAMSPEC_PG_URL", "postgres://postgres@127.0.0.1:5432/streamspec_push")
SLOW_POLL = "30"
"""The relays' poll interval on these servers: longer than any bound below, so only a push can
deliver in time."""
BOUND = 10.0


def _ensure_database(url: str) -> None:
    """The database exists (made if the server has none by that name): `.ci/ensure_postgres.py`,
    which says why when the server cannot be reached."""
    done = subprocess.run([sys.executable, str(REPO_ROOT / ".ci" / "ensure_postgres.py"), url],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        pytest.fail(done.stderr.strip(), pytrace=False)


def _env(**extra: str) -> dict[str, str]:
    return {"DATABASE_URL": PG_URL, "DJANGO_SECRET_KEY": "push-tests", **extra}


@pytest.fixture(scope="module")
def migrated() -> None:
    _ensure_database(PG_URL)
    done = subprocess.run(manage_command("migrate", "-v", "0"), cwd=REPO_ROOT, env=server_env(_env()),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def _new_task() -> tuple[int, str]:
    """A SignalTask row on the database, and its signed stream path."""
    script = ("from reference_impl.example.models import SignalTask; t = SignalTask.objects.create(); "
              "print(t.pk, t.stream_url())")
    done = subprocess.run(manage_command("shell", "-v", "0", "-c", script), cwd=REPO_ROOT,
                          env=server_env(_env()), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    pk, path = done.stdout.split()
    return int(pk), path


def _release(pk: int) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute("UPDATE example_signaltask SET released = true WHERE id = %s", (pk,))


@pytest.fixture
def two_servers(migrated: None, request: pytest.FixtureRequest) -> Iterator[tuple]:
    push = request.param
    env = _env(STREAMING_POLL_SECONDS=SLOW_POLL, STREAMING_PUSH=push)
    servers = [start_server(env), start_server(env)]
    try:
        yield servers
    finally:
        for server in servers:
            stop_server(server)


async def _relayed(servers: tuple, wait: float) -> tuple[list[str], list[str]]:
    """A task started on the first server with a client there, a second client on the other server,
    the task released: the events each client had within `wait` seconds of the release."""
    owner, other = servers
    pk, path = _new_task()
    async with httpx.AsyncClient(base_url=owner.base_url, timeout=BOUND) as a, \
            httpx.AsyncClient(base_url=other.base_url, timeout=BOUND) as b, \
            aconnect_sse(a, "GET", path) as first, aconnect_sse(b, "GET", path) as second:
        readers = SSEReader(first), SSEReader(second)
        assert (await readers[0].next()).event == "start"  # it runs on the first server
        assert (await readers[1].next()).event == "start"  # the other relays the logged event
        _release(pk)
        seen: tuple[list[str], list[str]] = ([], [])

        async def read(i: int) -> None:
            while "complete" not in seen[i]:
                seen[i].append((await readers[i].next()).event)

        await asyncio.wait([asyncio.ensure_future(read(i)) for i in (0, 1)], timeout=wait)
    return seen


@pytest.mark.parametrize("two_servers", ["1"], indirect=True)
async def test_a_client_on_another_server_gets_each_event_as_it_is_logged(two_servers) -> None:
    here, there = await _relayed(two_servers, BOUND)
    assert here == ["released", "complete"]
    assert there == ["released", "complete"], "the relay was not woken: only its 30 s poll would deliver"


@pytest.mark.parametrize("two_servers", ["0"], indirect=True)
async def test_without_push_the_same_client_waits_for_the_poll(two_servers) -> None:
    # The control: the same servers polling only. Within 3 s of the release the owner's client has
    # everything and the other server's has nothing yet (its relay sleeps 30 s between reads).
    here, there = await _relayed(two_servers, 3.0)
    assert here == ["released", "complete"] and there == []


def test_the_listener_reconnects_and_wakes_its_relays_to_read_what_they_missed(migrated) -> None:
    # A notification missed while the listening connection was down is made up for: on reconnecting
    # the listener wakes every relay it has, which reads the log.
    code = (
        "import asyncio, django; django.setup()\n"
        "import psycopg\n"
        "from reference_impl.streaming import push\n"
        "async def main():\n"
        "    listener = push.listener()\n"
        "    listener.watch('example.signaltask:1')\n"
        "    for _ in range(100):\n"
        "        if listener.connected: break\n"
        "        await asyncio.sleep(0.05)\n"
        "    assert listener.connected\n"
        "    before = listener.generation('example.signaltask:1')\n"
        f"    with psycopg.connect({PG_URL!r}, autocommit=True) as admin:\n"
        "        admin.execute(\"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = "
        "'LISTEN streaming_events'\")\n"
        "    await asyncio.wait_for(listener.wait('example.signaltask:1', before, 30), 10)\n"
        "    print('woken', listener.generation('example.signaltask:1') > before)\n"
        "    await push.close()\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=server_env(_env()),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "woken True", done.stdout


def test_a_server_whose_postgresql_cannot_be_reached_stops_at_once_with_the_reason() -> None:
    url = f"postgres://nobody@127.0.0.1:{free_port()}/nothing"  # a port nothing listens on
    done = subprocess.run(manage_command("runserver_stream", "--port", str(free_port())), cwd=REPO_ROOT,
                          env=server_env({"DATABASE_URL": url}), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "CommandError: cannot use the database postgresql 127.0.0.1: connection failed" in done.stderr
    assert "Traceback" not in done.stderr


CLIENTS = 100


async def _follow(client: httpx.AsyncClient, urls: list[str], path: str, reading: list[None]) -> list[tuple]:
    """One browser tab: reads `path` on the first server; when its stream ends without the terminal
    event (the server was told to stop), reconnects to the next server with Last-Event-ID, as
    EventSource does. Every (id, event) it read, in order. Notes in `reading` its first event."""
    seen: list[tuple] = []
    for base in urls:
        headers = {"Last-Event-ID": str(seen[-1][0])} if seen else {}
        async with aconnect_sse(client, "GET", base + path, headers=headers) as source:
            async for sse in source.aiter_sse():
                if not sse.data:
                    continue  # a retry hint, or an id echoed after a comment: nothing to show
                seen.append((int(sse.id), sse.event))
                if len(seen) == 1:
                    reading.append(None)
                if sse.event == "complete":
                    return seen
    return seen


async def test_sigterm_with_100_open_streams_hands_the_task_to_another_server(migrated) -> None:
    # A deploy: the server running a task with 100 streams open gets SIGTERM. It ends every stream
    # at once with a retry hint, logs no traceback, releases its claim and exits; the clients come
    # back with Last-Event-ID to the other server, which resumes the task without waiting out the
    # lease (30 s here), and every client has each event once, the end included.
    env = _env(STREAMING_LEASE_SECONDS="30", STREAMING_RETRY_AFTER_SECONDS="1")
    owner, heir = start_server(env), start_server(env)
    try:
        pk, path = _new_task()
        reading: list[None] = []
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=BOUND, limits=limits) as client:
            servers = [owner.base_url, heir.base_url]
            tabs = [asyncio.ensure_future(_follow(client, servers, path, reading))
                    for _ in range(CLIENTS)]
            async with asyncio.timeout(BOUND):
                while len(reading) < CLIENTS:
                    await asyncio.sleep(0.05)
            first_owner = (await _row(pk))["owner"]
            assert first_owner, "the task is not running on its first server"
            began = time.monotonic()
            owner.process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(BOUND):
                while owner.process.poll() is None:
                    await asyncio.sleep(0.02)
            exited = time.monotonic() - began
            async with asyncio.timeout(BOUND):
                while (await _row(pk))["owner"] in ("", first_owner):
                    await asyncio.sleep(0.02)
            resumed = time.monotonic() - began
            _release(pk)
            async with asyncio.timeout(BOUND):
                seen = await asyncio.gather(*tabs)
        print(f"SIGTERM with {CLIENTS} streams: exited in {exited:.2f} s, task resumed elsewhere "
              f"{resumed:.2f} s after the signal")
        output = owner.read_output()
    finally:
        stop_server(owner)
        stop_server(heir)
    assert "Traceback" not in output and "ERROR" not in output, output
    assert owner.process.returncode in (0, -signal.SIGTERM)
    for tab in seen:
        ids = [event_id for event_id, _ in tab]
        assert ids == list(range(1, len(ids) + 1)), tab  # nothing twice, nothing missing
        assert tab[-1][1] == "complete" and [e for _, e in tab].count("start") == 2, tab


async def _row(pk: int) -> dict:
    import psycopg

    async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
        cursor = await conn.execute("SELECT status, owner FROM example_signaltask WHERE id = %s", (pk,))
        status, owner = await cursor.fetchone()
    return {"status": status, "owner": owner}

