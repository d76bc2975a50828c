"""`streamspec`: validate an implementation and write its reports; replay a failure; rebuild the index.

    streamspec verify --sut NAME|module:Class [--mode inproc|http] [--profile dev|ci|thorough]
                      [--seed N] [--clauses S1,S3] [--families joins,...] [--out DIR] [--strict]
                      [--baseline FILE] [--update-baseline] [--corpus DIR | --no-corpus] [--no-repro]
    streamspec replay FILE [--sut NAME|module:Class]
    streamspec index [DIR]

(also ``python -m streamspec ...``). One verify run verifies one implementation, in this process: it
configures Django for it (an implementation cannot share a process with another, see
`harness.django_setup`). Exit status: 0 when every MUST clause holds (with ``--baseline``: when the
failures are exactly the expected ones), 1 when a MUST clause is violated (or a new failure or a
stale baseline entry appears), 2 for a usage or configuration error, reported in one line; nothing
is written then. SHOULD failures are listed separately and fail the run only with ``--strict``.
Reports are written into a temporary folder beside the target and moved into place at the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any

from harness import spec
from harness.errors import StreamspecError

EXIT_OK, EXIT_VIOLATED, EXIT_USAGE = 0, 1, 2
MODES = ("inproc", "http")
PROFILES = ("dev", "ci", "thorough")


class UsageError(Exception):
    """A usage or configuration error: one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own errors: one line, exit 2
        raise UsageError(
            f"{message} (see `streamspec {self.prog.split()[-1]} --help`)" if " " in self.prog else message
        )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="streamspec",
        description="Verify a Django streaming-task coordinator against "
        "the streamspec specification (SPEC.md) and write bug reports.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    v = sub.add_parser(
        "verify",
        help="verify an implementation and write its report folder",
        description="Search the scenario families for clause violations, write reports/<sut>/ "
        "(or --out) and reports/index.html. Exit 0 when every MUST holds, 1 when one is "
        "violated, 2 for a usage or configuration error.",
    )
    v.add_argument(
        "--sut",
        required=True,
        metavar="NAME|module:Class",
        help="the implementation: reference, upstream, an entry point, or package.module:Adapter",
    )
    v.add_argument(
        "--mode",
        default="inproc",
        help="inproc (drive the coordinator in this process) or http (black-box over SSE; planned)",
    )
    v.add_argument("--profile", default="ci", help="search budget: dev, ci (default) or thorough")
    v.add_argument("--seed", type=int, default=None, help="the search seed (default: random, printed)")
    v.add_argument("--clauses", default=None, metavar="S1,S3", help="only these clauses (default: all)")
    v.add_argument("--families", default=None, metavar="joins,...", help="only these scenario families")
    v.add_argument("--out", default=None, metavar="DIR", help="report folder (default: reports/<sut>)")
    v.add_argument("--strict", action="store_true", help="SHOULD failures fail the run too")
    v.add_argument(
        "--baseline",
        default=None,
        metavar="FILE",
        help="expected failures: fail on a new failure or on a stale entry that now passes",
    )
    v.add_argument(
        "--update-baseline",
        action="store_true",
        help="write the failures of this run into --baseline FILE (default baselines/<sut>.json)",
    )
    v.add_argument(
        "--corpus",
        default="corpus",
        metavar="DIR",
        help="regression corpus root, replayed first and extended (default: corpus)",
    )
    v.add_argument("--no-corpus", action="store_true", help="neither replay nor extend the corpus")
    v.add_argument("--no-repro", action="store_true", help="skip generating the standalone repro scripts")

    r = sub.add_parser(
        "replay",
        help="rerun a recorded failure (S1-identity.json, a corpus entry)",
        description="Rerun exactly the recorded run (program and choice tape) and say whether "
        "the violation is still there: exit 1 if it is, 0 if the clause holds now, 2 if the "
        "file cannot be used.",
    )
    r.add_argument("file", metavar="FILE")
    r.add_argument(
        "--sut",
        default=None,
        metavar="NAME|module:Class",
        help="replay against another implementation than the one recorded",
    )

    m = sub.add_parser(
        "mutants",
        help="verify every mutant of a catalogue and write mutants.md/.json",
        description="Verify each mutant in a process of its own, run the example-based baseline "
        "against it, check the clean implementation over several seeds, and write "
        "<out>/mutants.md and mutants.json. Exit 1 when a mutant survives or the clean "
        "implementation fails, 0 otherwise.",
    )
    m.add_argument(
        "--catalogue", default="tests.mutants", metavar="MODULE",
        help="module with CATALOGUE, an adapter per mutant and run_baseline (default: tests.mutants)",
    )
    m.add_argument("--profile", default="ci", help="search budget: dev, ci (default) or thorough")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--guard-seeds", type=int, default=10, metavar="N",
                   help="seeds over which the clean implementation must pass (default: 10)")
    m.add_argument("--only", default=None, metavar="NAME,...", help="only these mutants")
    m.add_argument("--out", default="reports", metavar="DIR")
    m.add_argument("--timeout", type=float, default=600.0, help="seconds per verify run")
    m.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="verify runs at once, each a process of its own (default: 1; at most one per "
                   "core, or the seconds to first detection stretch)")

    i = sub.add_parser("index", help="rebuild index.html from the summaries in a reports folder")
    i.add_argument("folder", nargs="?", default="reports", metavar="DIR")
    return parser


# -- small helpers ------------------------------------------------------------------------------


def _parse_clauses(text: str | None) -> list[str] | None:
    if text is None:
        return None
    by_upper = {c.upper(): c for c in spec.BY_ID}
    wanted = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part.upper() not in by_upper:
            raise UsageError(f"unknown clause {part!r}: use some of {', '.join(spec.BY_ID)}")
        wanted.append(by_upper[part.upper()])
    if not wanted:
        raise UsageError("--clauses names no clause")
    return list(dict.fromkeys(wanted))


def _versions(adapter: Any) -> dict[str, str]:
    import django
    import hypothesis

    try:
        own = dist_version("streamspec")
    except PackageNotFoundError:
        own = "source"
    av = adapter.versions()
    return {
        "implementation": str(av.get("implementation", adapter.name)),
        "implementation_version": str(av.get("version", "")),
        "django": django.get_version(),
        "python": platform.python_version(),
        "streamspec": own,
        "hypothesis": hypothesis.__version__,
    }


def _display(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return str(path)


class Progress:
    """Progress lines on stderr: by default only when it is a terminal (dimmed there)."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.tty = sys.stderr.isatty()
        self.enabled = self.tty if enabled is None else enabled
        self.started = time.monotonic()

    def __call__(self, line: str) -> None:
        if self.enabled:
            elapsed = time.monotonic() - self.started
            text = f"[{elapsed:6.1f}s] {line.strip()}"
            sys.stderr.write(f"\033[2m{text}\033[0m\n" if self.tty else text + "\n")
            sys.stderr.flush()


def _prepare_folder(out: Path) -> Path:
    """A fresh temporary folder beside `out` (so the final move is a rename); UsageError if the
    place cannot be written."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"output folder {_display(out)} exists and is not a folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as exc:
        raise UsageError(f"cannot write the output folder {_display(out)}: {exc.strerror or exc}") from None
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; a report folder is an ordinary one
    return tmp


def _move_into_place(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# -- verify -------------------------------------------------------------------------------------


def _load(sut: str) -> Any:
    from harness.adapters import load_adapter

    try:
        return load_adapter(sut)
    except StreamspecError as exc:
        raise UsageError(str(exc)) from None


def _configure(adapter: Any) -> None:
    from harness.django_setup import configure

    try:
        configure(adapter, os.environ.get("DATABASE_URL"))
    except StreamspecError as exc:
        raise UsageError(str(exc)) from None
    except Exception as exc:  # the implementation's app failed to load: a configuration error too
        raise UsageError(f"cannot set Django up for {adapter.name!r}: {type(exc).__name__}: {exc}") from None


def verify_command(
    args: argparse.Namespace, *, out_stream: Any = None, progress: Callable[[str], None] | None = None
) -> int:
    from streamspec.corpus import Corpus, CorpusError, compare, folder_name, read_baseline, write_baseline

    out_stream = out_stream or sys.stdout
    if args.mode not in MODES:
        raise UsageError(f"unknown mode {args.mode!r}: use inproc or http")
    if args.mode == "http":
        raise UsageError(
            "--mode http is not implemented yet: the black-box HTTP mode is planned; use --mode inproc"
        )
    if args.profile not in PROFILES:
        raise UsageError(f"unknown profile {args.profile!r}: use one of {', '.join(PROFILES)}")
    clauses = _parse_clauses(args.clauses)
    import scenarios

    families = None
    if args.families:
        families = [f.strip() for f in args.families.split(",") if f.strip()]
        unknown = [f for f in families if f not in scenarios.FAMILIES]
        if unknown:
            raise UsageError(f"unknown family {unknown[0]!r}: use some of {', '.join(scenarios.FAMILIES)}")
    adapter = _load(args.sut)
    sut_dir = folder_name(adapter.name)
    out = Path(args.out) if args.out else Path("reports") / sut_dir
    baseline_path = Path(args.baseline) if args.baseline else None
    if args.update_baseline and baseline_path is None:
        baseline_path = Path("baselines") / f"{sut_dir}.json"
    expected: dict[str, str] | None = None
    if baseline_path is not None and (baseline_path.exists() or not args.update_baseline):
        try:
            expected = read_baseline(baseline_path)
        except CorpusError as exc:
            raise UsageError(str(exc)) from None
    corpus = None if args.no_corpus else Corpus(Path(args.corpus), adapter.name)
    stored: list[Any] = []
    if corpus is not None:
        try:
            stored = corpus.entries()
        except CorpusError as exc:
            raise UsageError(f"corpus: {exc}") from None
    tmp = _prepare_folder(out)
    try:
        say = progress or Progress()
        _configure(adapter)
        versions = _versions(adapter)
        started = time.perf_counter()

        entry_results = []
        if corpus is not None and stored:
            say(f"replaying {len(stored)} corpus entries from {_display(corpus.folder)}")
            entry_results = corpus.replay(adapter, clauses=set(clauses) if clauses else None)
            for e in entry_results:
                say(f"  {e.path.name}: {e.status}")
        say(f"searching: profile {args.profile}" + (f", seed {args.seed}" if args.seed is not None else ""))
        result = scenarios.verify(
            adapter,
            families=families,
            profile=args.profile,
            seed=args.seed,
            clauses=set(clauses) if clauses else None,
            progress=say,
        )

        rows, reported = _rows(result, entry_results, clauses)
        written: dict[str, dict[str, str]] = {}
        for clause_id, failure in reported.items():
            outcome = _outcome_for_report(failure, adapter)
            files, repro = _write_failure(
                tmp, failure, outcome, adapter, versions, args.sut, not args.no_repro, say
            )
            written[clause_id] = files
            row = next(r for r in rows if r["clause"] == clause_id)
            row["files"] = files
            if repro is not None:
                row["repro"] = "reproduces" if repro.reproduced else repro.note
        added = []
        if corpus is not None:
            from streamspec.corpus import failure_document

            covered = {e.clause for e in entry_results if e.fails}
            for failure in reported.values():
                if failure.outcome is None or failure.clause in covered:
                    continue  # a stored entry already shows this clause failing
                doc = failure_document(failure, sut=args.sut, versions=versions)
                path = corpus.add(doc)
                if path is not None:
                    added.append(_display(path))
                    say(f"corpus: added {_display(path)}")

        baseline_info = None
        notes: list[str] = []
        if baseline_path is not None:
            if args.update_baseline:
                expected = write_baseline(
                    baseline_path, sut=args.sut, versions=versions, rows=rows, previous=expected
                )
                notes.append(
                    f"baseline {_display(baseline_path)} written: expected failures "
                    f"{', '.join(expected) or 'none'}"
                )
            assert expected is not None
            new, stale = compare(expected, rows, strict=args.strict)
            baseline_info = {
                "file": _display(baseline_path),
                "expected": sorted(expected),
                "new": new,
                "stale": stale,
            }
            for row in rows:
                if row["clause"] in expected:
                    row["baseline"] = "stale" if row["clause"] in stale else "expected"
                elif row["clause"] in new:
                    row["baseline"] = "new"

        exit_code, conclusion = _conclusion(rows, baseline_info, strict=args.strict)
        data = {
            "format": "streamspec.summary",
            "version": 1,
            "sut": out.name,
            "adapter": args.sut,
            "versions": versions,
            "mode": args.mode,
            "profile": result.profile,
            "seed": result.seed,
            "seconds": round(time.perf_counter() - started, 3),
            "examples": dict(result.examples),
            "strict": bool(args.strict),
            "clauses": rows,
            "conclusion": conclusion,
            "exit_code": exit_code,
            "corpus": {
                "folder": _display(corpus.folder) if corpus is not None else None,
                "entries": [
                    {"file": e.path.name, "clause": e.clause, "status": e.status} for e in entry_results
                ],
                "added": added,
            },
            "baseline": baseline_info,
            "notes": notes,
            "stats": {
                **{k: v for k, v in result.stats.items() if isinstance(v, int | float | str)},
                # Examples that violated each clause, searched for or not (a run may target a few).
                "violating_examples": {
                    c: n for c, n in result.stats.get("violations_by_clause", {}).items() if n
                },
            },
            "folder": _display(out),
            "finished_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        }
        from streamspec.reports import write_index, write_summary

        write_summary(tmp, data)
        _move_into_place(tmp, out)
        try:
            write_index(out.parent)
        except OSError as exc:
            notes.append(f"index.html not written: {exc}")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    from streamspec.reports.summary import to_terminal

    color = hasattr(out_stream, "isatty") and out_stream.isatty() and not os.environ.get("NO_COLOR")
    print(to_terminal(data, color=color), file=out_stream)
    return exit_code


def _rows(result: Any, entry_results: list[Any], clauses: list[str] | None) -> tuple[list[dict], dict]:
    """The conformance rows, and the failure to report per violated clause (the search's smallest,
    else a corpus entry that still fails)."""
    from streamspec.reports.summary import clause_row

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
    import scenarios

    replayed = scenarios.replay(failure, adapter=adapter)
    return replayed if outcome is None or replayed.history == outcome.history else outcome


def _write_failure(
    folder: Path,
    failure: Any,
    outcome: Any,
    adapter: Any,
    versions: dict[str, str],
    sut: str,
    make_repro: bool,
    say: Callable[[str], None],
) -> tuple[dict[str, str], Any]:
    from streamspec.reports import write_failure

    return write_failure(
        folder,
        failure=failure,
        outcome=outcome,
        adapter=adapter,
        versions=versions,
        sut=sut,
        make_repro=make_repro,
        say=say,
    )


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


# -- replay -------------------------------------------------------------------------------------


def replay_command(args: argparse.Namespace, *, out_stream: Any = None) -> int:
    from streamspec.corpus import CorpusError, read_document

    out_stream = out_stream or sys.stdout
    try:
        doc = read_document(Path(args.file))
    except CorpusError as exc:
        raise UsageError(str(exc)) from None
    sut = args.sut or doc["sut"]
    adapter = _load(sut)
    _configure(adapter)
    import scenarios
    from harness.errors import TapeError
    from harness.history import History, HistoryError

    clause = doc["clause"]
    try:
        outcome = scenarios.replay(doc, adapter=adapter)
    except TapeError as exc:
        print(
            f"{clause}: the recorded run no longer replays against {adapter.name} ({exc}); the code under "
            "test or the harness changed: run `streamspec verify` again to find a fresh failing run",
            file=out_stream,
        )
        return EXIT_OK
    except ValueError as exc:
        raise UsageError(f"{args.file}: {exc}") from None
    same = None
    if isinstance(doc.get("history"), dict):
        try:
            same = History.from_dict(doc["history"]).to_json() == outcome.history.to_json()
        except (HistoryError, KeyError, TypeError):
            same = None
    c = spec.clause(clause)
    verdict = outcome.verdict(clause)
    where = {
        True: "the same history, byte for byte",
        False: "a different history than the recorded one",
        None: "no recorded history to compare",
    }[same]
    print(
        f"replayed {Path(args.file).name} against {adapter.name}: {len(outcome.history)} records, {where}",
        file=out_stream,
    )
    if verdict == "fail":
        for v in outcome.result(clause).violations:
            print(f"  {clause}: {v.explanation}", file=out_stream)
        print(f"{clause} {c.title} ({c.level}) is still violated", file=out_stream)
        return EXIT_VIOLATED
    print(
        f"{clause} {c.title} ({c.level}) holds in this run now ({verdict.upper()}): the violation is gone",
        file=out_stream,
    )
    return EXIT_OK


def index_command(args: argparse.Namespace, *, out_stream: Any = None) -> int:
    from streamspec.reports.index import load_summaries, write_index

    folder = Path(args.folder)
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    try:
        path = write_index(folder)
    except OSError as exc:
        raise UsageError(f"cannot write {folder}/index.html: {exc.strerror or exc}") from None
    print(f"{_display(path)}: {len(load_summaries(folder))} implementations", file=out_stream or sys.stdout)
    return EXIT_OK


# -- entry point --------------------------------------------------------------------------------


def mutants_command(args: argparse.Namespace, *, out_stream: Any = None) -> int:
    import importlib

    from harness import mutation

    out_stream = out_stream or sys.stdout
    if args.profile not in PROFILES:
        raise UsageError(f"unknown profile {args.profile!r}: use one of {', '.join(PROFILES)}")
    try:
        catalogue = importlib.import_module(args.catalogue)
        known = [m.name for m in catalogue.CATALOGUE]
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"{args.catalogue!r} is not a mutant catalogue: {exc}") from None
    names = [n.strip() for n in args.only.split(",")] if args.only else None
    unknown = [n for n in names or () if n not in known]
    if unknown:
        raise UsageError(f"unknown mutant {unknown[0]!r}: use some of {', '.join(known)}")
    # A matrix runs for many minutes: a CI log shows each mutant as it is judged.
    say = Progress(enabled=True)
    if args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: give at least 1")
    if args.guard_seeds < 0:
        raise UsageError(f"--guard-seeds {args.guard_seeds}: give 0 or more")
    if args.timeout <= 0:
        raise UsageError(f"--timeout {args.timeout}: give a positive number of seconds")
    rows = mutation.run_matrix(args.catalogue, profile=args.profile, seed=args.seed,
                               timeout=args.timeout, names=names, progress=say, jobs=args.jobs)
    guard = mutation.false_positive_guard("reference", profile=args.profile,
                                          seeds=list(range(args.seed, args.seed + args.guard_seeds)),
                                          timeout=args.timeout, jobs=args.jobs, progress=say)
    clean = mutation._baseline(args.catalogue, None, args.timeout)
    mutation.write(Path(args.out), rows, guard, args.profile, clean)
    survivors = [r.name for r in rows if not r.detected]
    false_alarms = {seed: bad for seed, bad in guard.items() if bad}
    print(f"killed {len(rows) - len(survivors)} of {len(rows)} mutants; the example-based tests killed "
          f"{sum(r.baseline_killed for r in rows)}; report: {Path(args.out) / 'mutants.md'}", file=out_stream)
    if survivors:
        print(f"SURVIVED: {', '.join(survivors)}", file=out_stream)
    if false_alarms:
        print(f"the clean implementation failed on seeds {false_alarms}", file=out_stream)
    # Against an implementation they fail, the example tests kill every mutant: a meaningless column.
    broken_examples = sorted(name for name, failure in clean.items() if failure)
    if broken_examples:
        print(f"the example-based tests fail on the clean implementation: {', '.join(broken_examples)}",
              file=out_stream)
    return EXIT_VIOLATED if survivors or false_alarms or broken_examples else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    # Adapters and catalogues named by module path may live in the project being verified, as a
    # test module does for pytest: the working folder is importable, as with `python -m`.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        command = {
            "verify": verify_command, "replay": replay_command, "index": index_command,
            "mutants": mutants_command,
        }[args.command]
        return command(args)
    except UsageError as exc:
        print(f"streamspec: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("streamspec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
