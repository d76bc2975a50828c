"""`verify --jobs`: family passes run ahead in worker processes give the result of one process,
and a verify that is stopped takes its workers with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scenarios import verify
from tests.test_cli import ROOT, _cli

FAMILIES = ["joins", "completion", "failure"]


def _comparable(result) -> dict:
    """A verify result without what depends on the clock or the number of processes."""
    stats = {k: v for k, v in result.stats.items() if k not in ("examples_per_second", "jobs")}
    stats["failures"] = {k: {f: v for f, v in d.items() if f != "seconds_to_first"}
                         for k, d in stats.get("failures", {}).items()}
    failures = {c: (s.failure.program, s.failure.tape.choices) if s.failure else None
                for c, s in result.clauses.items()}
    verdicts = {c: s.verdict for c, s in result.clauses.items()}
    return {"stats": stats, "verdicts": verdicts, "failures": failures}


def test_workers_give_the_result_of_one_process(sut_adapter, monkeypatch):
    """Against the reference nothing is found and every pass runs in the workers; against upstream
    the first find ends the speculation and this process runs the rest itself. Same result."""
    monkeypatch.delenv("DATABASE_URL", raising=False)  # the test session's: the workers make their own
    alone = verify(sut_adapter, families=FAMILIES, profile="dev", seed=4, jobs=1)
    said: list[str] = []
    ahead = verify(sut_adapter, families=FAMILIES, profile="dev", seed=4, jobs=2, sut=sut_adapter.name,
                   progress=said.append)
    assert ahead.stats["jobs"] == 2 and alone.stats["jobs"] == 1
    assert not any("worker processes stopped" in line for line in said), said
    assert _comparable(ahead) == _comparable(alone)


def test_a_mutant_found_with_workers_is_the_one_found_without(tmp_path):
    """The first family (no stalled clients) finds nothing: its passes come from a worker. The
    second finds the unbounded buffer: from there on this process runs the search itself. The
    failures, their programs and tapes, and every count of the summary are those of one process."""
    summaries = []
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}"
        done = _cli("verify", "--sut", "tests.mutants:unbounded_buffers", "--profile", "dev", "--seed", "1",
                    "--families", "failure,slow_readers,reloads", "--out", str(out), "--no-corpus",
                    "--no-repro", "--jobs", jobs)
        assert done.returncode == 0, done.stdout + done.stderr  # S8.2 is a SHOULD
        summary = json.loads((out / "summary.json").read_text())
        for row in summary["clauses"]:
            row.pop("seconds_to_first", None)
        for find in summary["first_finds"].values():
            find.pop("seconds")
        for key in ("seconds", "sut", "folder", "finished_at"):
            summary.pop(key)
        for key in ("examples_per_second", "jobs"):
            summary["stats"].pop(key)
        failures = {p.name: json.loads(p.read_text())["tape"] for p in sorted(out.glob("S*.json"))}
        summaries.append((summary, failures))
    assert "S8.2-bounded-client-buffers.json" in summaries[0][1], "the mutant was not found"
    assert summaries[0] == summaries[1]


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


def _tagged(tag: bytes) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if tag in (entry / "environ").read_bytes() and (entry / "stat").read_text().split()[2] != "Z":
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL])
def test_a_stopped_verify_takes_its_workers_with_it(tmp_path, signum):
    """Ctrl-C shuts the pool down; a parent killed outright cannot, and its workers notice."""
    tag = f"STREAMSPEC_TEST_TAG={os.getpid()}-{signum}-{time.monotonic_ns()}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STREAMSPEC_TEST_TAG": tag.partition("=")[2]}
    env.pop("DATABASE_URL", None)
    log = tmp_path / "verify.log"
    child = subprocess.Popen(
        [sys.executable, "-m", "streamspec", "verify", "--sut", "reference", "--profile", "ci", "--seed", "1",
         "--jobs", "2", "--no-corpus", "--no-repro", "--out", str(tmp_path / "out")],
        cwd=tmp_path, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while len(_tagged(tag.encode())) < 3:  # the verify and its two workers
            assert child.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, "no workers started"
            time.sleep(0.1)
        time.sleep(2)  # the workers are at work
        child.send_signal(signum)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    deadline = time.monotonic() + 30
    while _tagged(tag.encode()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _tagged(tag.encode()), log.read_text(errors="replace")[-3000:]
