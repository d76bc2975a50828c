"""The mutant matrix: verify every mutant of a catalogue and count which bugs the suite catches.

A catalogue is a module with `CATALOGUE` (objects with `name`, `clause`, `description`), one
adapter factory per mutant name (``--sut module:name``), and `run_baseline(name)`, the
example-based tests run under that mutant (None: the clean implementation). Every verify runs in a
process of its own (mutants patch the implementation for the life of their process), and so does
every baseline run. The matrix is written as `mutants.json` and `mutants.md`.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import spec
from harness.errors import ConfigError
from streamspec.power import verify_command


@dataclass
class MutantRow:
    name: str
    expected: str
    description: str
    detected: bool = False
    """The expected clause failed."""
    reported: list[str] = field(default_factory=list)
    """Every clause some example of the search violated (MUST and SHOULD)."""
    examples_to_first: int | None = None
    seconds_to_first: float | None = None
    shrunk_steps: int | None = None
    seconds: float = 0.0
    baseline_failures: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def baseline_killed(self) -> bool:
        return bool(self.baseline_failures)


def _verify(
    sut: str, profile: str, seed: int, timeout: float, extra: tuple[str, ...] = ()
) -> tuple[dict[str, Any] | None, str | None, float]:
    with tempfile.TemporaryDirectory(prefix="streamspec-mutant-") as tmp:
        out = Path(tmp) / "report"
        command = [*verify_command(sut, profile=profile, seed=seed, out=out), *extra]
        started = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return None, f"verify did not finish within {timeout:.0f} s", time.perf_counter() - started
        seconds = time.perf_counter() - started
        summary = out / "summary.json"
        if done.returncode not in (0, 1) or not summary.exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return None, f"verify exited {done.returncode}: {' / '.join(tail)}", seconds
        return json.loads(summary.read_text()), None, seconds


def _baseline(catalogue: str, name: str | None, timeout: float) -> dict[str, str | None]:
    command = [sys.executable, "-m", "streamspec.mutation", "baseline", catalogue, name or ""]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        who = name or "the implementation"
        raise ConfigError(f"the example baseline of {who} crashed: {done.stderr[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _judge(catalogue: str, mutant: Any, profile: str, seed: int, timeout: float,
           first_find: bool = False) -> MutantRow:
    row = MutantRow(mutant.name, mutant.clause, mutant.description)
    # By default the whole search, as a user runs it: targeting the expected clause alone is no
    # faster to the first find in general (a failure of another clause starts the next round, with
    # fresh examples, sooner). The CI size (`first_find`) targets it and stops there: what it saves
    # is the rest of the budget, spent on other clauses after the kill.
    extra = ("--clauses", mutant.clause, "--fail-fast") if first_find else ()
    summary, row.error, row.seconds = _verify(f"{catalogue}:{mutant.name}", profile, seed, timeout, extra)
    if summary is not None:
        failed = [c for c in summary["clauses"] if c["verdict"] == "fail"]
        violated = summary.get("stats", {}).get("violating_examples", {})
        row.reported = [c for c in spec.BY_ID if c in violated or any(f["clause"] == c for f in failed)]
        row.detected = any(c["clause"] == mutant.clause for c in failed)
        hit = next((c for c in failed if c["clause"] == mutant.clause), None)
        if hit is not None:
            row.examples_to_first = hit.get("examples_to_first")
            row.seconds_to_first = hit.get("seconds_to_first")
            row.shrunk_steps = hit.get("operations")
    row.baseline_failures = sorted(k for k, v in _baseline(catalogue, mutant.name, timeout).items() if v)
    return row


def _mutants(catalogue: str, names: list[str] | None) -> list[Any]:
    module = importlib.import_module(catalogue)
    return [m for m in module.CATALOGUE if not names or m.name in names]


def _judge_and_say(catalogue: str, mutant: Any, profile: str, seed: int, timeout: float, first_find: bool,
                   progress: Any) -> MutantRow:
    row = _judge(catalogue, mutant, profile, seed, timeout, first_find)
    if progress:
        verdict = "killed" if row.detected else ("ERROR" if row.error else "SURVIVED")
        first = f", first after {row.seconds_to_first:.1f} s" if row.seconds_to_first is not None else ""
        progress(f"{mutant.name}: {verdict} ({', '.join(row.reported) or '-'}{first})"
                 + (f": {row.error}" if row.error else ""))
    return row


def _guard_one(sut: str, profile: str, seed: int, timeout: float, progress: Any) -> list[str]:
    summary, error, seconds = _verify(sut, profile, seed, timeout)
    bad = [f"error: {error}"] if summary is None else [
        c["clause"] for c in summary["clauses"] if c["verdict"] == "fail"]
    if progress:
        progress(f"{sut} seed {seed}: {', '.join(bad) or 'no violation'} ({seconds:.0f} s)")
    return bad


def run_matrix(catalogue: str, *, profile: str = "ci", seed: int = 0, timeout: float = 600.0,
               names: list[str] | None = None, progress: Any = None, jobs: int = 1,
               first_find: bool = False) -> list[MutantRow]:
    """Every mutant (or those in `names`) verified and run against the example baseline, `jobs`
    processes at a time; rows in catalogue order. `first_find`: each verify looks for the mutant's
    expected clause only and stops at its first failure (the matrix's CI size)."""
    rows, _ = run_with_guard(catalogue, profile=profile, seed=seed, timeout=timeout, names=names,
                             progress=progress, jobs=jobs, first_find=first_find, guard_seeds=[])
    return rows


def run_with_guard(catalogue: str, *, profile: str = "ci", seed: int = 0, timeout: float = 600.0,
                   names: list[str] | None = None, progress: Any = None, jobs: int = 1,
                   first_find: bool = False, guard_sut: str = "reference",
                   guard_seeds: list[int] | None = None) -> tuple[list[MutantRow], dict[int, list[str]]]:
    """The matrix (`run_matrix`) and the false-positive guard (the clean `guard_sut` over
    `guard_seeds`: seed -> the clauses that failed) in one pool of `jobs` processes. The guard's
    verifies are whole searches, the longest runs: they go first, so that no process is left with
    one at the end while the others are idle."""
    seeds = list(guard_seeds or [])
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        guarding = [pool.submit(_guard_one, guard_sut, profile, s, timeout, progress) for s in seeds]
        judging = [pool.submit(_judge_and_say, catalogue, m, profile, seed, timeout, first_find, progress)
                   for m in _mutants(catalogue, names)]
        rows = [f.result() for f in judging]
        guard = {s: f.result() for s, f in zip(seeds, guarding, strict=True)}
    return rows, guard


def to_markdown(rows: list[MutantRow], guard: dict[int, list[str]], profile: str,
                clean_baseline: dict[str, str | None], first_find: bool = False) -> str:
    killed = sum(r.detected for r in rows)
    baseline_killed = sum(r.baseline_killed for r in rows)
    lines = [
        "# Mutant matrix",
        "",
        f"Profile `{profile}`. **streamspec killed {killed} of {len(rows)} mutants by their expected clause; "
        f"the example-based tests killed {baseline_killed} of {len(rows)}.**",
        "",
        ("CI size (`--first-find`): each verify looks for its mutant's expected clause only and stops at "
         "its first failure, once shrunk; *Clauses violated* lists what that search saw. "
         if first_find else
         "Each verify runs the whole search, as `streamspec verify` does; *Clauses violated* lists every "
         "clause some example violated. ")
        + "Seconds count from the start of the verify process's search.",
        "",
        "| Mutant | Expected | Detected | Clauses violated | Examples to first | Seconds to first | "
        "Shrunk steps | Verify s | Example tests failing |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        detected = "yes" if r.detected else ("ERROR" if r.error else "**no**")
        lines.append(
            f"| `{r.name}` | {r.expected} | {detected} | {', '.join(r.reported) or '-'} | "
            f"{_fmt(r.examples_to_first)} | {_fmt(r.seconds_to_first)} | {_fmt(r.shrunk_steps)} | "
            f"{r.seconds:.1f} | {', '.join(r.baseline_failures) or '-'} |"
        )
    lines += ["", "## Mutants", ""]
    lines += [f"- `{r.name}` ({r.expected}): {r.description}" + (f" — error: {r.error}" if r.error else "")
              for r in rows]
    lines += ["", "## False-positive guard", "",
              "The clean implementation under the same budget, one verify per seed:", ""]
    lines += [f"- seed {seed}: {', '.join(bad) if bad else 'no violation'}" for seed, bad in guard.items()]
    failing = [k for k, v in clean_baseline.items() if v]
    lines += ["", f"The example-based tests on the clean implementation: "
              f"{'all pass' if not failing else 'FAILING: ' + ', '.join(failing)}.", ""]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def write(out: Path, rows: list[MutantRow], guard: dict[int, list[str]], profile: str,
          clean_baseline: dict[str, str | None], first_find: bool = False) -> None:
    out.mkdir(parents=True, exist_ok=True)
    document = {
        "format": "streamspec.mutants", "version": 1, "profile": profile, "first_find": first_find,
        "killed": sum(r.detected for r in rows), "baseline_killed": sum(r.baseline_killed for r in rows),
        "mutants": [asdict(r) for r in rows],
        "false_positive_guard": {str(k): v for k, v in guard.items()},
        "clean_baseline": clean_baseline,
    }
    (out / "mutants.json").write_text(json.dumps(document, indent=2) + "\n")
    (out / "mutants.md").write_text(to_markdown(rows, guard, profile, clean_baseline, first_find))


def _baseline_main(catalogue: str, name: str) -> None:
    """Subprocess entry: Django for the reference, the named mutant applied, the examples run."""
    from harness.adapters import load_adapter
    from harness.django_setup import configure

    configure(load_adapter("reference"))
    module = importlib.import_module(catalogue)
    print(json.dumps(module.run_baseline(name or None)))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "baseline":
        _baseline_main(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: python -m streamspec.mutation baseline CATALOGUE NAME")
