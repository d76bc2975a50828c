"""Server processes of the implementation under test: started, health-checked, stopped, killed.

Each server runs in a session of its own (its own process group), so a kill reaches every process
it started (uvicorn workers included). Every server this module starts is registered until it is
reaped, and an exit hook kills what is left: no run, passed, failed or interrupted, leaves a
process or a port behind.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import httpx

from harness.errors import ConfigError
from harness.spec import SHUTDOWN_BOUND
from harness.wire.link import CONTROL_ENV, PROCESS_ENV

START_TIMEOUT = 30.0
"""Seconds a server gets to answer its health check (Django setup and uvicorn take about one)."""
SETTINGS_MODULE = "harness.wire.server_settings"
_ROOT = str(Path(__file__).resolve().parents[2])
"""The folder holding the `harness` package: on the servers' path, so a source checkout works."""

_live: set[subprocess.Popen[bytes]] = set()
_CONTROL_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F) if chr(c) not in "\n\t"}


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        process.wait(timeout=5)


@atexit.register
def _reap_all() -> None:
    for process in list(_live):
        _kill_group(process)
        _live.discard(process)


_launching = False
"""True between starting a server and registering it: a signal then waits until it is registered."""
_deferred: list[tuple[int, Any]] = []
_previous: dict[int, Any] = {}
"""The handler SIGTERM and SIGHUP had before the reaper: called after it (coverage's, say)."""


def _on_signal(signum: int, frame: Any) -> None:
    """SIGTERM, SIGHUP or SIGINT to the harness: kill its servers first (atexit does not run on a
    signal), then do what the signal did before. A signal that comes while a server is being
    started (its process exists, but is not registered yet) is acted on once it is registered."""
    if _launching:
        _deferred.append((signum, frame))
        return
    _act_on(signum, frame)


def _act_on(signum: int, frame: Any) -> None:
    _reap_all()
    if signum == signal.SIGINT:
        # What Python's own handler does. Not the handler that was there before: inside
        # asyncio.run that is the runner's, which outlives its loop and would then do nothing.
        raise KeyboardInterrupt
    previous = _previous.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)  # e.g. coverage's, which saves its data and ends the process
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_reaper() -> None:
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        current = signal.getsignal(signum)
        if current is _on_signal or current is signal.SIG_IGN or current is None:
            continue
        _previous[signum] = current  # (SIGINT's is not called: see _act_on)
        signal.signal(signum, _on_signal)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_HELD = {"01", "08"}
"""TCP states of a socket its process still holds: ESTABLISHED, CLOSE_WAIT (the peer closed, the
process has not). TIME_WAIT and FIN_WAIT belong to the kernel once the process closed."""


def open_connections(port: int) -> int | None:
    """How many connections whose local port is `port` are held open (see `_HELD`); None if the
    kernel's tables cannot be read. Every server's port is its own (`free_port`), so the count is
    the server side of the harness's clients."""
    count, read = 0, False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        read = True
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] in _HELD and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count if read else None


def server_command(adapter: Any, host: str, port: int) -> list[str]:
    """How to start one server of `adapter`'s implementation: its ``http_command(host, port)``,
    else its ``runserver_stream`` management command (the seed's API)."""
    hook = getattr(adapter, "http_command", None)
    if callable(hook):
        return [str(part) for part in hook(host, port)]
    return [sys.executable, "-m", "django", "runserver_stream", "--host", host, "--port", str(port)]


class Server:
    """One server process, named like a simulated process (p0, p1, ...)."""

    def __init__(self, name: str, adapter: Any, sut: str, database_url: str, control: str,
                 log_dir: str, extra_env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.health_path = str(getattr(adapter, "health_path", "/health"))
        self.command = server_command(adapter, "127.0.0.1", self.port)
        path = os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH", "")) if p)
        self.env = {
            **os.environ, **{str(k): str(v) for k, v in (getattr(adapter, "http_env", None) or {}).items()},
            **(extra_env or {}),
            "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE, "STREAMSPEC_SUT": sut, "DATABASE_URL": database_url,
            CONTROL_ENV: control, PROCESS_ENV: name, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path,
        }
        self.log_path = Path(log_dir) / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.state = "new"
        """new, up, terminating, stopped (after SIGTERM), killed."""
        self._log: IO[bytes] | None = None

    def _launch(self) -> subprocess.Popen[bytes]:
        global _launching
        _install_reaper()
        self._log = open(self.log_path, "ab")
        _launching = True
        try:
            process = subprocess.Popen(
                self.command, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
            _live.add(process)
        finally:
            _launching = False
        if _deferred:
            _act_on(*_deferred.pop())
        return process

    async def start(self, bound: float = START_TIMEOUT) -> None:
        """Start the server and wait until it answers its health check (ConfigError if it exits
        or does not answer within `bound` seconds, with the tail of its output)."""
        self.process = self._launch()
        deadline = time.monotonic() + bound
        async with httpx.AsyncClient(timeout=1.0) as client:
            while True:
                if self.process.poll() is not None:
                    self._reaped()
                    raise ConfigError(
                        f"server {self.name} ({' '.join(self.command)}) exited with code "
                        f"{self.process.returncode} before answering {self.health_path}:\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    response = await client.get(self.base_url + self.health_path)
                    if response.status_code < 500:
                        self.state = "up"
                        return
                if time.monotonic() > deadline:
                    self.kill()
                    raise ConfigError(
                        f"server {self.name} did not answer {self.health_path} within {bound:.0f} s:\n"
                        f"{self.log_tail()}"
                    )
                await asyncio.sleep(0.05)

    def kill(self) -> None:
        """kill -9 of the server and everything it started."""
        if self.process is not None and self.state not in ("killed", "stopped"):
            self.state = "killed"
            _kill_group(self.process)
            self._reaped()

    async def terminate(self, bound: float = SHUTDOWN_BOUND) -> float | None:
        """SIGTERM, then wait up to `bound` seconds: the seconds it took, or None if the server
        had to be killed (a shutdown that hung)."""
        if self.process is None or self.state in ("killed", "stopped"):
            return 0.0
        self.state = "terminating"
        began = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        while time.monotonic() - began < bound:
            if self.process.poll() is not None:
                self.state = "stopped"
                self._reaped()
                return time.monotonic() - began
            await asyncio.sleep(0.02)
        self.state = "killed"
        _kill_group(self.process)
        self._reaped()
        return None

    def _reaped(self) -> None:
        if self.process is not None:
            _live.discard(self.process)
            # Children of a server that exited on its own may be left in its group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None

    def open_connections(self) -> int | None:
        """TCP connections to this server's port that the server side still holds open
        (established, or closed by the client and not yet by the server), from the kernel's
        tables; None where there are none to read (not Linux)."""
        return open_connections(self.port)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no output)"
        # A hostile request's path can put control characters (a NUL) into the log: shown escaped,
        # so that the reports stay text.
        text = text.translate(_CONTROL_ESCAPES)
        return "\n".join(text.splitlines()[-lines:]) or "(no output)"

