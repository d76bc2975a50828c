"""The HTTP mode end to end: real server processes of the implementation under test, real SSE
clients, the control channel, kills and SIGTERM. Each program runs on fresh servers (seconds each).

Against the reference every observable clause holds; against the upstream package two servers on
one database run the task twice (S4). And whatever happens, no server process is left behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.checkers.base import Verdict
from harness.errors import ConfigError
from harness.wire.run import WireRun
from harness.wire.servers import log_folder
from scenarios.wire import run_wire_program

pytestmark = pytest.mark.http

ROOT = Path(__file__).resolve().parent.parent

def _steps(*steps: tuple) -> list[dict]:
    """Program steps from (op, field=value...) tuples: ("attach", {"process": 1})."""
    return [{"op": op, **fields} for op, fields in steps]


TWO_SERVERS = [{"op": "servers", "count": 2}, *_steps(
    ("attach", {"process": 0}), ("attach", {"process": 1}), ("release", {"count": 2}),
    ("wait", {"seconds": 0.6}), ("attach", {"process": 1}), ("finish_ok", {"how": "complete"}),
)]
KILL_AND_RESTART = [{"op": "servers", "count": 2}, *_steps(
    ("attach", {"process": 0}), ("release", {"count": 1}), ("crash", {"process": 0}),
    ("attach", {"process": 1}), ("attach", {"process": 0}), ("release", {"count": 1}),
    ("finish_ok", {"how": "value"}),
)]
SIGTERM_OPEN_STREAMS = [{"op": "servers", "count": 1}, *_steps(
    ("attach", {"process": 0}), ("attach", {"process": 0}), ("release", {"count": 1}),
    ("shutdown", {"process": 0}), ("attach", {"process": 0}),
)]
BAD_REQUESTS = [{"op": "servers", "count": 1},
                *({"op": "request", "process": 0, "which": i} for i in range(12))]
RECONNECT = [{"op": "servers", "count": 2}, *_steps(
    ("attach", {"process": 0}), ("release", {"count": 2}), ("reconnect", {"client": 0, "process": 1}),
    ("release", {"count": 1}), ("wait", {"seconds": 0.6}),  # p1 relays the owner's events (polling)
    ("reconnect", {"client": 1, "process": 0}), ("finish_ok", {"how": "complete"}),
)]
LEAVERS = [{"op": "servers", "count": 1}, *_steps(
    ("attach", {"process": 0}), ("attach", {"process": 0}), ("release", {"count": 1}),
    ("detach", {"client": 0}), ("stall", {"client": 1}), ("release", {"count": 3}),
    ("finish_fail", {"how": "exception"}), ("attach", {"process": 0}),
)]


def _database_url() -> str:
    return os.environ["DATABASE_URL"]


def run(sut_adapter, program):
    history, results, logs = run_wire_program(sut_adapter, sut_adapter.name, _database_url(), log_folder(),
                                              program)
    return history, {r.clause: r for r in results}, logs


def _server_processes(marker: bytes) -> list[int]:
    """Live processes whose environment holds `marker` (servers inherit the environment of the
    harness that started them, and carry its control address)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().split()[2]
        except OSError:
            continue
        server = b"STREAMSPEC_CONTROL=" in environ
        if server and marker in environ and state != "Z" and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize(
    "program", [KILL_AND_RESTART, SIGTERM_OPEN_STREAMS, BAD_REQUESTS, LEAVERS, RECONNECT],
    ids=["kill_and_restart", "sigterm_open_streams", "bad_requests", "leavers", "reconnect"],
)
def test_the_reference_holds_every_observable_clause(sut_adapter, program):
    if sut_adapter.name != "reference":
        pytest.skip("the reference's own behaviour; upstream's is asserted below")
    history, results, logs = run(sut_adapter, program)
    failed = {c: [v.explanation for v in r.violations]
              for c, r in results.items() if r.verdict is Verdict.FAIL}
    assert not failed, (failed, logs)
    assert history.is_complete
    assert results["W1"].verdict is Verdict.PASS or program is BAD_REQUESTS
    if program is RECONNECT:
        assert results["W5"].verdict is Verdict.PASS and results["W5"].examined["resumed streams"] == 2


def test_two_servers_on_one_database(sut_adapter):
    history, results, _ = run(sut_adapter, TWO_SERVERS)
    runs = {r.process for r in history.records if r.kind == "process_enter"}
    if sut_adapter.name == "reference":
        assert runs in ({"p0"}, {"p1"}), runs  # one run, in whichever server claimed the task
        assert results["S4"].verdict is Verdict.PASS
        assert results["S2"].verdict is Verdict.PASS, results["S2"]  # the other server relays
    else:
        assert runs == {"p0", "p1"}, runs
        assert results["S4"].verdict is Verdict.FAIL
        assert "at the same time" in results["S4"].violations[0].explanation


def test_a_run_leaves_no_server_behind_even_when_it_fails_midway(sut_adapter):
    async def main():
        run = WireRun(sut_adapter, sut_adapter.name, _database_url(), log_folder(), processes=2)
        try:
            await run.open()
            task = await run.create()
            await run.attach(task, 0)
            pids = [s.process.pid for s in run.servers.values()]
            marker = f"STREAMSPEC_CONTROL={run.control.address}".encode()
            with pytest.raises(ConfigError, match="no server process 5"):
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
    child = subprocess.Popen(
        [sys.executable, "-m", "streamspec", "verify", "--sut", sut_adapter.name, "--mode", "http",
         "--profile", "dev", "--seed", "1", "--out", str(tmp_path / "out")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not _server_processes(marker):
            assert child.poll() is None, child.stdout.read().decode()
            assert time.monotonic() < deadline, "no server started"
            time.sleep(0.05)
        child.send_signal(signum)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    deadline = time.monotonic() + 5
    while _server_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _server_processes(marker)
