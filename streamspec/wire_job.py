"""`streamspec verify --mode http`: search an implementation over the wire and write its reports.

The implementation runs as real server processes on loopback ports (see `harness.wire`); the
reports go to ``reports/<sut>-http/`` (or ``--out``): ``summary.json``, ``summary.md`` and one
``<clause>.md`` per violated clause with the program, the reproduction rate, the violations with
their evidence records, and the tail of every server's log.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness import spec
from harness.errors import ConfigError
from harness.history import History
from harness.wire.timeline import client_timeline
from streamspec.console import (
    EXIT_OK,
    EXIT_VIOLATED,
    Progress,
    UsageError,
    configure,
    display,
    load,
    versions,
)
from streamspec.corpus import folder_name
from streamspec.repro import script_name
from streamspec.verify_job import move_into_place, prepare_folder
from streamspec.wire_repro import build_wire_script

__all__ = ["run_wire_job"]

NOT_CONTROLLED = (
    "Over the wire the harness chooses the operations and their order, not the interleavings inside "
    "and between the server processes: those are the operating system's. A failure is therefore "
    "re-run and its reproduction rate given; a failure that does not always come back is marked flaky."
)


def _database_url() -> str:
    from django.conf import settings

    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    db = settings.DATABASES["default"]
    return "sqlite:///" + str(db["NAME"])


def run_wire_job(args: argparse.Namespace, out_stream: Any) -> int:
    from scenarios.wire import WIRE_PROFILES, search_wire

    if args.profile not in WIRE_PROFILES:
        raise UsageError(f"unknown profile {args.profile!r}: use one of {', '.join(WIRE_PROFILES)}")
    if args.families:
        raise UsageError("--families applies to --mode inproc only: the HTTP mode has one scenario family")
    if getattr(args, "jobs", 0) not in (0, 1):
        raise UsageError("--jobs applies to --mode inproc only (the HTTP mode runs one search)")
    for flag in ("baseline", "update_baseline", "fail_fast"):
        if getattr(args, flag, None):
            raise UsageError(f"--{flag.replace('_', '-')} applies to --mode inproc only (for now)")
    clauses = None
    if args.clauses:
        clauses = {c.strip() for c in args.clauses.split(",") if c.strip()}
        unknown = sorted(c for c in clauses if c not in spec.BY_ID)
        if unknown:
            raise UsageError(f"unknown clause {unknown[0]!r}: use some of {', '.join(spec.BY_ID)}")
    adapter = load(args.sut)
    out = Path(args.out) if args.out else Path("reports") / f"{folder_name(adapter.name)}-http"
    if out.exists() and not out.is_dir():
        raise UsageError(f"output folder {display(out)} exists and is not a folder")
    configure(adapter)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(2), "big")
    say = Progress()
    say(f"searching over HTTP: profile {args.profile}, seed {seed}")
    logs = tempfile.mkdtemp(prefix="streamspec-wire-")
    try:
        result = search_wire(adapter, args.sut, _database_url(), logs, profile=args.profile, seed=seed,
                             clauses=clauses, progress=say)
    except ConfigError as exc:
        # The implementation's server does not start: a setup problem, not a verdict (exit 2).
        raise UsageError(f"--mode http: {exc}") from None
    finally:
        shutil.rmtree(logs, ignore_errors=True)
    rows = []
    for c in (*spec.CLAUSES, *spec.WIRE_CLAUSES):
        if clauses is not None and c.id not in clauses:
            continue
        failure = result.failures.get(c.id)
        rows.append({
            "clause": c.id, "title": c.title, "level": str(c.level), "verdict": result.verdict(c.id),
            "verdicts": result.verdicts.get(c.id, {}),
            "reproduced": failure.rate if failure else None, "flaky": failure.flaky if failure else None,
            "report": f"{c.id}.md" if failure else None,
        })
    must_fail = [r["clause"] for r in rows
                 if r["verdict"] == "fail" and (r["level"] == "MUST" or args.strict)]
    exit_code = EXIT_VIOLATED if must_fail else EXIT_OK
    # Written beside the target and moved into place at the end, as the in-process job does: a
    # previous run's reports never mix with this one's, and a failed run leaves them as they were.
    folder = prepare_folder(out)
    try:
        _write(folder, adapter, args, seed, result, rows, exit_code)
        move_into_place(folder, out)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    print(f"{adapter.name} over HTTP: {result.examples} examples in {result.seconds:.0f} s, seed {seed}",
          file=out_stream)
    for row in rows:
        flaky = ", flaky" if row["flaky"] else ""
        extra = f" (reproduced {row['reproduced']}{flaky})" if row["reproduced"] else ""
        print(f"  {row['clause']:<5} {row['verdict'].upper():<8} {row['level']:<7} {row['title']}{extra}",
              file=out_stream)
    print(f"reports: {display(out)}", file=out_stream)
    return exit_code


def _write(out: Path, adapter: Any, args: argparse.Namespace, seed: int, result: Any,
           rows: list[dict[str, Any]], exit_code: int) -> None:
    from scenarios.wire import STEP_PAUSE

    found = versions(adapter)
    named = (found.get("implementation", adapter.name), found.get("version"))
    implementation = " ".join(str(v) for v in named if v)
    for clause_id, failure in result.failures.items():
        report = _failure_report(adapter, found, args, seed, failure)
        (out / f"{clause_id}.md").write_text(report, encoding="utf-8")
        script = build_wire_script(clause=clause_id, sut=args.sut, implementation=implementation,
                                   program=failure.program, command=_command(args, seed, clause_id),
                                   rate=failure.rate, step_pause=STEP_PAUSE)
        (out / script_name(clause_id)).write_text(script, encoding="utf-8")
    summary = {
        "format": "streamspec.summary", "version": 1, "sut": _target_name(args, adapter), "adapter": args.sut,
        "mode": "http",
        "versions": found, "profile": args.profile, "seed": seed,
        "seconds": round(result.seconds, 3), "examples": {"http": result.examples},
        "clauses": rows, "not_controlled": NOT_CONTROLLED, "exit_code": exit_code,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    text = _summary_md(summary) + _observations_md(result.observations)
    (out / "summary.md").write_text(text, encoding="utf-8")


def _target_name(args: argparse.Namespace, adapter: Any) -> str:
    return Path(args.out).name if args.out else f"{folder_name(adapter.name)}-http"


def _summary_md(summary: dict[str, Any]) -> str:
    lines = [f"# {summary['sut']}: streamspec over HTTP", "",
             f"Profile {summary['profile']}, seed {summary['seed']}, {summary['examples']['http']} examples, "
             f"{summary['seconds']:.0f} s.", "", summary["not_controlled"], "",
             "| Clause | Level | Verdict | Reproduced | Report |", "|---|---|---|---|---|"]
    for r in summary["clauses"]:
        rate = (r["reproduced"] or "") + (" flaky" if r["flaky"] else "")
        report = f"[{r['report']}]({r['report']})" if r["report"] else ""
        verdict = r["verdict"].upper()
        lines.append(f"| {r['clause']} {r['title']} | {r['level']} | {verdict} | {rate} | {report} |")
    return "\n".join(lines) + "\n"


def _observations_md(observations: dict[str, Any]) -> str:
    """What clients saw in the first example of each situation of `OBSERVED`, whatever the verdicts."""
    if not observations:
        return ""
    lines = ["", "## What clients saw", ""]
    for kind, (program, history) in observations.items():
        lines += [f"### Across {kind}", "", "Program: `" + json.dumps(program[1:]) + "`", "", "```",
                  *client_timeline(history), "```", ""]
    return "\n".join(lines)


def _command(args: argparse.Namespace, seed: int, clause: str) -> str:
    return (f"streamspec verify --sut {args.sut} --mode http --profile {args.profile} --seed {seed} "
            f"--clauses {clause}")


def _evidence(history: History, indices: tuple[int, ...]) -> list[str]:
    shown = sorted(set(indices))
    return [f"    #{i} {history[i]!r}" for i in shown if 0 <= i < len(history.records)]


def _failure_report(adapter: Any, found_versions: dict[str, str], args: argparse.Namespace, seed: int,
                    failure: Any) -> str:
    clause = spec.clause(failure.clause)
    result = next(r for r in failure.results if r.clause == failure.clause)
    lines = [
        f"# {clause.id} {clause.title} violated by {adapter.name} over HTTP", "",
        f"**{clause.level}**, severity {clause.severity}. {clause.requirement}", "",
        f"Implementation: {', '.join(f'{k} {v}' for k, v in found_versions.items())}.", "",
        f"Reproduced {failure.rate} re-runs"
        + (" (**flaky**: it does not always come back)" if failure.flaky else "")
        + f"; found after {failure.examples_to_first} examples"
        + ("" if failure.shrunk else " (not shrunk: it failed beside another clause's search)") + ".",
        "", NOT_CONTROLLED, "",
        "## Reproduce", "",
        f"Standalone: `python {script_name(clause.id)}` (beside this report) starts the servers itself and "
        "runs the program below until the violation shows (up to 5 times; `--attempts N`): it needs "
        "only the implementation installed (with Django, httpx and httpx-sse), not streamspec. "
        "The search that found it:", "",
        "```", _command(args, seed, clause.id), "```", "",
        "## The program", "", "```json", json.dumps(failure.program, indent=1), "```", "",
        "## What went wrong", "",
    ]
    for violation in result.violations:
        lines += [f"- {violation.explanation}", "", "  Evidence:", "", "```",
                  *_evidence(failure.history, violation.evidence), "```", ""]
    others = [r.clause for r in failure.results if str(r.verdict) == "fail" and r.clause != clause.id]
    if others:
        lines += [f"The same run also fails {', '.join(others)}.", ""]
    lines += ["## Fix hint", "", clause.fix_hint, "", "## The history", "", "```",
              *(f"#{r.index} {r!r}" for r in failure.history.records), "```", "", "## Server logs (tail)", ""]
    for name, tail in failure.logs.items():
        lines += [f"### {name}", "", "```", tail, "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(2)
