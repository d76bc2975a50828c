"""Run every benchmark for each contender, each implementation in a process of its own, then render.

    python benchmarks/run.py                      # full run (~10 minutes on 2 cores)
    python benchmarks/run.py --quick              # smaller sizes (BENCH_QUICK=1), a few minutes
    python benchmarks/run.py --upstream-python /path/to/venv/bin/python
    python benchmarks/run.py --groups fanout,http -- -x   # some groups; after --: pytest arguments

The reference and the upstream package cannot share a Django process (both are the app
`streaming`), so each runs its own ``python -m pytest benchmarks/test_<group>.py --sut NAME``; the
raw-asyncio baselines run in the reference's process. Groups run one after the other with the
contenders interleaved (reference, upstream, variants, then the next group), so that a machine
whose load drifts during the run skews the ratios as little as possible.

Each process writes pytest-benchmark JSON to reports/bench/raw/<contender>-<group>.json; the
previous run's merged results are kept as reports/bench/previous.json, and `render.py` writes
reports/bench.md and reports/bench-fanout.png comparing the two. `pytest-benchmark compare
reports/bench/raw/*.json` works on the raw files as well.

The upstream package must be importable by --upstream-python (default: STREAMSPEC_UPSTREAM_PYTHON,
else this interpreter when it has django-streaming-coordinator installed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
GROUPS = ("fanout", "latejoin", "lookup", "memory", "harness", "http", "workers")
SINGLE_PROCESS_GROUPS = GROUPS[:-1]
"""What upstream is measured in: it runs a task once per process and relays nothing to another."""
PG_URL = "postgres://postgres@127.0.0.1:5432/streamspec_bench"
"""The workers group's database unless STREAMSPEC_PG_URL says otherwise (created if missing)."""
UPSTREAM_DIST = "django-streaming-coordinator"
DEFAULT_VARIANTS = {
    # The reference without its database event log (one process only): what the log costs.
    "reference-nolog": {"STREAMING_EVENT_LOG": False},
    # Every append through the log's writer thread, as on a database other than a SQLite file in
    # WAL mode: what appending on the loop's thread saves.
    "reference-threadlog": {"STREAMING_LOG_ON_LOOP": False},
}
VARIANT_GROUPS = ("fanout", "http")


@dataclass
class Contender:
    label: str
    sut: str
    python: str
    raw: bool = False
    settings: dict = field(default_factory=dict)
    groups: tuple[str, ...] = GROUPS


def _has_upstream(python: str) -> bool:
    probe = f"import importlib.metadata as m; m.version({UPSTREAM_DIST!r})"
    return subprocess.run([python, "-c", probe], capture_output=True).returncode == 0


def _upstream_python(option: str | None) -> str | None:
    candidate = option or os.environ.get("STREAMSPEC_UPSTREAM_PYTHON") or sys.executable
    return candidate if _has_upstream(candidate) else None


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1:]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (sets BENCH_QUICK=1)")
    parser.add_argument("--groups", default=",".join(GROUPS), help=f"comma-separated subset of {GROUPS}")
    parser.add_argument("--reference-python", default=sys.executable)
    parser.add_argument("--upstream-python", default=None)
    parser.add_argument("--no-upstream", action="store_true", help="measure the reference (and raw) only")
    parser.add_argument("--no-variants", action="store_true",
                        help=f"skip the reference variants ({', '.join(DEFAULT_VARIANTS)})")
    parser.add_argument("--mutants", action="store_true",
                        help="also time the detection of every mutant (BENCH_MUTANTS=1; minutes)")
    parser.add_argument("--passes", type=int, default=1,
                        help="run everything this many times, interleaved; the report keeps each "
                             "figure's best pass (steadier on a shared machine, N times longer)")
    parser.add_argument("--out", default=str(REPO_ROOT / "reports"), help="report folder")
    parser.add_argument("--no-render", action="store_true")
    return parser.parse_args(argv), extra


def contenders(args: argparse.Namespace) -> list[Contender]:
    found = [Contender("reference", "reference", args.reference_python, raw=True)]
    if not args.no_upstream:
        python = _upstream_python(args.upstream_python)
        if python is None:
            raise SystemExit(
                f"{UPSTREAM_DIST} is not installed for the upstream interpreter: install it "
                f"(pip install {UPSTREAM_DIST}==0.2.1), pass --upstream-python, or use --no-upstream"
            )
        found.append(Contender("upstream", "upstream", python, groups=SINGLE_PROCESS_GROUPS))
    if not args.no_variants:
        for label, settings in DEFAULT_VARIANTS.items():
            found.append(Contender(label, "reference", args.reference_python, settings=settings,
                                   groups=VARIANT_GROUPS))
    return found


def run_one(contender: Contender, group: str, raw_dir: Path, log_dir: Path, extra: list[str],
            env: dict[str, str], suffix: str = "") -> int:
    json_path = raw_dir / f"{contender.label}-{group}{suffix}.json"
    log_path = log_dir / f"{contender.label}-{group}{suffix}.log"
    command = [
        contender.python, "-m", "pytest", f"benchmarks/test_{group}.py", "--sut", contender.sut,
        f"--bench-raw={'yes' if contender.raw else 'no'}", f"--benchmark-json={json_path}",
        "-p", "no:cacheprovider", "-q", "-o", "timeout=900", *extra,
    ]
    run_env = dict(env)
    run_env["BENCH_LABEL"] = contender.label
    if group == "workers":  # several server processes share a PostgreSQL database
        url = env.get("STREAMSPEC_PG_URL", PG_URL)
        made = subprocess.run([contender.python, str(REPO_ROOT / ".ci" / "ensure_postgres.py"), url],
                              capture_output=True, text=True)
        if made.returncode != 0:
            print(f"  {contender.label:<18} {group + suffix:<15} not run: {made.stderr.strip()}", flush=True)
            return made.returncode
        run_env["DATABASE_URL"] = url
    if contender.settings:
        run_env["BENCH_DJANGO_SETTINGS"] = json.dumps(contender.settings)
    started = time.monotonic()
    with open(log_path, "wb") as log:
        status = subprocess.run(command, cwd=REPO_ROOT, env=run_env, stdout=log,
                                stderr=subprocess.STDOUT).returncode
    verdict = "ok" if status == 0 else f"exit {status}, see {log_path.relative_to(REPO_ROOT)}"
    print(f"  {contender.label:<18} {group + suffix:<15} {time.monotonic() - started:6.1f} s  {verdict}",
          flush=True)
    return status


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(sys.argv[1:] if argv is None else argv)
    groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise SystemExit(f"unknown groups {unknown}: choose from {GROUPS}")
    out = Path(args.out)
    bench_dir = out / "bench"
    raw_dir, log_dir = bench_dir / "raw", bench_dir / "logs"
    if (bench_dir / "results.json").exists():
        shutil.copyfile(bench_dir / "results.json", bench_dir / "previous.json")
    for folder in (raw_dir, log_dir):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    env = dict(os.environ)
    if args.quick:
        env["BENCH_QUICK"] = "1"
    if args.mutants:
        env["BENCH_MUTANTS"] = "1"
    env.pop("STREAMSPEC_SUT", None)  # --sut decides
    everyone = contenders(args)
    print(f"benchmarks: {', '.join(c.label for c in everyone)}; groups {', '.join(groups)}"
          f"{' (quick)' if args.quick else ''}", flush=True)
    started = time.monotonic()
    failures = 0
    for number in range(1, args.passes + 1):
        suffix = f"-pass{number}" if args.passes > 1 else ""
        for group in groups:
            for contender in everyone:
                if group in contender.groups:
                    status = run_one(contender, group, raw_dir, log_dir, extra, env, suffix)
                    failures += status not in (0, 5)
    print(f"benchmarks done in {time.monotonic() - started:.0f} s; {failures} failed run(s)", flush=True)
    if not args.no_render:
        from benchmarks.render import render

        report = render(sorted(raw_dir.glob("*.json")), out, bench_dir / "previous.json")
        print(f"report: {report}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))
    sys.exit(main())
