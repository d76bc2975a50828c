"""The HTTP mode end to end: real server processes of the implementation under test, real SSE
clients, the control channel, kills and SIGTERM. Each program runs on fresh servers (seconds each).

Two servers on one database: the reference runs the task once and relays its events; the upstream
package runs it twice (S4). Whatever happens, no server process is left behind. The reference's
own behaviour over the wire is in tests/test_reference_wire.py."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from harness.checkers.base import Verdict
from harness.errors import UsageError
from harness.wire.run import WireRun
from tests.test_cli import live_processes, stop_streamspec
from tests.wire_support import database_url, run, steps

pytestmark = pytest.mark.http

ROOT = Path(__file__).resolve().parent.parent

TWO_SERVERS = [{"op": "servers", "count": 2}, *steps(
    ("attach", {"process": 0}), ("attach", {"process": 1}), ("release", {"count": 2}),
    ("intrude", {"process": 1, "which": 0}),
    ("wait", {"seconds": 0.6}), ("attach", {"process": 1}), ("finish_ok", {"how": "complete"}),
)]


def _server_processes(marker: bytes) -> list[int]:
    """Live server processes whose environment holds `marker` (servers inherit the environment of
    the harness that started them, and carry its control address)."""
    return live_processes(marker, b"STREAMSPEC_CONTROL=")


def test_two_servers_on_one_database(sut_adapter):
    history, results, _ = run(sut_adapter, TWO_SERVERS)
    runs = {r.process for r in history.records if r.kind == "process_enter"}
    if sut_adapter.name == "reference":
        assert runs in ({"p0"}, {"p1"}), runs  # one run, in whichever server claimed the task
        assert results["S4"].verdict is Verdict.PASS
        assert results["S2"].verdict is Verdict.PASS, results["S2"]  # the other server relays
        assert results["W7"].verdict is Verdict.PASS, results["W7"]  # an unsigned URL is refused
    else:
        assert runs == {"p0", "p1"}, runs
        assert results["S4"].verdict is Verdict.FAIL
        assert "at the same time" in results["S4"].violations[0].explanation
        # It has no access control at all: whoever knows an id reads the task.
        assert results["W7"].verdict is Verdict.FAIL
        assert "no way to refuse a client" in results["W7"].violations[0].explanation


ONE_ROW_TWO_NAMES = [{"op": "servers", "count": 1}, *steps(
    ("attach", {"process": 0}), ("attach", {"process": 0, "spelling": 1}), ("release", {"count": 1}),
    ("finish_ok", {"how": "complete"}),
)]


def test_one_row_named_two_ways_on_one_server(sut_adapter):
    # The model's name in lower case is the same row to Django: the reference runs it once; the
    # upstream package keys its registry on the raw strings and runs a second copy (S4).
    history, results, _ = run(sut_adapter, ONE_ROW_TWO_NAMES)
    runs = [r for r in history.records if r.kind == "process_enter"]
    if sut_adapter.name == "reference":
        assert len(runs) == 1 and results["S4"].verdict is Verdict.PASS, results["S4"]
    else:
        assert len(runs) == 2 and {r.process for r in runs} == {"p0"}, runs
        assert results["S4"].verdict is Verdict.FAIL


def test_a_run_leaves_no_server_behind_even_when_it_fails_midway(sut_adapter, tmp_path):
    async def main():
        run = WireRun(sut_adapter, sut_adapter.name, database_url(), str(tmp_path), processes=2)
        try:
            await run.open()
            task = await run.create()
            await run.attach(task, 0)
            pids = [s.process.pid for s in run.servers.values()]
            marker = f"STREAMSPEC_CONTROL={run.control.address}".encode()
            with pytest.raises(UsageError, match="no server process 5"):
                await run.attach(task, 5)
        finally:
            await run.close()
        return pids, marker

    pids, marker = asyncio.run(main())
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not _server_processes(marker)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_verify_leaves_nothing_behind(sut_adapter, tmp_path, signum):
    tag = f"{os.getpid()}-{signum}-{time.monotonic_ns()}"
    marker = f"STREAMSPEC_TEST_TAG={tag}".encode()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STREAMSPEC_TEST_TAG": tag}
    stop_streamspec(["verify", "--sut", sut_adapter.name, "--mode", "http", "--profile", "dev", "--seed", "1",
                     "--out", str(tmp_path / "out")],
                    tmp_path, env, signum, lambda: bool(_server_processes(marker)))
    assert not (tmp_path / "out" / "summary.json").exists()  # stopped, not finished
    deadline = time.monotonic() + 5
    while _server_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _server_processes(marker)


def test_a_server_log_tail_is_text_even_after_a_hostile_request(tmp_path):
    from harness.wire.servers import Server

    server = Server.__new__(Server)
    server.log_path = tmp_path / "p0.log"
    server.log_path.write_bytes(b'INFO: "GET /stream/a/B/1\x00 HTTP/1.1" 404\r\nnext\tline\n')
    assert server.log_tail() == 'INFO: "GET /stream/a/B/1\\x00 HTTP/1.1" 404\nnext\tline'


def test_connections_a_server_keeps_after_its_client_left_are_counted():
    # A bare socket server that never notices its client leave (W6): the server side of the
    # connection stays in CLOSE_WAIT, held, until the server closes it.
    import socket

    from harness.wire.servers import open_connections

    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        assert open_connections(port) == 0
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        assert open_connections(port) == 1  # established
        client.close()
        time.sleep(0.1)
        assert open_connections(port) == 1  # the client left; the server still holds it
        accepted.close()
        assert open_connections(port) == 0


def test_an_adapter_gives_its_servers_an_environment_but_not_the_harness_own(sut_adapter, tmp_path):
    from harness.wire.servers import Server

    class WithEnv:
        name = sut_adapter.name
        http_env = {"MY_FEATURE_FLAG": "on", "DATABASE_URL": "sqlite:///elsewhere", "WORKERS": 2}

    server = Server("p0", WithEnv(), "reference", "sqlite:///shared", "127.0.0.1:1", str(tmp_path))
    assert server.env["MY_FEATURE_FLAG"] == "on" and server.env["WORKERS"] == "2"
    assert server.env["DATABASE_URL"] == "sqlite:///shared"  # the harness's: every server on one database
