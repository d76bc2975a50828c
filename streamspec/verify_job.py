"""`streamspec verify`, the main job: search an implementation, then write its reports, extend its
corpus and compare the run with its baseline.

Every step has a name (:class:`VerifyJob`): check the arguments, load the corpus and baseline,
replay the corpus, search, report each violated clause, extend the corpus, compare with the
baseline, summarise. Reports are written into a temporary folder beside the target and moved into
place at the end, so a failed run leaves the previous reports as they were.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import scenarios
from harness import spec
from streamspec.console import (
    EXIT_OK,
    EXIT_VIOLATED,
    Progress,
    UsageError,
    configure,
    display,
    load,
    parse_clauses,
    versions,
)
from streamspec.corpus import (
    Corpus,
    CorpusError,
    compare,
    failure_document,
    folder_name,
    read_baseline,
    write_baseline,
)
from streamspec.reports import write_failure, write_index, write_summary
from streamspec.reports.summary import clause_row, to_terminal

__all__ = ["MODES", "VerifyJob", "verify_command"]

MODES = ("inproc", "http")


class VerifyJob:
    """One `streamspec verify` run, step by step (see the module docstring)."""

    def __init__(self, args: argparse.Namespace, progress: Callable[[str], None] | None = None) -> None:
        self.args = args
        self.clauses = self._check_arguments()
        self.families = self._families()
        self.adapter = load(args.sut)
        sut_dir = folder_name(self.adapter.name)
        self.out = Path(args.out) if args.out else Path("reports") / sut_dir
        self.baseline_path = Path(args.baseline) if args.baseline else None
        if args.update_baseline and self.baseline_path is None:
            self.baseline_path = Path("baselines") / f"{sut_dir}.json"
        self.expected = self._read_baseline()
        self.corpus = None if args.no_corpus else Corpus(Path(args.corpus), self.adapter.name)
        self.stored = self._read_corpus()
        self.progress = progress
        self.notes: list[str] = []

    # -- checking the arguments (nothing is written before these pass) ------------------------

    def _check_arguments(self) -> list[str] | None:
        args = self.args
        if args.mode not in MODES:
            raise UsageError(f"unknown mode {args.mode!r}: use inproc or http")
        if args.profile not in scenarios.PROFILES:
            raise UsageError(f"unknown profile {args.profile!r}: use one of {', '.join(scenarios.PROFILES)}")
        if args.jobs < 0:
            raise UsageError(f"--jobs {args.jobs}: give 0 (one per core) or more")
        return parse_clauses(args.clauses)

    def _families(self) -> list[str] | None:
        if not self.args.families:
            return None
        families = [f.strip() for f in self.args.families.split(",") if f.strip()]
        unknown = [f for f in families if f not in scenarios.FAMILIES]
        if unknown:
            raise UsageError(f"unknown family {unknown[0]!r}: use some of {', '.join(scenarios.FAMILIES)}")
        return families

    def _read_baseline(self) -> dict[str, str] | None:
        path = self.baseline_path
        if path is None or not (path.exists() or not self.args.update_baseline):
            return None
        try:
            return read_baseline(path)
        except CorpusError as exc:
            raise UsageError(str(exc)) from None

    def _read_corpus(self) -> list[Any]:
        if self.corpus is None:
            return []
        try:
            return self.corpus.entries()
        except CorpusError as exc:
            raise UsageError(f"corpus: {exc}") from None

    # -- the run ------------------------------------------------------------------------------

    def run(self, out_stream: Any) -> int:
        tmp = prepare_folder(self.out)
        try:
            say = self.progress or Progress()
            configure(self.adapter)
            self.versions = versions(self.adapter)
            started = time.perf_counter()
            entry_results = self._replay_corpus(say)
            result = self._search(say)
            rows, reported = _rows(result, entry_results, self.clauses)
            self._report(tmp, rows, reported, say)
            added = self._extend_corpus(reported, entry_results, say)
            baseline_info = self._compare_baseline(rows)
            data = self._summary(result, rows, entry_results, added, baseline_info, started)
            write_summary(tmp, data)
            move_into_place(tmp, self.out)
            try:
                write_index(self.out.parent)
            except OSError as exc:
                self.notes.append(f"index.html not written: {exc}")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        color = hasattr(out_stream, "isatty") and out_stream.isatty() and not os.environ.get("NO_COLOR")
        print(to_terminal(data, color=color), file=out_stream)
        return data["exit_code"]

    def _replay_corpus(self, say: Callable[[str], None]) -> list[Any]:
        if self.corpus is None or not self.stored:
            return []
        say(f"replaying {len(self.stored)} corpus entries from {display(self.corpus.folder)}")
        entry_results = self.corpus.replay(self.adapter, clauses=set(self.clauses) if self.clauses else None)
        for e in entry_results:
            say(f"  {e.path.name}: {e.status}")
        return entry_results

    def _search(self, say: Callable[[str], None]) -> Any:
        args = self.args
        say(f"searching: profile {args.profile}" + (f", seed {args.seed}" if args.seed is not None else ""))
        result = scenarios.verify(self.adapter, families=self.families, profile=args.profile, seed=args.seed,
                                  clauses=set(self.clauses) if self.clauses else None, progress=say,
                                  fail_fast=args.fail_fast, jobs=args.jobs, sut=args.sut)
        if args.fail_fast and result.failed:
            self.notes.append("the search stopped at its first failure (--fail-fast): the verdicts of the "
                              "other clauses rest on the examples run until then")
        return result

    def _report(self, folder: Path, rows: list[dict[str, Any]], reported: dict[str, Any],
                say: Callable[[str], None]) -> None:
        """A bug report, replay file, timeline and standalone script per violated clause."""
        for clause_id, failure in reported.items():
            outcome = _outcome_for_report(failure, self.adapter)
            files, repro = write_failure(folder, failure=failure, outcome=outcome, adapter=self.adapter,
                                         versions=self.versions, sut=self.args.sut,
                                         make_repro=not self.args.no_repro, say=say)
            row = next(r for r in rows if r["clause"] == clause_id)
            row["files"] = files
            if repro is not None:
                row["repro"] = "reproduces" if repro.reproduced else repro.note

    def _extend_corpus(self, reported: dict[str, Any], entry_results: list[Any],
                       say: Callable[[str], None]) -> list[str]:
        added: list[str] = []
        if self.corpus is None:
            return added
        covered = {e.clause for e in entry_results if e.fails}
        for failure in reported.values():
            if failure.outcome is None or failure.clause in covered:
                continue  # a stored entry already shows this clause failing
            path = self.corpus.add(failure_document(failure, sut=self.args.sut, versions=self.versions))
            if path is not None:
                added.append(display(path))
                say(f"corpus: added {display(path)}")
        return added

    def _compare_baseline(self, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
        path = self.baseline_path
        if path is None:
            return None
        if self.args.update_baseline:
            self.expected = write_baseline(path, sut=self.args.sut, versions=self.versions, rows=rows,
                                           previous=self.expected)
            self.notes.append(f"baseline {display(path)} written: expected failures "
                              f"{', '.join(self.expected) or 'none'}")
        expected = self.expected
        assert expected is not None
        new, stale = compare(expected, rows, strict=self.args.strict)
        for row in rows:
            if row["clause"] in expected:
                row["baseline"] = "stale" if row["clause"] in stale else "expected"
            elif row["clause"] in new:
                row["baseline"] = "new"
        return {"file": display(path), "expected": sorted(expected), "new": new, "stale": stale}

    def _summary(self, result: Any, rows: list[dict[str, Any]], entry_results: list[Any], added: list[str],
                 baseline_info: dict[str, Any] | None, started: float) -> dict[str, Any]:
        args = self.args
        exit_code, conclusion = _conclusion(rows, baseline_info, strict=args.strict)
        return {
            "format": "streamspec.summary",
            "version": 1,
            "sut": self.out.name,
            "adapter": args.sut,
            "versions": self.versions,
            "mode": args.mode,
            "profile": result.profile,
            "seed": result.seed,
            "seconds": round(time.perf_counter() - started, 3),
            "examples": dict(result.examples),
            # Per violation key ("S4", "S4:processes"), how far into the search it first failed: a
            # clause row gives only its reported variant's, and `streamspec power` compares seeds.
            "first_finds": {
                key: {"examples": f["examples_to_first"], "seconds": f["seconds_to_first"]}
                for key, f in result.stats.get("failures", {}).items()
            },
            "strict": bool(args.strict),
            "clauses": rows,
            "conclusion": conclusion,
            "exit_code": exit_code,
            "corpus": {
                "folder": display(self.corpus.folder) if self.corpus is not None else None,
                "entries": [
                    {"file": e.path.name, "clause": e.clause, "status": e.status} for e in entry_results
                ],
                "added": added,
            },
            "baseline": baseline_info,
            "notes": self.notes,
            "stats": {
                **{k: v for k, v in result.stats.items() if isinstance(v, int | float | str)},
                # Examples that violated each clause, searched for or not (a run may target a few).
                "violating_examples": {
                    c: n for c, n in result.stats.get("violations_by_clause", {}).items() if n
                },
            },
            "folder": display(self.out),
            "finished_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        }


def verify_command(
    args: argparse.Namespace, *, out_stream: Any = None, progress: Callable[[str], None] | None = None
) -> int:
    """Run the verify job; its exit status (0, 1; a UsageError for 2)."""
    if args.mode == "http":
        from streamspec.wire_job import run_wire_job

        if args.mode not in MODES:
            raise UsageError(f"unknown mode {args.mode!r}: use inproc or http")
        return run_wire_job(args, out_stream or sys.stdout)
    return VerifyJob(args, progress).run(out_stream or sys.stdout)


def prepare_folder(out: Path) -> Path:
    """A fresh temporary folder beside `out` (so the final move is a rename); UsageError if the
    place cannot be written."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"output folder {display(out)} exists and is not a folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as exc:
        raise UsageError(f"cannot write the output folder {display(out)}: {exc.strerror or exc}") from None
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; a report folder is an ordinary one
    return tmp


def move_into_place(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)



def _rows(result: Any, entry_results: list[Any], clauses: list[str] | None) -> tuple[list[dict], dict]:
    """The conformance rows, and the failure to report per violated clause (the search's smallest,
    else a corpus entry that still fails)."""
    rows: list[dict[str, Any]] = []
    reported: dict[str, Any] = {}
    for c in spec.CLAUSES:
        row = clause_row(c.id)
        summary = result.clauses.get(c.id)
        stored = [e for e in entry_results if e.clause == c.id and e.fails]
        if clauses is not None and c.id not in clauses:
            row.update(verdict="skipped", examples=0, note="not selected with --clauses")
            rows.append(row)
            continue
        verdict = summary.verdict if summary is not None else "unknown"
        failure = summary.failure if summary is not None else None
        source = "search" if failure is not None else None
        if failure is None and stored:
            failure, source = stored[0].failure, "corpus"
        if failure is not None:
            verdict = "fail"
        row.update(verdict=verdict, examples=summary.examples if summary is not None else 0)
        if summary is not None and getattr(summary, "verdicts", None):
            row["verdicts"] = dict(summary.verdicts)
        if failure is not None:
            outcome = failure.outcome
            explanations = [v.explanation for v in outcome.result(c.id).violations] if outcome else []
            row.update(
                source=source,
                family=failure.family,
                examples_to_first=failure.examples_to_first if source == "search" else None,
                seconds_to_first=failure.seconds_to_first if source == "search" else None,
                operations=sum(1 for _ in _leaves(failure.program)),
                violation=explanations[0] if explanations else "",
                violations=explanations[:10],
            )
            reported[c.id] = failure
        elif verdict == "unknown":
            row["note"] = "no example could judge it (every history was cut short or vacuous)"
        rows.append(row)
    return rows, reported


def _leaves(program: list[dict[str, Any]]) -> Any:
    for step in program:
        if step.get("op") == "concurrently":
            yield from _leaves(step.get("steps", []))
        else:
            yield step


def _outcome_for_report(failure: Any, adapter: Any) -> Any:
    """The failing run with its captured stacks: the failure's own outcome if it has them, else
    a replay (the same history, byte for byte)."""
    outcome = failure.outcome
    if outcome is not None and getattr(outcome, "stacks", None) is not None:
        return outcome
    replayed = scenarios.replay(failure, adapter=adapter)
    return replayed if outcome is None or replayed.history == outcome.history else outcome


def _conclusion(
    rows: list[dict[str, Any]], baseline: dict[str, Any] | None, *, strict: bool
) -> tuple[int, str]:
    musts = [r["clause"] for r in rows if r["verdict"] == "fail" and r["level"] == "MUST"]
    shoulds = [r["clause"] for r in rows if r["verdict"] == "fail" and r["level"] == "SHOULD"]
    if baseline is not None:
        problems = []
        if baseline["new"]:
            problems.append(f"new failure{'s' * (len(baseline['new']) > 1)} {', '.join(baseline['new'])}")
        if baseline["stale"]:
            problems.append(
                f"stale baseline entr{'ies' if len(baseline['stale']) > 1 else 'y'} "
                f"{', '.join(baseline['stale'])} (now passing: remove from the baseline)"
            )
        if problems:
            return EXIT_VIOLATED, "FAILED against the baseline: " + "; ".join(problems)
        known = [c for c in [*musts, *shoulds] if c in baseline["expected"]]
        return EXIT_OK, (
            "OK against the baseline" + (f": known failures {', '.join(known)}" if known else "")
        )
    if musts:
        return (
            EXIT_VIOLATED,
            f"DOES NOT CONFORM: MUST clause{'s' * (len(musts) > 1)} {', '.join(musts)} violated",
        )
    if shoulds and strict:
        return (
            EXIT_VIOLATED,
            f"FAILED (--strict): SHOULD clause{'s' * (len(shoulds) > 1)} {', '.join(shoulds)} violated",
        )
    if shoulds:
        return EXIT_OK, f"CONFORMS: every MUST clause holds (SHOULD failures: {', '.join(shoulds)})"
    unknown = [r["clause"] for r in rows if r["verdict"] == "unknown"]
    return EXIT_OK, "CONFORMS: every MUST clause holds" + (
        f" (not judged: {', '.join(unknown)})" if unknown else ""
    )


