"""Standalone reproduction scripts of the HTTP mode (`streamspec.wire_repro`): the same bytes for the
same failure, the harness they carry and nothing else of streamspec, and, run on their own in an
empty folder with an isolated Python, they start their servers and reproduce (or say they did not)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from harness.checkers import check_wire
from harness.history import HARNESS
from streamspec.inline import ROOT
from streamspec.wire_repro import build_wire_script, harness_payload
from tests.histories import Scenario, attached
from tests.wire_support import steps

TWO_SERVERS = [{"op": "servers", "count": 2}, *steps(
    ("attach", {"process": 0}), ("attach", {"process": 1}), ("release", {"count": 2}),
    ("finish_ok", {"how": "complete"}),
)]


def _script(sut: str = "upstream", program: list | None = None, clause: str = "S4") -> str:
    return build_wire_script(clause=clause, sut=sut, implementation=f"{sut} 1.0",
                             program=program or TWO_SERVERS, rate="3/3",
                             command=f"streamspec verify --sut {sut} --mode http --seed 0")


def _isolated(script: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run `script` as a user would where streamspec is not on the path: in its own folder, with
    Python's isolated mode (no PYTHONPATH, no current folder on the path) and no DATABASE_URL."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DATABASE_URL")}
    return subprocess.run([sys.executable, "-I", script.name, *args], cwd=script.parent, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_a_script_is_the_same_bytes_each_time_and_shows_its_steps_as_calls():
    text = _script()
    assert text == _script()
    compile(text, "repro_S4.py", "exec")
    assert "    # 2. a client joins on server 1\n    await run.attach(task, 1)\n" in text
    assert "    run.finish_task(task, True, 'complete')\n" in text
    assert 'SUT = "upstream"' in text and "SERVERS = 2" in text


def test_the_payload_is_the_harness_package_and_nothing_else_of_streamspec():
    with zipfile.ZipFile(io.BytesIO(harness_payload())) as archive:
        names = set(archive.namelist())
        assert archive.read("harness/wire/run.py") == (ROOT / "harness/wire/run.py").read_bytes()
    expected = {p.relative_to(ROOT).as_posix() for p in (ROOT / "harness").rglob("*.py")
                if "__pycache__" not in p.parts}
    assert names == expected
    assert not any(n.startswith(("streamspec/", "scenarios/", "tests/")) for n in names)


def test_a_script_whose_payload_was_changed_refuses_to_run(tmp_path):
    text = _script()
    digest = text.split('PAYLOAD_SHA256 = "', 1)[1][:64]
    script = tmp_path / "repro_S4.py"
    script.write_text(text.replace(digest, "0" * 64))
    done = _isolated(script, timeout=60)
    assert done.returncode == 1 and "PAYLOAD was changed" in done.stderr, done.stderr
    bad = _isolated(tmp_path / "repro_S4.py", "--attempts", "0", timeout=60)
    assert bad.returncode == 2 and "--attempts must be at least 1" in bad.stderr


@pytest.mark.http
def test_a_script_reproduces_on_its_own(sut_adapter, tmp_path):
    # Two servers on one database, a client on each: the upstream package runs the task in both
    # (S4); the reference runs it once, and the script says it did not reproduce.
    script = tmp_path / "repro_S4.py"
    script.write_text(_script(sut_adapter.name))
    upstream = sut_adapter.name == "upstream"
    done = _isolated(script, *(() if upstream else ("--attempts", "1")))
    if upstream:
        assert done.returncode == 1, done.stdout + done.stderr
        assert "VIOLATED:" in done.stdout and "ran process() of T1 at the same time" in done.stdout
        assert "What clients saw:" in done.stdout and "server p1, the end of its log:" in done.stdout
    else:
        assert done.returncode == 0, done.stdout + done.stderr
        assert "attempt 1: S4 PASS" in done.stdout and "not reproduced in 1 attempt" in done.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["repro_S4.py"]  # it leaves nothing beside itself


def _hung_shutdown():
    s = Scenario()
    attached(s)
    op = s.invoke("shutdown", None, at=HARNESS, process="p0")
    s.complete(op, value={"seconds": None})
    return s.end()


def test_a_wire_report_comes_with_its_script(sut_adapter, tmp_path, monkeypatch, capsys):
    # The search is replaced by one that "found" a hung shutdown: what the job writes for it.
    import scenarios.wire as wire
    from streamspec.cli import main

    history = _hung_shutdown()
    program = [{"op": "servers", "count": 1},
               *steps(("attach", {"process": 0}), ("shutdown", {"process": 0}))]
    failure = wire.WireFailure("W6", program, history, check_wire(history), {"p0": "(log)"}, reproduced=3,
                               reruns=3, examples_to_first=2)

    def found(*args, **kwargs):
        result = wire.WireResult(sut_adapter.name, "dev", 0, 1.0, 2, {"W6": {"fail": 1}})
        result.failures["W6"] = failure
        return result

    monkeypatch.setattr(wire, "search_wire", found)
    out = tmp_path / "reports"
    code = main(["verify", "--sut", sut_adapter.name, "--mode", "http", "--profile", "dev", "--seed", "0",
                 "--out", str(out)])
    assert code == 1, capsys.readouterr().out
    report = (out / "W6.md").read_text()
    assert "`python repro_W6.py`" in report
    script = (out / "repro_W6.py").read_text()
    compile(script, "repro_W6.py", "exec")
    assert 'CLAUSE = "W6"' in script and "    await run.shutdown(0)\n    await run.replace(0)\n" in script
    assert json.loads((out / "summary.json").read_text())["exit_code"] == 1
