"""`streamspec power`: the table over seeds, its bad-input errors, hung and crashed verify
processes, and one real small run against a planted bug (a mutant of the reference)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness import spec
from streamspec import power
from streamspec.cli import main
from streamspec.power import SeedRun, tabulate

ROOT = Path(__file__).resolve().parent.parent


def _summary(failed: dict[str, dict[str, tuple[int, float]]], *, skipped: tuple[str, ...] = (),
             with_first_finds: bool = True) -> dict[str, Any]:
    """A summary.json as verify writes it: `failed` maps each failed clause to its keys' first
    finds; every other clause passed (or was skipped)."""
    rows = []
    for c in spec.CLAUSES:
        verdict = "skipped" if c.id in skipped else ("fail" if c.id in failed else "pass")
        row: dict[str, Any] = {"clause": c.id, "level": str(c.level), "verdict": verdict}
        if c.id in failed:
            # The row carries the variant reported, here deliberately not the earliest key.
            examples, seconds = max(failed[c.id].values())
            row.update(examples_to_first=examples, seconds_to_first=seconds)
        rows.append(row)
    summary: dict[str, Any] = {"clauses": rows, "stats": {"examples": 500}, "versions": {}}
    if with_first_finds:
        summary["first_finds"] = {k: {"examples": e, "seconds": s}
                                  for keys in failed.values() for k, (e, s) in keys.items()}
    return summary


RUNS = [
    SeedRun(0, _summary({"S1": {"S1": (10, 1.0)}, "S4": {"S4": (40, 4.0), "S4:processes": (20, 2.0)}}),
            None, 9.0),
    SeedRun(1, _summary({"S1": {"S1": (30, 3.0)}}), None, 9.0),
    SeedRun(2, None, "verify did not finish within 5 s (killed)", 5.0),
    SeedRun(3, _summary({"S1": {"S1": (50, 5.5)}, "S4": {"S4": (100, 10.0)}}), None, 9.0),
    # Searched S4 alone: it counts for S4 only, neither found nor missed for S1.
    SeedRun(4, _summary({}, skipped=tuple(c.id for c in spec.CLAUSES if c.id != "S4")), None, 9.0),
]


def _by_name(rows: list[power.PowerRow]) -> dict[str, power.PowerRow]:
    return {r.name: r for r in rows}


def test_table_counts_seeds_medians_and_misses():
    clauses, keys = tabulate(RUNS)
    rows = _by_name(clauses)
    assert [r.name for r in clauses] == [c.id for c in spec.CLAUSES]
    s1, s4 = rows["S1"], rows["S4"]
    assert sorted(s1.found) == [0, 1, 3] and s1.missed == [] and s1.runs == 3  # seed 2 crashed, 4 skipped S1
    assert s1.median_examples == 30 and s1.median_seconds == 3.0
    # S4's first find is its earliest key (20 examples on seed 0, across processes), not the row's.
    assert s4.found == {0: (20, 2.0), 3: (100, 10.0)} and s4.missed == [1, 4]
    assert s4.median_examples == 60 and s4.median_seconds == 6.0
    assert rows["S2"].found == {} and rows["S2"].missed == [0, 1, 3] and rows["S2"].median_examples is None
    key_rows = _by_name(keys)
    assert [r.name for r in keys] == ["S1", "S4", "S4:processes"]
    assert key_rows["S4"].found == {0: (40, 4.0), 3: (100, 10.0)} and key_rows["S4"].missed == [1, 4]
    assert key_rows["S4:processes"].found == {0: (20, 2.0)} and key_rows["S4:processes"].missed == [1, 3, 4]
    assert key_rows["S1"].missed == []  # seed 4 did not search S1


def test_reports_show_the_table_and_the_crashed_seed(tmp_path):
    md, js = power.write(tmp_path, "sut", "ci", RUNS, wall_seconds=50.0)
    text = md.read_text()
    assert "| S1 | MUST | 3/3 | 30 | 3 | - |" in text
    assert "| S4 | MUST | 2/4 | 60 | 6 | 1, 4 |" in text
    assert "| S2 | MUST | 0/3 | - | - | all |" in text
    assert "| S4:processes | 1/4 | 20 | 2 | 1, 3, 4 |" in text
    assert "| 2 | ERROR: verify did not finish within 5 s (killed) |" in text
    document = json.loads(js.read_text())
    assert document["format"] == "streamspec.power" and document["seeds"] == [0, 1, 2, 3, 4]
    s4 = next(r for r in document["clauses"] if r["name"] == "S4")
    assert (s4["found"], s4["runs"], s4["missed_by"]) == (2, 4, [1, 4])
    assert s4["found_by"]["0"] == {"examples": 20, "seconds": 2.0}
    assert document["runs"][2]["error"].startswith("verify did not finish")
    terminal = power.to_terminal(RUNS)
    assert "S4      MUST    2/4            60        6  1, 4" in terminal
    assert "seed 2: ERROR verify did not finish" in terminal


def test_a_summary_without_first_finds_falls_back_to_its_rows():
    runs = [SeedRun(0, _summary({"S4": {"S4": (40, 4.0), "S4:processes": (20, 2.0)}}, with_first_finds=False),
                    None, 1.0)]
    clauses, keys = tabulate(runs)
    assert _by_name(clauses)["S4"].found == {0: (40, 4.0)}  # the row's variant: all it says
    assert [r.name for r in keys] == ["S4"]


# -- hung and crashed verify processes ---------------------------------------------------------------


def _fake_verify(monkeypatch, code: str) -> None:
    monkeypatch.setattr(power, "verify_command", lambda *a, **k: [sys.executable, "-c", code])


def test_a_hung_verify_is_killed_with_what_it_started(monkeypatch, tmp_path):
    # The child starts a grandchild that would leave a mark after 2 s: killing the child alone
    # would leave the grandchild running; the whole group goes.
    mark = tmp_path / "grandchild-survived"
    grandchild = f"import time; time.sleep(2); open({str(mark)!r}, 'w')"
    _fake_verify(monkeypatch, "import subprocess, sys, time\n"
                 f"subprocess.Popen([sys.executable, '-c', {grandchild!r}])\ntime.sleep(60)")
    started = time.monotonic()
    runs = power.run_seeds("reference", profile="dev", seeds=[0, 1], timeout=1.0, jobs=2)
    assert time.monotonic() - started < 20
    assert [r.seed for r in runs] == [0, 1]
    assert all(r.summary is None and r.error == "verify did not finish within 1 s (killed)" for r in runs)
    time.sleep(3)
    assert not mark.exists()


def test_a_crashed_verify_is_reported_with_its_last_lines(monkeypatch):
    _fake_verify(monkeypatch, "import sys; print('setting up'); sys.exit('Traceback: boom')")
    run = power.run_seed("reference", profile="dev", seed=3, timeout=30)
    assert run.summary is None and run.error == "verify exited 1: setting up / Traceback: boom"
    _fake_verify(monkeypatch, "raise SystemExit(0)")  # exits cleanly but writes no summary
    run = power.run_seed("reference", profile="dev", seed=3, timeout=30)
    assert run.error == "verify exited 0: no output"


# -- bad input: one line, exit 2, nothing written ----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sut", "no-such-sut", "--seeds", "2"], "unknown implementation 'no-such-sut'"),
        (["--sut", "reference", "--seeds", "0"], "--seeds 0: give at least 1"),
        (["--sut", "reference", "--seeds", "-3"], "--seeds -3: give at least 1"),
        (["--sut", "reference", "--seeds", "2", "--profile", "forever"], "unknown profile 'forever'"),
        (["--sut", "reference", "--seeds", "2", "--families", "joins,nope"], "unknown family 'nope'"),
        (["--sut", "reference", "--seeds", "2", "--clauses", "S9"], "unknown clause 'S9'"),
        (["--sut", "reference", "--seeds", "2", "--jobs", "0"], "--jobs 0: give at least 1"),
        (["--sut", "reference", "--seeds", "2", "--timeout", "0"], "--timeout 0.0: give a positive number"),
        (["--sut", "reference", "--seed-list", "1,x"], "give whole numbers separated by commas"),
        (["--sut", "reference", "--seed-list", ","], "give one or more seeds"),
        (["--sut", "reference", "--seeds", "2", "--seed-list", "1"], "not allowed with argument"),
        (["--sut", "reference"], "one of the arguments --seeds --seed-list is required"),
        (["--seeds", "2"], "the following arguments are required: --sut"),
        (["--sut", "reference", "--seeds", "two"], "invalid int value: 'two'"),
    ],
)
def test_bad_input(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["power", *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and err.startswith("streamspec: error: ")
    assert list(tmp_path.iterdir()) == []


def test_an_output_folder_that_is_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["power", "--sut", "reference", "--seeds", "1", "--out", str(tmp_path / "file")]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err


# -- a real run ---------------------------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_a_real_run_counts_the_seeds_that_found_a_planted_bug(tmp_path, monkeypatch, capsys):
    """Two dev-profile seeds against the reference with a mutant that breaks S2 (the seed's bug).
    The verify processes import this checkout and its tests package, as `python -m` does from it."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("DATABASE_URL", raising=False)  # each verify process gets a database of its own
    code = main(["power", "--sut", "tests.mutants:state_on_the_object", "--seeds", "2", "--profile", "dev",
                 "--families", "reloads", "--clauses", "S2,S6", "--out", str(tmp_path), "--timeout", "150"])
    out = capsys.readouterr().out
    assert code == 0, out
    document = json.loads((tmp_path / "power-mutant-state_on_the_object.json").read_text())
    assert [r["error"] for r in document["runs"]] == [None, None]
    rows = {r["name"]: r for r in document["clauses"]}
    assert set(rows) == {"S2", "S6"}  # the others were not searched
    assert (rows["S2"]["found"], rows["S2"]["runs"], rows["S2"]["missed_by"]) == (2, 2, [])
    assert rows["S2"]["median_examples"] >= 1 and rows["S2"]["median_seconds"] > 0
    assert (rows["S6"]["found"], rows["S6"]["missed_by"]) == (0, [0, 1])
    # Each run's summary.json said when S2 first failed, per violation key.
    assert all({k.split(":")[0] for k in r["first_finds"]} == {"S2"} for r in document["runs"])
    assert "| S2 | MUST | 2/2 |" in (tmp_path / "power-mutant-state_on_the_object.md").read_text()
    assert "2 of 2 seeds ran" in out
