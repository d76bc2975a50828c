"""Helpers for HTTP tests: run the reference server as a real process, and read SSE with bounds.

`start_server()` runs ``python reference_impl/manage.py runserver_stream`` (the project's own
command) in a subprocess that inherits the test process's environment, DATABASE_URL included, so
the test and the server see the same rows. It waits for ``GET /health`` and fails with the
server's output if the server does not come up. `stop_server()` sends SIGTERM, then kills.

Every read here is bounded: nothing in a test can wait forever on a server that stopped talking.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
from httpx_sse import EventSource, ServerSentEvent

REPO_ROOT = Path(__file__).resolve().parent.parent
MANAGE_PY = REPO_ROOT / "reference_impl" / "manage.py"

TERMINAL_EVENTS = frozenset({"complete", "error"})
START_TIMEOUT = 20.0
"""Seconds a server gets to answer /health (Django setup and uvicorn start take about one)."""
STOP_TIMEOUT = 8.0
"""Seconds between SIGTERM and SIGKILL; longer than uvicorn's graceful shutdown (5 s)."""
READ_TIMEOUT = 5.0
"""Default bound of one read from a server; generous, a passing test never gets near it."""

# Settings of the servers the fixtures in tests/conftest.py start (as STREAMING_* variables).
KEEPALIVE_SECONDS = 0.3
"""STREAMING_KEEPALIVE_SECONDS of `http_server`: short, so a test sees keep-alive comments."""
LIMITED_MAX_STREAMS = 2
"""STREAMING_MAX_STREAMS of `limited_server`."""
LIMITED_RETRY_AFTER = 7
"""STREAMING_RETRY_AFTER_SECONDS of `limited_server` (not the default 1, to see it is honoured)."""


def free_port() -> int:
    """A TCP port that nothing listens on now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manage_command(*args: str) -> list[str]:
    return [sys.executable, str(MANAGE_PY), *args]


def server_env(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "reference_impl.settings")
    from django.conf import settings

    if settings.configured:
        # The server checks the stream URLs the tests sign (StreamTask.stream_url) with its key.
        env.setdefault("DJANGO_SECRET_KEY", settings.SECRET_KEY)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides or {})
    return env


@dataclass
class ServerProcess:
    """A running `runserver_stream` process, reachable over TCP (`base_url`) or a Unix socket."""

    process: subprocess.Popen
    output: IO[bytes]
    base_url: str
    uds: str | None = None
    env: dict[str, str] = field(default_factory=dict, repr=False)  # never print the environment

    def transport(self) -> httpx.AsyncHTTPTransport:
        return httpx.AsyncHTTPTransport(uds=self.uds) if self.uds else httpx.AsyncHTTPTransport()

    def client(self, timeout: float = READ_TIMEOUT, **kwargs) -> httpx.AsyncClient:
        """An async client for this server; every request and read is bounded by `timeout`."""
        return httpx.AsyncClient(
            base_url=self.base_url, transport=self.transport(), timeout=httpx.Timeout(timeout), **kwargs
        )

    def read_output(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        self.output.flush()
        self.output.seek(0)
        return self.output.read().decode(errors="replace")

    @property
    def running(self) -> bool:
        return self.process.poll() is None


def start_server(
    env: Mapping[str, str] | None = None,
    *,
    socket_path: str | None = None,
    timeout: float = START_TIMEOUT,
    args: Sequence[str] = (),
) -> ServerProcess:
    """Start `runserver_stream` on a free TCP port (or on `socket_path`) and wait for /health."""
    if socket_path is None:
        port = free_port()
        where = ["--host", "127.0.0.1", "--port", str(port)]
        base_url, uds = f"http://127.0.0.1:{port}", None
    else:
        where = ["--socket", socket_path]
        base_url, uds = "http://streaming.local", socket_path
    output = tempfile.TemporaryFile()  # a file, not a pipe: a chatty server can never block on it
    full_env = server_env(env)
    process = subprocess.Popen(
        manage_command("runserver_stream", *where, "--log-level", "warning", *args),
        cwd=REPO_ROOT, env=full_env, stdout=output, stderr=subprocess.STDOUT,
    )
    server = ServerProcess(process, output, base_url, uds, full_env)
    try:
        wait_healthy(server, timeout)
    except BaseException:
        stop_server(server)
        raise
    return server


def wait_healthy(server: ServerProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    transport = httpx.HTTPTransport(uds=server.uds) if server.uds else httpx.HTTPTransport()
    last_error: Exception | None = None
    with httpx.Client(base_url=server.base_url, transport=transport, timeout=1.0) as client:
        while time.monotonic() < deadline:
            if not server.running:
                raise RuntimeError(
                    f"runserver_stream exited with status {server.process.returncode} before "
                    f"answering /health; its output:\n{server.read_output()}"
                )
            try:
                response = client.get("/health")
            except httpx.TransportError as exc:
                last_error = exc
            else:
                if response.status_code == 200:
                    return
                last_error = RuntimeError(f"/health answered {response.status_code}: {response.text!r}")
            time.sleep(0.05)
    raise RuntimeError(
        f"runserver_stream did not answer /health within {timeout:.0f} s (last error: {last_error!r}); "
        f"its output:\n{server.read_output()}"
    )


def stop_server(server: ServerProcess, timeout: float = STOP_TIMEOUT) -> int:
    """SIGTERM (uvicorn shuts down gracefully), SIGKILL if it is still there after `timeout`."""
    process = server.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    server.output.close()
    return process.returncode


# -- reading streams --------------------------------------------------------------------------------


class SSEReader:
    """Reads one SSE response event by event, each read bounded by a timeout.

    httpx-sse's `aiter_sse()` can be iterated only once per response, so the reader keeps it."""

    def __init__(self, source: EventSource, timeout: float = READ_TIMEOUT) -> None:
        self.source = source
        self.timeout = timeout
        self._events: AsyncIterator[ServerSentEvent] = source.aiter_sse()

    @property
    def response(self) -> httpx.Response:
        return self.source.response

    async def next(self, timeout: float | None = None) -> ServerSentEvent:
        """The next event; AssertionError if the stream ended, TimeoutError if none came in time."""
        async with asyncio.timeout(self.timeout if timeout is None else timeout):
            while True:
                try:
                    event = await anext(self._events)
                except StopAsyncIteration:
                    raise AssertionError("the stream ended before the expected event") from None
                # httpx-sse dispatches a data-less "message" when a comment block (the server's
                # keep-alive) follows an event that had an id; the SSE spec dispatches nothing
                # then, and the server never sends such an event itself.
                if not (event.event == "message" and event.data == ""):
                    return event

    async def take(self, count: int, timeout: float | None = None) -> list[ServerSentEvent]:
        return [await self.next(timeout) for _ in range(count)]

    async def until_terminal(self, timeout: float | None = None) -> list[ServerSentEvent]:
        """Events up to and including the first `complete` or `error` event."""
        async with asyncio.timeout(self.timeout if timeout is None else timeout):
            events: list[ServerSentEvent] = []
            while not events or events[-1].event not in TERMINAL_EVENTS:
                events.append(await self.next(timeout=None))
            return events

    async def rest(self, timeout: float | None = None) -> list[ServerSentEvent]:
        """Every event until the server ends the response."""
        async with asyncio.timeout(self.timeout if timeout is None else timeout):
            return [event async for event in self._events]


class LineReader:
    """Reads the raw lines of a streamed response (SSE comments included), each read bounded."""

    def __init__(self, response: httpx.Response, timeout: float = READ_TIMEOUT) -> None:
        self.response = response
        self.timeout = timeout
        self._lines = response.aiter_lines()

    async def next(self, timeout: float | None = None) -> str:
        async with asyncio.timeout(self.timeout if timeout is None else timeout):
            try:
                return await anext(self._lines)
            except StopAsyncIteration:
                raise AssertionError("the stream ended before the expected line") from None

    async def next_nonblank(self, timeout: float | None = None) -> str:
        async with asyncio.timeout(self.timeout if timeout is None else timeout):
            while not (line := await self.next(timeout=None)):
                pass
            return line

    async def rest(self, timeout: float | None = None) -> list[str]:
        async with asyncio.timeout(self.timeout if timeout is None else timeout):
            return [line async for line in self._lines]


async def wait_until(predicate: Callable[[], object], what: str, timeout: float = READ_TIMEOUT) -> None:
    """Poll `predicate` until it is true; AssertionError naming `what` if it is not within `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if predicate():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.01)


def event_ids(events: list[ServerSentEvent]) -> list[int]:
    return [int(event.id) for event in events]
