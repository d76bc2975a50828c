"""A real `runserver_stream` process per implementation, and a minimal SSE client on raw asyncio
streams (far cheaper than a full HTTP client, so that with both on two cores the server, not the
client, is what is measured). Loopback only; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
KEEPALIVE_SECONDS = 0.2
TERMINALS = (b"event: complete\n", b"event: error\n")
_OVERLAP = max(len(marker) for marker in TERMINALS)


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) of a process so far, from /proc; None where there is no /proc."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    output: IO[bytes]
    port: int

    def read_output(self) -> str:
        self.output.flush()
        self.output.seek(0)
        return self.output.read().decode(errors="replace")


def start_server(sut: str, args: tuple[str, ...] = (), settings_json: str | None = None) -> Server:
    """``python -m django runserver_stream`` with the benchmark settings, on a free port; `args`
    for the command (``--workers 2``), `settings_json` for BENCH_DJANGO_SETTINGS (the run's own by
    default)."""
    port = free_port()
    from django.conf import settings

    env = dict(os.environ)
    env.update({
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "DJANGO_SETTINGS_MODULE": "benchmarks.server_settings",
        "STREAMSPEC_SUT": sut,
        "STREAMING_KEEPALIVE_SECONDS": str(KEEPALIVE_SECONDS),
        "PYTHONUNBUFFERED": "1",
    })
    if settings_json is not None:
        env["BENCH_DJANGO_SETTINGS"] = settings_json
    command = [sys.executable, "-m", "django", "runserver_stream", "--host", HOST, "--port", str(port)]
    if sut == "reference":
        command += ["--log-level", "warning", *args]  # upstream's command has no such options
    return _launch(command, port, env)


def start_floor() -> Server:
    """uvicorn serving `benchmarks.floor_app` (the raw baseline of the memory benchmark)."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "benchmarks.floor_app:app", "--host", HOST,
               "--port", str(port), "--log-level", "warning"]
    return _launch(command, port, dict(os.environ))


def _launch(command: list[str], port: int, env: dict[str, str]) -> Server:
    """Start a server and wait for its /health; stopped again if it does not answer."""
    output = tempfile.TemporaryFile()
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    server = Server(process, output, port)
    try:
        _wait_healthy(server)
    except BaseException:
        stop_server(server)
        raise
    return server


def _wait_healthy(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"runserver_stream exited ({server.process.returncode}):\n{server.read_output()}"
            )
        connection = http.client.HTTPConnection(HOST, server.port, timeout=1)
        try:
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.05)
    raise RuntimeError(
        f"runserver_stream did not answer /health in {START_TIMEOUT} s:\n{server.read_output()}"
    )


def stop_server(server: Server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(STOP_TIMEOUT)
    server.output.close()


@dataclass
class StreamResult:
    status: int = 0
    sent_at: float = 0.0
    headers_at: float | None = None
    first_event_at: float | None = None
    terminal_at: float | None = None
    body: bytearray = field(default_factory=bytearray, repr=False)
    error: str | None = None

    def count(self, event_type: str) -> int:
        return self.body.count(f"event: {event_type}\n".encode())

    def comments(self, text: bytes) -> int:
        return self.body.count(text)

    def data_of(self, event_type: str) -> dict | None:
        """The JSON data of the first `event_type` event (chunk framing stripped by the search)."""
        marker = f"event: {event_type}\n".encode()
        at = self.body.find(marker)
        if at < 0:
            return None
        start = self.body.find(b"data: ", at)
        end = self.body.find(b"\n", start)
        try:
            return json.loads(bytes(self.body[start + 6:end]))
        except ValueError:
            return None


def sse_request(port: int, path: str) -> bytes:
    """The GET an EventSource sends for `path` (one request per connection)."""
    return (f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept: text/event-stream\r\n"
            "Connection: close\r\n\r\n").encode()


async def stream(port: int, path: str, limit: float) -> StreamResult:
    """GET an SSE stream and read it until its terminal event (or until it ends, or `limit` s)."""
    result = StreamResult(sent_at=time.monotonic())
    writer = None
    try:
        async with asyncio.timeout(limit):
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(sse_request(port, path))
            result.sent_at = time.monotonic()
            head = await reader.readuntil(b"\r\n\r\n")
            result.headers_at = time.monotonic()
            result.status = int(head.split(b" ", 2)[1])
            body = result.body
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                scan_from = max(0, len(body) - _OVERLAP)
                body += chunk
                if result.first_event_at is None and b"event: " in body:
                    result.first_event_at = time.monotonic()
                if any(body.find(marker, scan_from) >= 0 for marker in TERMINALS):
                    result.terminal_at = time.monotonic()
                    break
    except TimeoutError:
        result.error = "timeout"
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    return result
