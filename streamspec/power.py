"""Search reliability: one profile over many seeds, and how often each clause is found.

`streamspec power` runs `streamspec verify` once per seed, each in a process of its own (a verify
configures Django for its implementation for the life of its process, and a mutant patches it),
at most `jobs` at once, each without the regression corpus: a replayed corpus entry would "find"
its clause at once, and the question is how reliably the search finds it from nothing. Each run's
``summary.json`` says which clauses failed and, per violation key, after how many examples and
seconds the search first found it (``first_finds``). The table counts, per clause and per key, the
seeds that found it, the median examples and seconds to the first find, and the seeds that missed
it. A seed whose verify crashed or ran past its timeout is reported as such and counts neither
way. Written as ``power-<sut>.md`` and ``power-<sut>.json`` in the reports root, beside
``mutants.md`` (a report folder ``reports/<sut>/`` is replaced whole by each verify run).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import spec

__all__ = ["PowerRow", "SeedRun", "first_finds", "run_seed", "run_seeds", "tabulate", "to_json",
           "to_markdown", "to_terminal", "verify_command", "write"]

FORMAT = "streamspec.power"


@dataclass
class SeedRun:
    """One seed's verify run, as its process left it."""

    seed: int
    summary: dict[str, Any] | None
    """Its summary.json; None when the run crashed or timed out (see `error`)."""
    error: str | None
    seconds: float
    """Wall time of the whole verify process."""


@dataclass
class PowerRow:
    """One clause (or violation key) over the seeds that completed."""

    name: str
    level: str
    found: dict[int, tuple[int, float] | None] = field(default_factory=dict)
    """Seed -> (examples, seconds) to the first find (None: found, at a moment the summary does not
    say, as in a summary written before ``first_finds``)."""
    missed: list[int] = field(default_factory=list)

    @property
    def runs(self) -> int:
        return len(self.found) + len(self.missed)

    @property
    def median_examples(self) -> float | None:
        known = [f[0] for f in self.found.values() if f is not None]
        return statistics.median(known) if known else None

    @property
    def median_seconds(self) -> float | None:
        known = [f[1] for f in self.found.values() if f is not None]
        return statistics.median(known) if known else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "level": self.level, "found": len(self.found), "runs": self.runs,
            "median_examples": self.median_examples, "median_seconds": self.median_seconds,
            "found_by": {str(s): None if f is None else {"examples": f[0], "seconds": f[1]}
                         for s, f in sorted(self.found.items())},
            "missed_by": sorted(self.missed),
        }


# -- running the seeds ------------------------------------------------------------------------------


def verify_command(sut: str, *, profile: str, seed: int, out: Path, families: Sequence[str] | None = None,
                   clauses: Sequence[str] | None = None) -> list[str]:
    """The verify process of one seed: no corpus (a fresh search), no repro scripts (they rerun
    the failure in further processes and take longer than the search), one process (power runs
    several seeds at once, and times each)."""
    command = [sys.executable, "-m", "streamspec", "verify", "--sut", sut, "--profile", profile,
               "--seed", str(seed), "--out", str(out), "--no-corpus", "--no-repro", "--jobs", "1"]
    if families:
        command += ["--families", ",".join(families)]
    if clauses:
        command += ["--clauses", ",".join(clauses)]
    return command


def run_seed(sut: str, *, profile: str, seed: int, timeout: float, families: Sequence[str] | None = None,
             clauses: Sequence[str] | None = None) -> SeedRun:
    """Verify `sut` with `seed` in a process of its own, killed (with anything it started) after
    `timeout` seconds."""
    with tempfile.TemporaryDirectory(prefix="streamspec-power-") as tmp:
        out = Path(tmp) / "report"
        command = verify_command(sut, profile=profile, seed=seed, out=out, families=families, clauses=clauses)
        log = Path(tmp) / "output.txt"
        started = time.perf_counter()
        # Output goes to a file, not a pipe: a grandchild left holding a pipe would keep a reader
        # waiting after the verify itself was killed. A session of its own lets the timeout kill
        # the whole group.
        with log.open("w") as sink:
            # Unbuffered, so that the log's last lines are the last things the child said: a
            # buffered stdout would be flushed after stderr, at exit, out of order.
            child = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            try:
                code = child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(child)
                return SeedRun(seed, None, f"verify did not finish within {timeout:.0f} s (killed)",
                               time.perf_counter() - started)
            except BaseException:  # interrupted: leave no verify running behind
                _kill_group(child)
                raise
        seconds = time.perf_counter() - started
        summary_path = out / "summary.json"
        if code not in (0, 1) or not summary_path.exists():
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            return SeedRun(seed, None, f"verify exited {code}: {' / '.join(tail) or 'no output'}", seconds)
        try:
            summary = json.loads(summary_path.read_text())
        except (OSError, ValueError) as exc:
            return SeedRun(seed, None, f"unreadable summary.json: {exc}", seconds)
        return SeedRun(seed, summary, None, seconds)


def _kill_group(child: subprocess.Popen[Any]) -> None:
    try:
        if hasattr(os, "killpg"):
            os.killpg(child.pid, signal.SIGKILL)
        else:  # pragma: no cover - no process groups (Windows)
            child.kill()
    except ProcessLookupError:
        pass
    child.wait()


def run_seeds(sut: str, *, profile: str, seeds: Sequence[int], timeout: float, jobs: int = 1,
              families: Sequence[str] | None = None, clauses: Sequence[str] | None = None,
              progress: Callable[[str], None] | None = None) -> list[SeedRun]:
    """Every seed's verify run, `jobs` processes at a time; in the order of `seeds`."""

    def one(seed: int) -> SeedRun:
        run = run_seed(sut, profile=profile, seed=seed, timeout=timeout, families=families, clauses=clauses)
        if progress:
            if run.summary is None:
                progress(f"seed {seed}: ERROR {run.error} ({run.seconds:.0f} s)")
            else:
                progress(f"seed {seed}: {', '.join(_failed(run.summary)) or 'no violation'} "
                         f"({run.seconds:.0f} s)")
        return run

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, seeds))


# -- the table -------------------------------------------------------------------------------------


def first_finds(summary: dict[str, Any]) -> dict[str, tuple[int, float]]:
    """Violation key -> (examples, seconds) when a run's search first found it.

    From ``first_finds`` where the summary has it; else (an older summary) one figure per failed
    clause from its row, which is that of the variant reported, not necessarily the first found."""
    if isinstance(summary.get("first_finds"), dict):
        return {k: (int(v["examples"]), float(v["seconds"])) for k, v in summary["first_finds"].items()
                if v.get("examples") is not None and v.get("seconds") is not None}
    return {r["clause"]: (int(r["examples_to_first"]), float(r["seconds_to_first"]))
            for r in summary["clauses"]
            if r["verdict"] == "fail" and r.get("examples_to_first") is not None
            and r.get("seconds_to_first") is not None}


def _clause_of(key: str) -> str:
    return key.split(":")[0]


def tabulate(runs: Sequence[SeedRun]) -> tuple[list[PowerRow], list[PowerRow]]:
    """(clause rows in spec order, rows of the violation keys some seed found, in spec order).

    A seed finds a clause when its run failed it; the first find is the earliest of its keys.
    A run counts only for the clauses it searched (not those left out with ``--clauses``), and a
    run that crashed or timed out for none."""
    clauses = {c.id: PowerRow(c.id, str(c.level)) for c in spec.CLAUSES}
    keys: dict[str, PowerRow] = {}
    searched: dict[int, set[str]] = {}
    for run in runs:
        if run.summary is None:
            continue
        finds = first_finds(run.summary)
        verdicts = {r["clause"]: r["verdict"] for r in run.summary["clauses"]}
        searched[run.seed] = {c for c, v in verdicts.items() if v != "skipped"}
        for clause_id, row in clauses.items():
            if clause_id not in searched[run.seed]:
                continue
            if verdicts[clause_id] != "fail":
                row.missed.append(run.seed)
                continue
            # Examples and seconds count the same moment of one run: the earliest key wins both.
            mine = [first for key, first in finds.items() if _clause_of(key) == clause_id]
            row.found[run.seed] = min(mine) if mine else None
        for key, first in finds.items():
            if verdicts.get(_clause_of(key)) == "fail":
                keys.setdefault(key, PowerRow(key, clauses[_clause_of(key)].level)).found[run.seed] = first
    for key, row in keys.items():
        row.missed = [s for s, wanted in searched.items() if _clause_of(key) in wanted and s not in row.found]
    order = [c.id for c in spec.CLAUSES]
    key_rows = sorted(keys.values(), key=lambda r: (order.index(_clause_of(r.name)), ":" in r.name))
    return [r for r in clauses.values() if r.runs], key_rows


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.{digits}f}"


def _seeds(seeds: Sequence[int]) -> str:
    return ", ".join(map(str, sorted(seeds))) or "-"


def to_markdown(sut: str, profile: str, runs: Sequence[SeedRun], *, families: Sequence[str] | None = None,
                clauses: Sequence[str] | None = None, wall_seconds: float | None = None) -> str:
    clause_rows, key_rows = tabulate(runs)
    done = [r for r in runs if r.summary is not None]
    failed = [r for r in runs if r.summary is None]
    versions = next((r.summary.get("versions", {}) for r in done if r.summary), {})
    lines = [
        f"# Search reliability: {sut}",
        "",
        f"Profile `{profile}`, seeds {_seeds([r.seed for r in runs])}"
        + (f", families {', '.join(families)}" if families else "")
        + (f", clauses {', '.join(clauses)}" if clauses else "")
        + f"; {len(done)} of {len(runs)} verify runs completed"
        + (f" in {wall_seconds:.0f} s wall time" if wall_seconds is not None else "") + ".",
    ]
    if versions:
        v = versions.get
        lines.append(f"Implementation {v('implementation', '?')} {v('implementation_version', '')}, "
                     f"streamspec {v('streamspec', '?')}, Hypothesis {v('hypothesis', '?')}.")
    lines += [
        "",
        "Each seed is one `streamspec verify` without the regression corpus, in a process of its own. "
        "*Found* counts the seeds whose search failed the clause; examples and seconds are the medians, "
        "over those seeds, of how far into its run the search first found it (examples counted over all "
        "families, seconds from the start of the search).",
        "",
        "| Clause | Level | Found | Median examples to first | Median seconds to first | Missed by seeds |",
        "|---|---|---|---|---|---|",
    ]
    for r in clause_rows:
        lines.append(f"| {r.name} | {r.level} | {len(r.found)}/{r.runs} | {_fmt(r.median_examples)} | "
                     f"{_fmt(r.median_seconds)} | {_seeds(r.missed) if r.found else 'all'} |")
    if key_rows:
        lines += ["", "## Per violation key", "",
                  "`S4` is a violation within one simulated process, `S4:processes` one across several.", "",
                  "| Key | Found | Median examples to first | Median seconds to first | Missed by seeds |",
                  "|---|---|---|---|---|"]
        for r in key_rows:
            lines.append(f"| {r.name} | {len(r.found)}/{r.runs} | {_fmt(r.median_examples)} | "
                         f"{_fmt(r.median_seconds)} | {_seeds(r.missed)} |")
    lines += ["", "## Seeds", "", "| Seed | Clauses failed | Examples | Verify s |", "|---|---|---|---|"]
    for r in runs:
        if r.summary is None:
            lines.append(f"| {r.seed} | ERROR: {r.error} | - | {r.seconds:.0f} |")
            continue
        bad = _failed(r.summary)
        total = r.summary.get("stats", {}).get("examples", "-")
        lines.append(f"| {r.seed} | {', '.join(bad) or '-'} | {total} | {r.seconds:.0f} |")
    if failed:
        lines += ["", f"{len(failed)} seed(s) did not complete and count neither as found nor as missed."]
    return "\n".join(lines) + "\n"


def to_terminal(runs: Sequence[SeedRun]) -> str:
    """The clause table in plain columns, and the seeds that did not complete."""
    clause_rows, _ = tabulate(runs)
    lines = [f"{'clause':<7} {'level':<7} {'found':<7} {'examples':>9} {'seconds':>8}  missed by seeds"]
    for r in clause_rows:
        missed = _seeds(r.missed) if r.found else "all"
        lines.append(f"{r.name:<7} {r.level:<7} {f'{len(r.found)}/{r.runs}':<7} {_fmt(r.median_examples):>9} "
                     f"{_fmt(r.median_seconds):>8}  {missed}")
    lines += [f"seed {r.seed}: ERROR {r.error}" for r in runs if r.summary is None]
    return "\n".join(lines)


def _failed(summary: dict[str, Any]) -> list[str]:
    return [x["clause"] for x in summary["clauses"] if x["verdict"] == "fail"]


def _run_dict(run: SeedRun) -> dict[str, Any]:
    summary = run.summary
    return {
        "seed": run.seed, "seconds": round(run.seconds, 1), "error": run.error,
        "exit_code": summary.get("exit_code") if summary else None,
        "failed": _failed(summary) if summary else None,
        "examples": summary.get("stats", {}).get("examples") if summary else None,
        "first_finds": {k: {"examples": e, "seconds": t} for k, (e, t) in first_finds(summary).items()}
        if summary else None,
        "versions": summary.get("versions") if summary else None,
    }


def to_json(sut: str, profile: str, runs: Sequence[SeedRun], *, families: Sequence[str] | None = None,
            clauses: Sequence[str] | None = None, wall_seconds: float | None = None) -> dict[str, Any]:
    clause_rows, key_rows = tabulate(runs)
    return {
        "format": FORMAT, "version": 1, "sut": sut, "profile": profile,
        "families": list(families) if families else None,
        "clauses_selected": list(clauses) if clauses else None,
        "seeds": [r.seed for r in runs],
        "wall_seconds": round(wall_seconds, 1) if wall_seconds is not None else None,
        "clauses": [r.to_dict() for r in clause_rows],
        "keys": [r.to_dict() for r in key_rows],
        "runs": [_run_dict(r) for r in runs],
    }


def write(out: Path, name: str, profile: str, runs: Sequence[SeedRun], *,
          families: Sequence[str] | None = None, clauses: Sequence[str] | None = None,
          wall_seconds: float | None = None) -> tuple[Path, Path]:
    """``<out>/power-<name>.md`` and ``.json``; their paths."""
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / f"power-{name}.md", out / f"power-{name}.json"
    options = {"families": families, "clauses": clauses, "wall_seconds": wall_seconds}
    js.write_text(json.dumps(to_json(name, profile, runs, **options), indent=2) + "\n")
    md.write_text(to_markdown(name, profile, runs, **options))
    return md, js
