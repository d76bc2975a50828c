"""`verify --jobs`: family passes run ahead in worker processes give the result of one process,
and a verify that is stopped takes its workers with it."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from scenarios import verify
from tests.test_cli import ROOT, _cli, live_processes, stop_streamspec


def _runs(tmp_path: Path, sut: str, families: str, seed: str, *, code: int) -> list[tuple[dict, dict]]:
    """The summary (without what depends on the clock or the number of processes) and every failure's
    tape of `streamspec verify` with one process and with two workers, each run a process of its own
    (as a user runs it: nothing an earlier test left in this process can differ)."""
    runs = []
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}"
        done = _cli("verify", "--sut", sut, "--profile", "dev", "--seed", seed, "--families", families,
                    "--out", str(out), "--no-corpus", "--no-repro", "--jobs", jobs)
        assert done.returncode == code, done.stdout + done.stderr
        assert "worker processes stopped" not in done.stdout + done.stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["stats"]["jobs"] == int(jobs)
        for row in summary["clauses"]:
            row.pop("seconds_to_first", None)
        for find in summary["first_finds"].values():
            find.pop("seconds")
        for key in ("seconds", "sut", "folder", "finished_at"):
            summary.pop(key)
        for key in ("examples_per_second", "jobs"):
            summary["stats"].pop(key)
        failures = {p.name: json.loads(p.read_text())["tape"] for p in sorted(out.glob("S*.json"))}
        runs.append((summary, failures))
    return runs


def test_workers_give_the_result_of_one_process(sut_adapter, tmp_path):
    """Against the reference nothing is found and every pass runs in the workers; against upstream
    the first find ends the speculation and the verify process runs the rest itself. Same result."""
    code = 0 if sut_adapter.name == "reference" else 1
    alone, ahead = _runs(tmp_path, sut_adapter.name, "joins,completion,failure", "4", code=code)
    assert ahead == alone


def test_a_mutant_found_with_workers_is_the_one_found_without(tmp_path):
    """The first family (no stalled clients) finds nothing: its passes come from a worker. The
    second finds the unbounded buffer: from there on the verify process runs the search itself. The
    failures, their programs and tapes, and every count of the summary are those of one process."""
    # S8.2 is a SHOULD: exit 0.
    alone, ahead = _runs(tmp_path, "tests.mutants:unbounded_buffers", "failure,slow_readers,reloads", "1",
                         code=0)
    assert "S8.2-bounded-client-buffers.json" in alone[1], "the mutant was not found"
    assert ahead == alone


def test_workers_are_refused_where_they_cannot_be_used(sut_adapter, monkeypatch):
    said: list[str] = []
    monkeypatch.setenv("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
    result = verify(sut_adapter, families=["joins", "failure"], profile="dev", seed=0, jobs=2,
                    sut=sut_adapter.name, progress=said.append)
    assert result.stats["jobs"] == 1
    assert any("one process, not 2: DATABASE_URL names one database" in line for line in said), said


def test_workers_need_the_adapters_name(sut_adapter):
    from harness.errors import UsageError

    with pytest.raises(UsageError, match="jobs > 1 needs sut"):
        verify(sut_adapter, families=["joins", "failure"], profile="dev", seed=0, jobs=2)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL])
def test_a_stopped_verify_takes_its_workers_with_it(tmp_path, signum):
    """Ctrl-C shuts the pool down; a parent killed outright cannot, and its workers notice."""
    tag = f"STREAMSPEC_TEST_TAG={os.getpid()}-{signum}-{time.monotonic_ns()}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STREAMSPEC_TEST_TAG": tag.partition("=")[2]}
    env.pop("DATABASE_URL", None)
    seen: list[float] = []

    def working() -> bool:  # both workers (not the resource tracker), for two seconds
        if len(live_processes(tag.encode(), command=b"spawn_main")) < 2:
            return False
        seen.append(seen[0] if seen else time.monotonic())
        return time.monotonic() - seen[0] > 2

    code, output = stop_streamspec(
        ["verify", "--sut", "reference", "--profile", "ci", "--seed", "1", "--jobs", "2", "--no-corpus",
         "--no-repro", "--out", str(tmp_path / "out")],
        tmp_path, env, signum, working, describe=lambda: _described(tag.encode()))
    # Stopped, not finished: a run that ignored the signal would have ended on its own.
    assert code == (130 if signum == signal.SIGINT else -signal.SIGKILL), output[-3000:]
    assert not (tmp_path / "out" / "summary.json").exists()
    deadline = time.monotonic() + 30
    while live_processes(tag.encode()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not live_processes(tag.encode()), _described(tag.encode()) + output[-3000:]


def _described(tag: bytes) -> str:
    lines = []
    for pid in live_processes(tag):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except OSError:
            continue
        lines.append(f"{pid} {state} {command[:200]}")
    return "\n".join(lines)


def test_a_worker_whose_parent_died_while_it_started_exits():
    """The parent's pid comes from the parent: a worker that starts after its parent was killed
    (its parent is then another process) exits at once instead of waiting on its queue forever."""
    import subprocess
    import sys

    gone = 2**22 + 1  # above Linux's default pid_max: no process has it
    code = ("import multiprocessing, time; from scenarios.parallel import _start_worker; "
            f"_start_worker('reference', multiprocessing.Value('q', 0, lock=False), {gone}); "
            "time.sleep(60); print('still here')")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=50)
    assert done.returncode == 3 and "still here" not in done.stdout, done.stdout + done.stderr
