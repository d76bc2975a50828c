"""HTTP behaviour of the reference implementation.

Most tests talk to a real `runserver_stream` process (uvicorn) over TCP or a Unix socket; the last
section drives both ASGI front ends in-process (the standalone `server.app` and Django's ASGI
application with `streaming.urls` mounted) through `httpx.ASGITransport`.

Task rows are created here with the ORM; the server process sees them through the shared
DATABASE_URL. SignalTask waits until its row says `released`, so a test decides when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.db.models import Model
from django.test import override_settings
from django.utils import timezone
from httpx_sse import EventSource, ServerSentEvent, aconnect_sse

from reference_impl.example.models import ExampleTask, FailingTask, SignalTask
from tests.http_server import (
    KEEPALIVE_SECONDS,
    LIMITED_MAX_STREAMS,
    LIMITED_RETRY_AFTER,
    REPO_ROOT,
    LineReader,
    ServerProcess,
    SSEReader,
    event_ids,
    free_port,
    manage_command,
    server_env,
    start_server,
    stop_server,
    wait_until,
)

http = pytest.mark.http

EXAMPLE_EVENTS = ["start", "progress", "progress", "progress", "complete"]


def stream_url(task: Model) -> str:
    return task.stream_url()


def data_of(event: ServerSentEvent) -> Any:
    return json.loads(event.data)


def assert_metadata(event: ServerSentEvent, task: Model) -> dict[str, Any]:
    """The upstream library's fields in every event's data; returns the data without them."""
    data = data_of(event)
    assert data["_task_id"] == task.pk
    assert data["_app"] == task._meta.app_label
    assert data["_model"] == type(task).__name__
    assert datetime.fromisoformat(data["_timestamp"]).tzinfo is not None
    return {k: v for k, v in data.items() if k not in {"_task_id", "_app", "_model", "_timestamp"}}


async def release(task: SignalTask, payload: Any = None) -> None:
    """Release a SignalTask running in the server process: it polls its row for `released`."""
    await SignalTask.objects.filter(pk=task.pk).aupdate(released=True, payload=payload)


async def wait_finished(task: Model, timeout: float = 5.0) -> Model:
    """The row once the server has stored the whole outcome (it does so in its own time): the status
    says finished and the owner's claim is released (that comes with the final value)."""
    async with asyncio.timeout(timeout):
        while True:
            row = await type(task).objects.aget(pk=task.pk)
            if row.status in ("completed", "failed") and not row.owner:
                return row
            await asyncio.sleep(0.02)


def assert_clean_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    assert "Traceback" not in response.text
    assert "File \"" not in response.text


# -- streaming: fan-out, wire format, late joiners -----------------------------------------------


@http
async def test_two_clients_receive_every_event_in_order(client: httpx.AsyncClient) -> None:
    task = await SignalTask.objects.acreate()
    url = stream_url(task)
    async with aconnect_sse(client, "GET", url) as first, aconnect_sse(client, "GET", url) as second:
        readers = [SSEReader(first), SSEReader(second)]
        streams = []
        for reader in readers:
            assert reader.response.status_code == 200
            streams.append([await reader.next()])
        await release(task, {"answer": 42})
        for reader, events in zip(readers, streams, strict=True):
            events.extend(await reader.until_terminal())
        for reader in readers:
            assert await reader.rest() == []  # the server ends the response after the terminal event

    for events in streams:
        assert [e.event for e in events] == ["start", "released", "complete"]
        assert event_ids(events) == [1, 2, 3]
        payloads = [assert_metadata(e, task) for e in events]
        assert payloads == [{"waiting": True}, {"payload": {"answer": 42}}, {"final_value": {"answer": 42}}]
    # One event fanned out, not one per client: same ids, data and timestamps.
    assert [(e.id, e.event, e.data) for e in streams[0]] == [(e.id, e.event, e.data) for e in streams[1]]


@pytest.mark.clause("W2")
@http
async def test_full_stream_wire_format(client: httpx.AsyncClient) -> None:
    task = await ExampleTask.objects.acreate(message="wire format")
    async with client.stream("GET", stream_url(task)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        lines = await LineReader(response).rest()

    assert lines[:2] == [": connected", ""]
    blocks = "\n".join(lines[2:]).strip("\n").split("\n\n")
    frames = [b.split("\n") for b in blocks if not b.startswith(":")]
    assert len(frames) == len(EXAMPLE_EVENTS), blocks
    for number, (frame, kind) in enumerate(zip(frames, EXAMPLE_EVENTS, strict=True), start=1):
        assert len(frame) == 3, frame
        assert frame[0] == f"id: {number}"
        assert frame[1] == f"event: {kind}"
        assert frame[2].startswith("data: {")
        data = json.loads(frame[2].removeprefix("data: "))
        assert (data["_task_id"], data["_app"], data["_model"]) == (task.pk, "example", "ExampleTask")
    assert json.loads(frames[1][2][6:])["step"] == 1
    assert json.loads(frames[-1][2][6:])["message"] == "wire format"


@pytest.mark.clause("W3")
@http
async def test_example_task_stream_start_to_complete(client: httpx.AsyncClient) -> None:
    task = await ExampleTask.objects.acreate(message="hello")
    async with aconnect_sse(client, "GET", stream_url(task)) as source:
        events = await SSEReader(source).rest()
    assert [e.event for e in events] == EXAMPLE_EVENTS
    assert event_ids(events) == [1, 2, 3, 4, 5]
    payloads = [assert_metadata(e, task) for e in events]
    assert payloads[0] == {"message": "hello"}
    assert [p["step"] for p in payloads[1:4]] == [1, 2, 3]
    assert payloads[-1] == {"status": "completed", "message": "hello"}


@http
async def test_late_joiner_gets_latest_event_first_then_later_ones(client: httpx.AsyncClient) -> None:
    task = await SignalTask.objects.acreate()
    url = stream_url(task)
    async with aconnect_sse(client, "GET", url) as early_source:
        early = SSEReader(early_source)
        first = await early.next()
        assert (first.event, first.id) == ("start", "1")
        await asyncio.sleep(3 * SignalTask.poll_seconds)  # the task is now well into its wait
        async with aconnect_sse(client, "GET", url) as late_source:
            late = SSEReader(late_source)
            latest = await late.next()
            # The seed's bug: a joiner got nothing until the next event. It must get the latest one,
            # the very event the early client got (same id and timestamp), not a copy of it.
            assert (latest.event, latest.id, latest.data) == (first.event, first.id, first.data)
            await release(task, "go")
            late_rest = await late.until_terminal()
        early_rest = await early.until_terminal()
    assert [(e.event, e.id) for e in late_rest] == [("released", "2"), ("complete", "3")]
    assert [(e.event, e.id, e.data) for e in early_rest] == [(e.event, e.id, e.data) for e in late_rest]


@pytest.mark.clause("W1")
@http
async def test_headers_and_keepalive_arrive_before_any_event(client: httpx.AsyncClient) -> None:
    # Resuming after the task's first event (id 1) leaves this client nothing to receive until the
    # task is released: whatever arrives before that is the server's own doing.
    task = await SignalTask.objects.acreate()
    async with client.stream("GET", stream_url(task), headers={"Last-Event-ID": "1"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        lines = LineReader(response)
        assert await lines.next(timeout=2.0) == ": connected"
        comments = []
        for _ in range(2):  # two keep-alives: the stream stays idle and open, and keeps saying so
            comments.append(await lines.next_nonblank(timeout=KEEPALIVE_SECONDS + 2.0))
        assert comments == [": keepalive", ": keepalive"]
        await release(task, [1, 2])
        rest = await lines.rest()
    events = [line for line in rest if line and not line.startswith(":")]
    assert events[:2] == ["id: 2", "event: released"]
    assert events[3:5] == ["id: 3", "event: complete"]
    assert len(events) == 6 and "id: 1" not in events


# -- the end of a task: completion and failure ----------------------------------------------------


@http
async def test_finished_task_answers_json_with_final_state(client: httpx.AsyncClient) -> None:
    task = await ExampleTask.objects.acreate(message="done")
    async with aconnect_sse(client, "GET", stream_url(task)) as source:
        events = await SSEReader(source).rest()
    assert events[-1].event == "complete"
    row = await wait_finished(task)

    response = await client.get(stream_url(task))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == "completed"
    assert body["final_value"] == {"status": "completed", "message": "done"}
    assert datetime.fromisoformat(body["completed_at"]) == row.completed_at
    assert "error" not in body


@http
async def test_get_right_after_the_terminal_event_answers_the_final_state(client: httpx.AsyncClient) -> None:
    # The terminal event is logged, then delivered, then the outcome stored on the row: a GET in
    # that moment gets the same terminal event over SSE, afterwards the JSON final state.
    for _ in range(3):
        task = await ExampleTask.objects.acreate(message="no window")
        async with aconnect_sse(client, "GET", stream_url(task)) as source:
            terminal = (await SSEReader(source).rest())[-1]
        assert terminal.event == "complete"
        async with aconnect_sse(client, "GET", stream_url(task)) as source:
            if source.response.headers["content-type"].startswith("text/event-stream"):
                again = await SSEReader(source).rest()
                assert [(e.event, e.id) for e in again] == [("complete", terminal.id)]
            else:
                assert source.response.headers["content-type"] == "application/json"
                assert json.loads(await source.response.aread())["status"] == "completed"
        await wait_finished(task)
        response = await client.get(stream_url(task))
        assert response.headers["content-type"] == "application/json", response.text
        assert response.json()["status"] == "completed"


@http
async def test_failing_task_ends_with_error_and_is_not_run_again(client: httpx.AsyncClient) -> None:
    task = await FailingTask.objects.acreate(message="kaboom")
    url = stream_url(task)
    async with aconnect_sse(client, "GET", url) as source:
        reader = SSEReader(source)
        events = await reader.until_terminal()
        assert await reader.rest() == []
    assert [(e.event, e.id) for e in events] == [("start", "1"), ("error", "2")]
    assert assert_metadata(events[-1], task) == {"message": "kaboom", "error_type": "RuntimeError"}

    row = await wait_finished(task)
    assert row.status == "failed"
    assert row.error == {"message": "kaboom", "error_type": "RuntimeError"}
    for _ in range(3):
        response = await client.get(url)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {
            "status": "failed", "final_value": None, "completed_at": None,
            "error": {"message": "kaboom", "error_type": "RuntimeError"},
        }
    # A reconnecting client gets the recorded terminal event, not a new run's `start`.
    async with aconnect_sse(client, "GET", url, headers={"Last-Event-ID": "0"}) as source:
        replay = await SSEReader(source).rest()
    assert [(e.event, e.id, e.data) for e in replay] == [("error", "2", events[-1].data)]
    again = await FailingTask.objects.aget(pk=task.pk)
    assert (again.status, again.updated_at, again.last_event) == (row.status, row.updated_at, row.last_event)


# -- Last-Event-ID ----------------------------------------------------------------------------------


@pytest.mark.clause("W5")
@http
async def test_resume_with_last_event_id(client: httpx.AsyncClient) -> None:
    task = await SignalTask.objects.acreate()
    url = stream_url(task)
    async with aconnect_sse(client, "GET", url) as source:
        first = await SSEReader(source).next()
    assert (first.event, first.id) == ("start", "1")

    async with aconnect_sse(client, "GET", url, headers={"Last-Event-ID": first.id}) as source:
        reader = SSEReader(source)
        await release(task, "resumed")
        events = await reader.rest()
    assert [(e.event, e.id) for e in events] == [("released", "2"), ("complete", "3")]
    await wait_finished(task)

    # After the end: the terminal id means "I have it all" (204: stop reconnecting) ...
    response = await client.get(url, headers={"Last-Event-ID": "3"})
    assert response.status_code == 204
    assert response.content == b""
    # ... an older id gets the terminal event it missed, and only that.
    for older in ("2", "1", "0"):
        async with aconnect_sse(client, "GET", url, headers={"Last-Event-ID": older}) as source:
            replay = await SSEReader(source).rest()
        assert [(e.event, e.id, e.data) for e in replay] == [("complete", "3", events[-1].data)]


@http
@pytest.mark.parametrize("last_event_id", ["abc", "-5", "1e3", "99999999999999999999999", ""])
async def test_foreign_last_event_id_is_a_hint_not_an_error(
    client: httpx.AsyncClient, last_event_id: str
) -> None:
    task = await ExampleTask.objects.acreate(message="foreign id")
    async with aconnect_sse(client, "GET", stream_url(task)) as source:
        await SSEReader(source).rest()
    await wait_finished(task)
    response = await client.get(stream_url(task), headers={"Last-Event-ID": last_event_id})
    assert response.status_code in (200, 204)
    if response.status_code == 200:
        assert response.headers["content-type"] == "text/event-stream"
        assert "event: complete" in response.text


# -- bad requests ---------------------------------------------------------------------------------

BAD_REQUESTS = [
    # (method, path, status)
    ("GET", "/stream/nope/Nope/1", 404),
    ("GET", "/stream/example/Nope/1", 404),
    ("GET", "/stream/streaming/StreamTask/1", 404),  # abstract: not a model one can stream
    ("GET", "/stream/streaming/MadeUpTask/1", 404),
    ("GET", "/stream/example/ExampleTask/987654321012", 404),  # no such row
    ("GET", "/stream/example/ExampleTask/9223372036854775807", 404),  # largest id; no such row
    ("GET", "/stream/example/ExampleTask/0", 404),
    ("GET", "/stream/example/ExampleTask", 404),
    ("GET", "/stream/example/ExampleTask/1/extra", 404),
    ("GET", "/nothing/here", 404),
    ("GET", "/stream/example/ExampleTask/abc", 400),
    ("GET", "/stream/example/ExampleTask/-1", 400),
    ("GET", "/stream/example/ExampleTask/1.5", 400),
    ("GET", "/stream/example/ExampleTask/1e3", 400),
    ("GET", "/stream/example/ExampleTask/99999999999999999999999", 400),
    ("GET", "/stream/example/ExampleTask/9223372036854775808", 400),  # one past the largest id
    ("GET", "/stream/nope/Nope/abc", 400),
    ("POST", "/stream/example/ExampleTask/1", 405),
    ("PUT", "/stream/example/ExampleTask/1", 405),
    ("DELETE", "/stream/example/ExampleTask/1", 405),
    ("POST", "/health", 405),
]


@pytest.mark.clause("W4")
@http
@pytest.mark.parametrize(("method", "path", "status"), BAD_REQUESTS)
async def test_bad_requests_get_clean_errors(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    response = await client.request(method, path)
    assert_clean_error(response, status)
    if status == 405:
        assert "GET" in response.headers["allow"]


@http
async def test_health(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert (response.status_code, response.text) == (200, "OK")
    head = await client.head("/health")
    assert (head.status_code, head.content) == (200, b"")


# -- the connection limit -------------------------------------------------------------------------


@http
async def test_connection_limit_answers_503_and_frees_slots(limited_server: ServerProcess) -> None:
    tasks = [await SignalTask.objects.acreate() for _ in range(LIMITED_MAX_STREAMS + 2)]
    finished = await ExampleTask.objects.acreate(
        message="finished", status="completed", completed_at=timezone.now(), final_value=1
    )
    async with limited_server.client() as client:
        try:
            async with contextlib.AsyncExitStack() as stack:
                readers = []
                for task in tasks[:LIMITED_MAX_STREAMS]:
                    source = await stack.enter_async_context(aconnect_sse(client, "GET", stream_url(task)))
                    assert source.response.status_code == 200
                    reader = SSEReader(source)
                    assert (await reader.next()).event == "start"  # its slot is taken
                    readers.append(reader)

                refused = await client.get(stream_url(tasks[LIMITED_MAX_STREAMS]))
                assert_clean_error(refused, 503)
                assert refused.headers["retry-after"] == str(LIMITED_RETRY_AFTER)
                # A request turned away starts nothing: that task is still pending in the database.
                turned_away = await SignalTask.objects.aget(pk=tasks[LIMITED_MAX_STREAMS].pk)
                assert turned_away.status == "pending"
                # What needs no stream slot is still answered at the limit.
                assert (await client.get(stream_url(finished))).json()["final_value"] == 1
                assert (await client.get("/stream/example/ExampleTask/abc")).status_code == 400
                assert (await client.get("/health")).status_code == 200

                # One client goes away: the server notices the disconnect and frees its slot.
                await readers[0].response.aclose()
                accepted = await _open_when_accepted(client, stream_url(tasks[-1]), timeout=5.0)
                assert (await accepted.next()).event == "start"
                await accepted.response.aclose()
        finally:
            for task in tasks:
                await release(task)


async def _open_when_accepted(client: httpx.AsyncClient, url: str, timeout: float) -> SSEReader:
    """Open a stream, retrying while the server answers 503; fail if it still does after `timeout`."""
    statuses = []
    async with asyncio.timeout(timeout):
        while True:
            request = client.build_request("GET", url, headers={"Accept": "text/event-stream"})
            response = await client.send(request, stream=True)
            statuses.append(response.status_code)
            if response.status_code == 200:
                return SSEReader(EventSource(response))
            await response.aclose()
            assert response.status_code == 503, statuses
            await asyncio.sleep(0.05)


# -- the command: Unix socket, bad arguments, bad settings ----------------------------------------


@http
async def test_runserver_stream_serves_over_unix_socket() -> None:
    with tempfile.TemporaryDirectory(prefix="ss-") as directory:  # short: socket paths are limited
        socket_path = str(Path(directory) / "stream.sock")
        server = start_server(socket_path=socket_path)
        try:
            assert await asyncio.to_thread(Path(socket_path).is_socket)
            task = await ExampleTask.objects.acreate(message="over a socket")
            async with server.client() as client:
                assert (await client.get("/health")).text == "OK"
                async with aconnect_sse(client, "GET", stream_url(task)) as source:
                    events = await SSEReader(source).rest()
            assert [e.event for e in events] == EXAMPLE_EVENTS
        finally:
            # uvicorn shuts down gracefully, then re-raises SIGTERM: -15 is a clean stop, -9 is not.
            assert stop_server(server) in (0, -signal.SIGTERM), server.process.returncode


def _spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(manage_command(*args), env=server_env(env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(processes: list[subprocess.Popen], timeout: float = 20.0) -> list[tuple[int, str]]:
    """Exit status and output of each process; any still running after `timeout` is killed."""
    results = []
    try:
        for process in processes:
            try:
                out, err = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"{process.args} did not exit: it should refuse to start") from None
            results.append((process.returncode, out + err))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    return results


@http
def test_runserver_stream_rejects_bad_arguments_and_settings(tmp_path: Path) -> None:
    """Each of these must stop at once with a one-line CommandError (exit status 1), no traceback
    and no server; started all together to keep the test fast."""
    cases = [
        (["--port", "0"], {}, "--port must be a number from 1 to 65535, got '0'"),
        (["--port", "70000"], {}, "--port must be a number from 1 to 65535, got '70000'"),
        (["--port", "abc"], {}, "--port must be a number from 1 to 65535, got 'abc'"),
        (["--port", str(free_port())], {"STREAMING_MAX_STREAMS": "0"},
         "STREAMING_MAX_STREAMS must be a positive integer, got 0"),
        (["--port", str(free_port())], {"STREAMING_KEEPALIVE_SECONDS": "-1"},
         "STREAMING_KEEPALIVE_SECONDS must be a positive finite number, got -1.0"),
        (["--socket", "/nonexistent-dir-for-streamspec/stream.sock"], {},
         "--socket: directory /nonexistent-dir-for-streamspec does not exist"),
        (["--port", str(free_port()), "--workers", "0"], {},
         "--workers must be a number from 1 to 64, got '0'"),
        (["--port", str(free_port()), "--workers", "two"], {},
         "--workers must be a number from 1 to 64, got 'two'"),
        (["--port", str(free_port())], {"DATABASE_URL": "sqlite:////nonexistent-dir-for-streamspec/db.sqlite3"},
         "cannot use the database sqlite3 /nonexistent-dir-for-streamspec/db.sqlite3: unable to open"),
        (["--port", str(free_port())], {"DATABASE_URL": f"sqlite:///{tmp_path}/never-migrated.sqlite3"},
         f"cannot use the database sqlite3 {tmp_path}/never-migrated.sqlite3: no such table"),
    ]
    processes = [_spawn("runserver_stream", *args, env=env) for args, env, _ in cases]
    for (returncode, output), (args, env, message) in zip(_finish(processes), cases, strict=True):
        assert returncode == 1, (args, env, output)
        assert f"CommandError: {message}" in output, (args, env, output)
        assert "Traceback" not in output, output
        assert "Starting streaming server" not in output


@http
def test_bad_streaming_environment_is_a_clear_settings_error() -> None:
    cases = [
        ({"STREAMING_MAX_STREAMS": "abc"},
         "STREAMING_MAX_STREAMS (environment) must be an integer, got 'abc'"),
        ({"STREAMING_CLIENT_BUFFER": "1.5"},
         "STREAMING_CLIENT_BUFFER (environment) must be an integer, got '1.5'"),
        ({"STREAMING_KEEPALIVE_SECONDS": "soon"},
         "STREAMING_KEEPALIVE_SECONDS (environment) must be a number, got 'soon'"),
        ({"STREAMING_KEEPALIVE_SECONDS": "nan"},
         "STREAMING_KEEPALIVE_SECONDS (environment) must be a finite number, got 'nan'"),
        ({"STREAMING_RETRY_AFTER_SECONDS": ""},
         "STREAMING_RETRY_AFTER_SECONDS (environment) must be an integer, got ''"),
        ({"STREAMING_EVENT_LOG": "maybe"},
         "STREAMING_EVENT_LOG (environment) must be one of 1, true, yes, on, 0, false, no, off, got 'maybe'"),
        ({"STREAMING_OVERFLOW_NOTICE": "shout"},
         "STREAMING_OVERFLOW_NOTICE must be one of 'overflow', 'error', 'close', got 'shout'"),
        ({"STREAMING_ACCESS": "anyone"}, "STREAMING_ACCESS must be one of 'signed', 'open', got 'anyone'"),
        ({"STREAMING_URL_MAX_AGE": "-5"}, "STREAMING_URL_MAX_AGE must be a positive finite number, got -5.0"),
    ]
    processes = [_spawn("runserver_stream", "--port", str(free_port()), env=env) for env, _ in cases]
    for (returncode, output), (env, message) in zip(_finish(processes), cases, strict=True):
        assert returncode != 0, (env, output)
        # A value that is not a number fails as the settings load; one out of range as the
        # command checks the app's settings (a one-line CommandError).
        assert any(f"{kind}: {message}" in output for kind in ("ImproperlyConfigured", "CommandError")), (
            env, output)
        assert "Starting streaming server" not in output


def test_every_streaming_setting_comes_from_the_environment() -> None:
    # The README says each STREAMING_* setting may be given as an environment variable: walk them
    # all, each set to a value that is not its default, and read what the app ends up with.
    from reference_impl.streaming.conf import DEFAULTS

    chosen = {
        "STREAMING_CLIENT_BUFFER": ("7", 7), "STREAMING_CLIENT_BUFFER_BYTES": ("65536", 65536),
        "STREAMING_MAX_STREAMS": ("9", 9),
        "STREAMING_KEEPALIVE_SECONDS": ("2.5", 2.5), "STREAMING_RETRY_AFTER_SECONDS": ("4", 4),
        "STREAMING_EVENT_LOG": ("off", False), "STREAMING_LOG_ON_LOOP": ("0", False),
        "STREAMING_LEASE_SECONDS": ("3", 3.0), "STREAMING_POLL_SECONDS": ("0.25", 0.25),
        "STREAMING_PUSH": ("no", False),
        "STREAMING_BATCH_SECONDS": ("0", 0.0), "STREAMING_OVERFLOW_NOTICE": ("close", "close"),
        "STREAMING_ACCESS": ("open", "open"), "STREAMING_URL_MAX_AGE": ("60", 60.0),
    }
    assert set(chosen) == set(DEFAULTS), "a setting was added: give it a value here"
    assert all(DEFAULTS[name] != value for name, (_, value) in chosen.items())
    script = (
        "import dataclasses, json, django; django.setup()\n"
        "from reference_impl.streaming.conf import streaming_settings\n"
        "print(json.dumps(dataclasses.asdict(streaming_settings())))\n"
    )
    env = server_env({name: raw for name, (raw, _) in chosen.items()})
    env["DJANGO_SETTINGS_MODULE"] = "reference_impl.settings"
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    fields = {"STREAMING_" + key.upper(): value for key, value in got.items()}
    assert fields == {name: value for name, (_, value) in chosen.items()}


# -- in-process: both ASGI front ends -------------------------------------------------------------


@pytest.fixture
async def coordinator_idle() -> AsyncIterator[None]:
    """In-process tests run tasks on this test's event loop: let them finish before it closes, and
    check they left the in-process coordinator holding what it held before (S8)."""
    from reference_impl.streaming.coordinator import coordinator

    before = coordinator.resources()
    yield
    await wait_until(lambda: coordinator.resources() == before,
                     f"the in-process coordinator holding {before} again")


def _asgi_apps() -> dict[str, tuple[Any, Any]]:
    """name -> (ASGI app, the StreamLimiter it counts open streams with)."""
    from reference_impl.asgi import application
    from reference_impl.streaming import server, views

    return {"server": (server.app, server.app.limiter), "django": (application, views.limiter)}


@pytest.fixture(params=["server", "django"])
def front_end(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any]]:
    """(ASGI app, its StreamLimiter). Django's app routes with the reference's URLconf, whatever
    settings the session configured (the harness's have no ROOT_URLCONF)."""
    with override_settings(ROOT_URLCONF="reference_impl.urls"):
        yield _asgi_apps()[request.param]


@pytest.fixture
async def asgi_client(
    front_end: tuple[Any, Any], coordinator_idle: None
) -> AsyncIterator[httpx.AsyncClient]:
    app, limiter = front_end
    open_before = limiter.open
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=5.0) as client:
        yield client
    assert limiter.open == open_before, "a finished stream kept its slot"


async def test_asgi_full_stream(asgi_client: httpx.AsyncClient) -> None:
    task = await ExampleTask.objects.acreate(message="in process")
    async with asyncio.timeout(5.0):
        response = await asgi_client.get(stream_url(task))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.text.startswith(": connected\n\n")
    frames = [f for f in response.text.split("\n\n") if f and not f.startswith(":")]
    assert [f.split("\n")[1] for f in frames] == [f"event: {kind}" for kind in EXAMPLE_EVENTS]
    assert [f.split("\n")[0] for f in frames] == [f"id: {n}" for n in range(1, 6)]
    data = [json.loads(f.split("\n")[2].removeprefix("data: ")) for f in frames]
    assert data[-1]["message"] == "in process" and data[-1]["_task_id"] == task.pk


async def test_asgi_finished_task(asgi_client: httpx.AsyncClient) -> None:
    completed_at = timezone.now()
    task = await ExampleTask.objects.acreate(
        message="already done", status="completed", completed_at=completed_at, final_value={"n": 3},
        last_event={"type": "complete", "data": {"final_value": {"n": 3}}, "timestamp": None, "id": 7},
    )
    response = await asgi_client.get(stream_url(task))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"status": "completed", "final_value": {"n": 3},
                               "completed_at": completed_at.isoformat()}
    assert (await asgi_client.get(stream_url(task), headers={"Last-Event-ID": "7"})).status_code == 204
    replay = await asgi_client.get(stream_url(task), headers={"Last-Event-ID": "6"})
    assert replay.headers["content-type"] == "text/event-stream"
    assert "id: 7\nevent: complete\n" in replay.text


async def test_asgi_failed_task(asgi_client: httpx.AsyncClient) -> None:
    task = await FailingTask.objects.acreate(message="in-process failure")
    async with asyncio.timeout(5.0):
        response = await asgi_client.get(stream_url(task))
    assert "event: error" in response.text
    row = await wait_finished(task)
    assert row.status == "failed"
    body = (await asgi_client.get(stream_url(task))).json()
    assert body["status"] == "failed"
    assert body["error"] == {"message": "in-process failure", "error_type": "RuntimeError"}


@pytest.mark.parametrize(("method", "path", "status"), BAD_REQUESTS)
async def test_asgi_bad_requests(asgi_client: httpx.AsyncClient, method: str, path: str, status: int) -> None:
    assert_clean_error(await asgi_client.request(method, path), status)


async def _drive(app: Any, path: str, disconnect: asyncio.Event, sent: list[dict]) -> None:
    """Run one GET through an ASGI app by hand: unlike ASGITransport, it can disconnect mid-stream."""
    requested = False

    async def receive() -> dict:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    path, _, query = path.partition("?")
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "", "headers": [(b"host", b"localhost")], "client": ("127.0.0.1", 50000),
        "server": ("localhost", 80),
    }
    await app(scope, receive, send)


async def test_asgi_disconnect_frees_the_slot_and_detaches(
    front_end: tuple[Any, Any], coordinator_idle: None
) -> None:
    import django

    from reference_impl.streaming.coordinator import coordinator
    from reference_impl.streaming.server import app as server_app

    app, limiter = front_end
    open_before = limiter.open
    task = await SignalTask.objects.acreate()
    disconnect, sent = asyncio.Event(), []
    request = asyncio.ensure_future(_drive(app, stream_url(task), disconnect, sent))
    try:
        await wait_until(lambda: b"event: start" in b"".join(m.get("body", b"") for m in sent),
                         "the stream's first event")
        assert sent[0]["status"] == 200
        assert (limiter.open, coordinator.resources()["clients"]) == (open_before + 1, 1)
        disconnect.set()
        if app is not server_app and django.VERSION < (5, 0):
            # Django before 5.0 does not watch for a disconnect while it streams a response (see
            # README): the slot and the client are freed when the stream ends, not before.
            await SignalTask.release(task.pk)
        async with asyncio.timeout(5.0):
            await request
        # The stream's slot and client are gone (the task runs on where Django noticed at once).
        assert (limiter.open, coordinator.resources()["clients"]) == (open_before, 0)
        if app is server_app or django.VERSION >= (5, 0):
            assert coordinator.resources()["tasks"] == 1
    finally:
        request.cancel()
        await SignalTask.release(task.pk)


async def test_asgi_health(asgi_client: httpx.AsyncClient) -> None:
    response = await asgi_client.get("/health")
    assert (response.status_code, response.text) == (200, "OK")
    assert (await asgi_client.head("/health")).status_code == 200


# -- what an EventSource sees: late joiners and deploys (the HTTP mode's W1 and W6) ----------------


@http
@pytest.mark.parametrize(("model", "terminal"), [(ExampleTask, "complete"), (FailingTask, "error")])
async def test_an_sse_client_joining_a_finished_task_gets_its_terminal_event(
    client: httpx.AsyncClient, model: type[Model], terminal: str
) -> None:
    # An EventSource fails on any content type but text/event-stream: it asks for that one, and
    # gets the task's end as an event (a plain GET still gets the JSON document, above).
    task = await model.objects.acreate(message="done")
    async with aconnect_sse(client, "GET", stream_url(task)) as source:
        first = await SSEReader(source).rest()
    await wait_finished(task)
    async with aconnect_sse(client, "GET", stream_url(task)) as source:
        assert source.response.headers["content-type"].startswith("text/event-stream")
        late = await SSEReader(source).rest()
    assert [(e.event, e.id) for e in late] == [(terminal, first[-1].id)]


@http
def _workers(pid: int) -> list[str]:
    """The worker processes of a server: its children that multiprocessing spawned (not its
    resource tracker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_ends_open_streams_at_once_with_a_retry_hint(workers: int) -> None:
    # uvicorn's graceful shutdown waits for every response to end, and a stream never ends by
    # itself: the server ends them first, telling browsers to come back (to another worker).
    # With --workers the supervisor passes the signal on, and each worker ends its own streams.
    server = start_server({"STREAMING_RETRY_AFTER_SECONDS": "2"}, args=("--workers", str(workers)))
    try:
        if workers > 1:
            assert len(_workers(server.process.pid)) == workers
        tasks = [await SignalTask.objects.acreate() for _ in range(2 * workers)]
        async with server.client() as client, contextlib.AsyncExitStack() as stack:
            readers = []
            for task in tasks:
                source = await stack.enter_async_context(aconnect_sse(client, "GET", stream_url(task)))
                reader = SSEReader(source)
                assert (await reader.next()).event == "start"
                readers.append(reader)
            server.process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(10):  # a bound, not a measurement: uvicorn waits 5 s at most
                rests = [[e async for e in reader._events] for reader in readers]
        assert all([e.retry for e in rest] == [2000] for rest in rests), rests
        async with asyncio.timeout(10):
            while server.process.poll() is None:
                await asyncio.sleep(0.02)
        server.output.seek(0)
        output = server.output.read().decode(errors="replace")
    finally:
        code = stop_server(server)
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled, once shut down
    # Before: uvicorn waited out its graceful timeout, then cancelled the stream with a traceback.
    assert "timeout graceful shutdown exceeded" not in output, output
    assert "Traceback" not in output, output
