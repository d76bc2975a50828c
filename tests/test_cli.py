"""`streamspec verify / replay / index`: exit statuses, the report folder, corpus and baselines.

The main run verifies the session's implementation in this process (the plugin configured Django
for it), with a small budget: the dev profile, one family, three clauses. On upstream it fails, and
every standalone reproduction it wrote is run alone (only Django and the package) and pointed at
the reference. Other implementations (a mutant, the README's third-party adapter) run in processes
of their own, as `streamspec verify` always does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from streamspec.cli import main

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--profile", "dev", "--seed", "1", "--families", "joins"]


INTERRUPTIBLE = [sys.executable, "-c", "import runpy, signal, sys; "
                 "signal.signal(signal.SIGINT, signal.default_int_handler); "
                 "sys.argv[0] = 'streamspec'; runpy.run_module('streamspec', run_name='__main__')"]
"""`python -m streamspec` as a terminal starts it: Ctrl-C interrupts it even where this test process
was started with SIGINT ignored (a CI job run in the background), which its children inherit."""


def live_processes(*in_environ: bytes, command: bytes = b"") -> list[int]:
    """Live processes (not zombies, not this one) whose environment holds every one of `in_environ`
    and whose command line holds `command`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            if (all(marker in environ for marker in in_environ)
                    and command in (entry / "cmdline").read_bytes()
                    and (entry / "stat").read_text().split()[2] != "Z"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def stop_streamspec(args: list[str], tmp_path: Path, env: dict[str, str], signum: int,
                    started: Callable[[], bool], *, describe: Callable[[], str] = str) -> tuple[int, str]:
    """Start `streamspec <args>` as a terminal would (`INTERRUPTIBLE`), wait until `started()`
    (60 s at most), send it `signum`, and give its exit status and output once it ended (30 s at
    most). Its output goes to a file, not a pipe nobody reads while it runs: a pipe that fills up
    would block its writes, and it could then not exit when told to."""
    log = tmp_path / "streamspec.log"
    child = subprocess.Popen([*INTERRUPTIBLE, *args], cwd=tmp_path, env=env, stdout=log.open("wb"),
                             stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not started():
            assert child.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, f"not started within 60 s: {describe()}"
            time.sleep(0.05)
        child.send_signal(signum)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running 30 s after signal {signum}: {describe()}\n"
                                 f"{log.read_text(errors='replace')[-3000:]}") from None
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return child.returncode, log.read_text(errors="replace")


def _cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("DATABASE_URL", None)  # a process of its own gets a database of its own
    return subprocess.run(
        [sys.executable, "-m", "streamspec", *args],
        cwd=cwd or ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def verified(sut_adapter, tmp_path_factory):
    """One verify run of the session's implementation; (root folder, exit status, summary)."""
    root = tmp_path_factory.mktemp("verify")
    name = sut_adapter.name
    code = main(
        [
            "verify",
            "--sut",
            name,
            *SMALL,
            "--clauses",
            "S1,S2,S3",
            "--out",
            str(root / "reports" / name),
            "--corpus",
            str(root / "corpus"),
        ]
    )
    summary = json.loads((root / "reports" / name / "summary.json").read_text())
    return root, code, summary


# -- verify -------------------------------------------------------------------------------------


def test_verify_writes_the_report_folder(verified, sut_adapter):
    root, code, summary = verified
    folder = root / "reports" / sut_adapter.name
    failing_must = [
        r["clause"] for r in summary["clauses"] if r["verdict"] == "fail" and r["level"] == "MUST"
    ]
    assert code == (1 if failing_must else 0) == summary["exit_code"]
    if sut_adapter.name == "upstream":
        assert code == 1 and failing_must
    for name in ("summary.json", "summary.md", "junit.xml"):
        assert (folder / name).is_file()
    assert (root / "reports" / "index.html").is_file()
    assert not [p for p in (root / "reports").iterdir() if p.name.startswith(".")]  # nothing half-written
    rows = {r["clause"]: r for r in summary["clauses"]}
    assert [r["clause"] for r in summary["clauses"]][:3] == ["S1", "S2", "S3"]
    assert rows["S4"]["verdict"] == "skipped"  # not selected
    versions = summary["versions"]
    assert {"implementation", "implementation_version", "django", "python", "streamspec"} <= set(versions)
    assert summary["profile"] == "dev" and summary["seed"] == 1
    # When each violation key was first found: every failed clause has one, within the run.
    failed = {r["clause"] for r in summary["clauses"] if r["verdict"] == "fail"}
    assert {key.split(":")[0] for key in summary["first_finds"]} == failed
    assert all(0 < f["examples"] <= summary["stats"]["examples"] for f in summary["first_finds"].values())
    for clause in failing_must:
        files = rows[clause]["files"]
        for key in ("report", "failure", "timeline", "repro"):
            assert (folder / files[key]).is_file(), files[key]
        report = (folder / files["report"]).read_text()
        assert report.startswith(f"# {clause} ")
        assert "/tmp" not in report and "site-packages" not in report  # no machine paths


def test_every_repro_shows_the_bug_alone_and_passes_on_the_reference(verified, sut_adapter, tmp_path):
    root, _, summary = verified
    repros = [r["files"]["repro"] for r in summary["clauses"] if "repro" in (r.get("files") or {})]
    if sut_adapter.name != "upstream":
        assert not repros  # a conforming run writes no reproduction
        return
    assert repros
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE", "DATABASE_URL", "STREAMSPEC_SUT")
    }
    for name in repros:
        alone = tmp_path / name
        shutil.copy(root / "reports" / sut_adapter.name / name, alone)
        # Alone: a folder of its own, no PYTHONPATH; the interpreter has Django and the package.
        done = subprocess.run(
            [sys.executable, name],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 1, done.stdout + done.stderr
        assert "is violated: the bug is there" in done.stdout and "expected:" in done.stdout
        on_reference = subprocess.run(
            [sys.executable, name, "reference_impl.streaming"],
            cwd=tmp_path,
            env={**env, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert on_reference.returncode == 0, on_reference.stdout + on_reference.stderr


def test_replay_reruns_the_recorded_run(verified, sut_adapter, capsys):
    root, _, summary = verified
    failures = [r["files"]["failure"] for r in summary["clauses"] if (r.get("files") or {}).get("failure")]
    if sut_adapter.name != "upstream":
        assert not failures  # a conforming run records no failure to replay
        return
    assert failures
    for name in failures:
        code = main(["replay", str(root / "reports" / sut_adapter.name / name)])
        out = capsys.readouterr().out
        assert code == 1, out
        assert "the same history, byte for byte" in out and "is still violated" in out


def test_corpus_is_replayed_first_and_baseline_accepts_known_failures(verified, sut_adapter, capsys):
    root, _, summary = verified
    corpus = root / "corpus" / sut_adapter.name
    failing = [r["clause"] for r in summary["clauses"] if r["verdict"] == "fail"]
    assert sorted(p.name.split("-")[0] for p in corpus.glob("*.json")) == sorted(failing)
    baseline = root / "baselines" / f"{sut_adapter.name}.json"
    out = root / "again"
    code = main(
        [
            "verify",
            "--sut",
            sut_adapter.name,
            *SMALL,
            "--clauses",
            "S1,S2,S3,S7",
            "--out",
            str(out),
            "--corpus",
            str(root / "corpus"),
            "--baseline",
            str(baseline),
            "--update-baseline",
            "--no-repro",
        ]
    )
    capsys.readouterr()
    again = json.loads((out / "summary.json").read_text())
    assert code == 0, again["conclusion"]
    assert {e["status"] for e in again["corpus"]["entries"]} <= {"still fails"}
    assert len(again["corpus"]["entries"]) == len(failing)
    written = json.loads(baseline.read_text())
    assert sorted(written["expected_failures"]) == sorted(
        r["clause"] for r in again["clauses"] if r["verdict"] == "fail"
    )

    # A stale entry: a clause the baseline expects to fail now passes.
    passing = next(r["clause"] for r in again["clauses"] if r["verdict"] == "pass")
    written["expected_failures"][passing] = "expected to fail"
    baseline.write_text(json.dumps(written))
    code = main(
        [
            "verify",
            "--sut",
            sut_adapter.name,
            *SMALL,
            "--clauses",
            "S1,S2,S3,S7",
            "--out",
            str(out),
            "--corpus",
            str(root / "corpus"),
            "--baseline",
            str(baseline),
            "--no-repro",
        ]
    )
    text = capsys.readouterr().out
    assert code == 1
    assert f"stale baseline entry {passing}" in text


def test_a_new_failure_fails_against_a_baseline(tmp_path):
    """A mutant of the reference (its own process): the empty baseline makes its S2 failure new."""
    baseline = tmp_path / "baseline.json"
    baseline.write_text(
        json.dumps({"format": "streamspec.baseline", "version": 1, "sut": "m", "expected_failures": {}})
    )
    done = _cli(
        "verify",
        "--sut",
        "tests.mutants:state_on_the_object",
        "--profile",
        "dev",
        "--seed",
        "1",
        "--families",
        "reloads",
        "--clauses",
        "S2",
        "--out",
        str(tmp_path / "reports" / "mutant"),
        "--no-corpus",
        "--no-repro",
        "--baseline",
        str(baseline),
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAILED against the baseline: new failure S2" in done.stdout
    report = (tmp_path / "reports" / "mutant" / "S2-no-orphan-clients.md").read_text()
    assert "reference_impl/streaming/" in report.split("## Description")[0]  # located from the run's stacks


def test_readme_third_party_adapter(tmp_path):
    """The README's "Validate your own implementation" adapter, run as the README says."""
    done = _cli(
        "verify",
        "--sut",
        "tests.third_party_adapter:Adapter",
        *SMALL,
        "--clauses",
        "S1,S2,S3",
        "--out",
        str(tmp_path / "yourlib"),
        "--no-corpus",
        "--no-repro",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((tmp_path / "yourlib" / "summary.json").read_text())
    assert summary["adapter"] == "tests.third_party_adapter:Adapter"
    assert summary["versions"]["implementation"].startswith("yourlib")
    assert [r["verdict"] for r in summary["clauses"][:3]] == ["pass", "pass", "pass"]


# -- usage and configuration errors: one line, exit 2, nothing written ----------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["verify", "--sut", "no-such-sut"], "unknown implementation 'no-such-sut'"),
        (["verify", "--sut", "tests.no_such_module:Adapter"], "cannot import adapter module"),
        (["verify", "--sut", "tests.third_party_adapter:Missing"], "has no attribute 'Missing'"),
        (["verify", "--sut", "SUT", "--clauses", "S1,S9"], "unknown clause 'S9'"),
        (["verify", "--sut", "SUT", "--mode", "http", "--families", "joins"],
         "--families applies to --mode inproc"),
        (["verify", "--sut", "SUT", "--mode", "http", "--profile", "forever"], "unknown profile"),
        (["verify", "--sut", "SUT", "--mode", "http", "--fail-fast"], "--fail-fast applies to --mode inproc"),
        (["verify", "--sut", "SUT", "--mode", "http", "--jobs", "2"], "--jobs applies to --mode inproc"),
        (["verify", "--sut", "SUT", "--jobs", "-1"], "--jobs -1: give 0 (one per core) or more"),
        (["verify", "--sut", "SUT", "--mode", "http", "--clauses", "W9"], "unknown clause 'W9'"),
        (["verify", "--sut", "SUT", "--mode", "carrier-pigeon"], "unknown mode"),
        (["verify", "--sut", "SUT", "--profile", "forever"], "unknown profile"),
        (["verify", "--sut", "SUT", "--families", "joins,nope"], "unknown family 'nope'"),
        (["verify"], "the following arguments are required: --sut"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_usage_errors(args, message, sut_adapter, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [sut_adapter.name if a == "SUT" else a for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and err.startswith("streamspec: error: ")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_folder(sut_adapter, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["verify", "--sut", sut_adapter.name, "--out", str(blocker / "reports")]) == 2
    err = capsys.readouterr().err
    assert "cannot write the output folder" in err and err.count("\n") == 1
    assert main(["verify", "--sut", sut_adapter.name, "--out", str(blocker)]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        '{"format": "something else"}',
        '{"format": "streamspec.failure", "version": 1, "clause": "S1"}',
        "",
    ],
)
def test_corrupt_replay_file(content, tmp_path, capsys):
    path = tmp_path / "S1-identity.json"
    path.write_text(content)
    assert main(["replay", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("streamspec: error: ") and err.count("\n") == 1
    assert main(["replay", str(tmp_path / "missing.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_corrupt_corpus_entry_and_baseline(sut_adapter, tmp_path, capsys):
    corpus = tmp_path / "corpus" / sut_adapter.name
    corpus.mkdir(parents=True)
    (corpus / "S1-0000000000.json").write_text("{broken")
    out = tmp_path / "reports" / "x"
    assert (
        main(["verify", "--sut", sut_adapter.name, "--corpus", str(tmp_path / "corpus"), "--out", str(out)])
        == 2
    )
    assert "corpus:" in capsys.readouterr().err
    bad = tmp_path / "baseline.json"
    bad.write_text('{"format": "streamspec.baseline", "expected_failures": {"S99": "x"}}')
    assert (
        main(["verify", "--sut", sut_adapter.name, "--no-corpus", "--baseline", str(bad), "--out", str(out)])
        == 2
    )
    assert "unknown clauses: S99" in capsys.readouterr().err
    assert not (tmp_path / "reports").exists()


def test_index_command(tmp_path, capsys):
    assert main(["index", str(tmp_path)]) == 0
    assert (tmp_path / "index.html").is_file()
    assert main(["index", str(tmp_path / "none")]) == 2
    capsys.readouterr()


def test_module_entry_point():
    done = _cli("--help")
    assert done.returncode == 0 and "verify" in done.stdout and "replay" in done.stdout


def test_mutants_refuses_an_unknown_mutant_in_one_line(capsys):
    """The mutants command loads the matrix and the catalogue before it judges its options."""
    assert main(["mutants", "--only", "no_such_mutant"]) == 2
    err = capsys.readouterr().err
    assert "unknown mutant 'no_such_mutant': use some of state_on_the_object" in err
    assert "Traceback" not in err
