"""`streamspec`: validate an implementation and write its reports; replay a failure; rebuild the index.

    streamspec verify --sut NAME|module:Class [--mode inproc|http] [--profile dev|ci|thorough]
                      [--seed N] [--clauses S1,S3] [--families joins,...] [--out DIR] [--strict]
                      [--jobs N] [--fail-fast] [--baseline FILE] [--update-baseline]
                      [--corpus DIR | --no-corpus] [--no-repro]
    streamspec replay FILE [--sut NAME|module:Class]
    streamspec power --sut NAME|module:Class (--seeds N | --seed-list 3,17) [--profile ci] [--jobs J]
                     [--families joins,...] [--clauses S1,S3] [--out DIR] [--timeout SECONDS]
    streamspec mutants [--catalogue MODULE] [--profile ci] [--jobs J] [--only NAME,...] [--out DIR]
                       [--guard-seeds N] [--first-find]
    streamspec generated-mutants [--sample N] [--seed N] [--timeout SECONDS] [--out DIR]
                                 [--report-only RESULTS.json]
    streamspec index [DIR]

(also ``python -m streamspec ...``). One verify run verifies one implementation, in this process: it
configures Django for it (an implementation cannot share a process with another, see
`harness.django_setup`). Exit status: 0 when every MUST clause holds (with ``--baseline``: when the
failures are exactly the expected ones), 1 when a MUST clause is violated (or a new failure or a
stale baseline entry appears), 2 for a usage or configuration error, reported in one line; nothing
is written then. SHOULD failures are listed separately and fail the run only with ``--strict``.
Reports are written into a temporary folder beside the target and moved into place at the end.
The verify job itself is `streamspec.verify_job`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import scenarios
from harness import spec
from streamspec.console import (
    EXIT_OK,
    EXIT_USAGE,
    EXIT_VIOLATED,
    Progress,
    UsageError,
    configure,
    display,
    load,
    parse_clauses,
)
from streamspec.verify_job import verify_command

__all__ = ["build_parser", "main"]


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
        help="inproc (drive the coordinator in this process) or http (real server processes, real SSE "
        "clients)",
    )
    v.add_argument("--profile", default="ci", help="search budget: dev, ci (default) or thorough")
    v.add_argument("--seed", type=int, default=None, help="the search seed (default: random, printed)")
    v.add_argument("--clauses", default=None, metavar="S1,S3", help="only these clauses (default: all)")
    v.add_argument("--families", default=None, metavar="joins,...", help="only these scenario families")
    v.add_argument("--out", default=None, metavar="DIR", help="report folder (default: reports/<sut>)")
    v.add_argument("--strict", action="store_true", help="SHOULD failures fail the run too")
    v.add_argument("--jobs", type=int, default=0, metavar="N",
                   help="worker processes the search runs ahead in (default 0: one per core); the result "
                   "is the same with any number (--mode inproc, without DATABASE_URL)")
    v.add_argument("--fail-fast", action="store_true",
                   help="stop the search at the first failure, once its example is shrunk (a faster red; "
                   "the other clauses are then judged on fewer examples)")
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
    m.add_argument("--first-find", action="store_true",
                   help="the CI size: each mutant's verify looks for its expected clause only and stops "
                   "at the first failure (default: the whole search, as a user runs it)")
    m.add_argument("--out", default="reports", metavar="DIR")
    m.add_argument("--timeout", type=float, default=600.0, help="seconds per verify run")
    m.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="verify runs at once, each a process of its own (default: 1; at most one per "
                   "core, or the seconds to first detection stretch)")

    w = sub.add_parser(
        "power",
        help="verify one implementation over many seeds and tabulate how often each clause is found",
        description="Run `streamspec verify` once per seed (0..N-1, or --seed-list), each in a process "
        "of its own without the regression corpus, and write <out>/power-<sut>.md and .json: per "
        "clause and per violation key, the seeds that found it, the median examples and seconds to "
        "the first find, and the seeds that missed it. Exit 0 when it ran (a seed that crashed or "
        "timed out is reported in the table), 2 for a usage error.",
    )
    w.add_argument("--sut", required=True, metavar="NAME|module:Class",
                   help="the implementation: reference, upstream, an entry point, or package.module:Adapter")
    seeds = w.add_mutually_exclusive_group(required=True)
    seeds.add_argument("--seeds", type=int, default=None, metavar="N", help="seeds 0 to N-1")
    seeds.add_argument("--seed-list", default=None, metavar="3,17,...", help="these seeds")
    w.add_argument("--profile", default="ci", help="search budget: dev, ci (default) or thorough")
    w.add_argument("--families", default=None, metavar="joins,...", help="only these scenario families")
    w.add_argument("--clauses", default=None, metavar="S1,S3", help="only these clauses (default: all)")
    w.add_argument("--out", default="reports", metavar="DIR",
                   help="where power-<sut>.md and .json go (default: reports)")
    w.add_argument("--timeout", type=float, default=1800.0,
                   help="seconds per verify run, after which it is killed and reported (default: 1800)")
    w.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="verify runs at once, each a process of its own (default: 1; at most one per "
                   "core, or the seconds to first find stretch)")

    g = sub.add_parser(
        "generated-mutants",
        help="verify the reference against a sample of mutants cosmic-ray generates (needs cosmic-ray)",
        description="Generate every mutant cosmic-ray's operators make of the reference's core modules "
        "(in a temporary copy of this checkout), verify a seeded uniform sample of them with the dev "
        "profile, and write <out>/generated-mutants.md and .json: the score (killed of the "
        "non-equivalent) and every survivor with its class from baselines/generated-mutants.json. "
        "Exit 1 when a survivor is not classified there, 0 otherwise, 2 for a usage error. "
        "--report-only reports a finished run's JSON again (after classifying), without running.",
    )
    g.add_argument("--sample", type=int, default=None, metavar="N", help="mutants to run (default: 220)")
    g.add_argument("--seed", type=int, default=None, help="the sampling seed (default: 0)")
    g.add_argument("--timeout", type=float, default=None,
                   help="seconds per verify; a timeout kills the mutant (default: 240)")
    g.add_argument("--out", default="reports", metavar="DIR")
    g.add_argument("--report-only", default=None, metavar="RESULTS.json",
                   help="a generated-mutants.json of an earlier run: report it again, run nothing")

    i = sub.add_parser("index", help="rebuild index.html from the summaries in a reports folder")
    i.add_argument("folder", nargs="?", default="reports", metavar="DIR")
    return parser


# -- replay -------------------------------------------------------------------------------------


def replay_command(args: argparse.Namespace, *, out_stream: Any = None) -> int:
    from streamspec.corpus import CorpusError, read_document

    out_stream = out_stream or sys.stdout
    try:
        doc = read_document(Path(args.file))
    except CorpusError as exc:
        raise UsageError(str(exc)) from None
    sut = args.sut or doc["sut"]
    adapter = load(sut)
    configure(adapter)
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
    print(f"{display(path)}: {len(load_summaries(folder))} implementations", file=out_stream or sys.stdout)
    return EXIT_OK


# -- entry point --------------------------------------------------------------------------------


def mutants_command(args: argparse.Namespace, *, out_stream: Any = None) -> int:
    import importlib

    from streamspec import mutation

    out_stream = out_stream or sys.stdout
    if args.profile not in scenarios.PROFILES:
        raise UsageError(f"unknown profile {args.profile!r}: use one of {', '.join(scenarios.PROFILES)}")
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
    rows, guard = mutation.run_with_guard(
        args.catalogue, profile=args.profile, seed=args.seed, timeout=args.timeout, names=names, progress=say,
        jobs=args.jobs, first_find=args.first_find, guard_sut="reference",
        guard_seeds=list(range(args.seed, args.seed + args.guard_seeds)))
    clean = mutation._baseline(args.catalogue, None, args.timeout)
    mutation.write(Path(args.out), rows, guard, args.profile, clean, args.first_find)
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


def _seed_list(args: argparse.Namespace) -> list[int]:
    if args.seeds is not None:
        if args.seeds < 1:
            raise UsageError(f"--seeds {args.seeds}: give at least 1")
        return list(range(args.seeds))
    try:
        seeds = [int(part) for part in args.seed_list.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--seed-list {args.seed_list!r}: give whole numbers separated by commas") from None
    if not seeds or min(seeds) < 0:
        raise UsageError(f"--seed-list {args.seed_list!r}: give one or more seeds, none negative")
    return list(dict.fromkeys(seeds))


def _output_folder(out: Path) -> Path:
    """`out`, made if missing; a UsageError, before any long run, if it cannot be written."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"output folder {display(out)} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot write the output folder {display(out)}: {exc.strerror or exc}") from None
    return out


def power_command(args: argparse.Namespace, *, out_stream: Any = None,
                  progress: Callable[[str], None] | None = None) -> int:
    """`streamspec power`: exit 0 once every seed ran (or crashed, which the report says)."""
    import time

    from streamspec import power
    from streamspec.corpus import folder_name

    out_stream = out_stream or sys.stdout
    if args.profile not in scenarios.PROFILES:
        raise UsageError(f"unknown profile {args.profile!r}: use one of {', '.join(scenarios.PROFILES)}")
    seeds = _seed_list(args)
    if args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: give at least 1")
    if args.timeout <= 0:
        raise UsageError(f"--timeout {args.timeout}: give a positive number of seconds")
    families = [f.strip() for f in (args.families or "").split(",") if f.strip()] or None
    unknown = [f for f in families or () if f not in scenarios.FAMILIES]
    if unknown:
        raise UsageError(f"unknown family {unknown[0]!r}: use some of {', '.join(scenarios.FAMILIES)}")
    clauses = parse_clauses(args.clauses)
    # Loaded here, not only in each verify process: a misspelt implementation is one line, not N
    # crashed seeds.
    name = folder_name(load(args.sut).name)
    out = _output_folder(Path(args.out))
    # Many minutes: a CI log shows each seed as it ends.
    say = progress or Progress(enabled=True)
    say(f"power of {args.sut}: profile {args.profile}, seeds {', '.join(map(str, seeds))}, "
        f"{args.jobs} at once")
    started = time.perf_counter()
    runs = power.run_seeds(args.sut, profile=args.profile, seeds=seeds, timeout=args.timeout, jobs=args.jobs,
                           families=families, clauses=clauses, progress=say)
    wall = time.perf_counter() - started
    try:
        md, _ = power.write(out, name, args.profile, runs, families=families, clauses=clauses,
                            wall_seconds=wall)
    except OSError as exc:
        raise UsageError(f"cannot write the report into {display(out)}: {exc.strerror or exc}") from None
    print(power.to_terminal(runs), file=out_stream)
    print(f"{sum(r.summary is not None for r in runs)} of {len(runs)} seeds ran in {wall:.0f} s; "
          f"report: {display(md)}", file=out_stream)
    return EXIT_OK


def generated_mutants_command(args: argparse.Namespace, *,
                              progress: Callable[[str], None] | None = None) -> int:
    """`streamspec generated-mutants`: 1 when a survivor is not classified."""
    from streamspec import generated_mutants as gm

    sample = gm.SAMPLE if args.sample is None else args.sample
    seed = gm.SEED if args.seed is None else args.seed
    timeout = gm.TIMEOUT if args.timeout is None else args.timeout
    if sample < 1:
        raise UsageError(f"--sample {sample}: give at least 1")
    if timeout <= 0:
        raise UsageError(f"--timeout {timeout}: give a positive number of seconds")
    root = Path.cwd()
    if not all((root / m).is_file() for m in gm.CORE_MODULES):
        raise UsageError("run it from a streamspec checkout: the reference's core modules "
                         f"({gm.CORE_MODULES[0]}, ...) are not under {display(root)}")
    results = Path(args.report_only) if args.report_only else None
    if results is not None and not results.is_file():
        raise UsageError(f"--report-only {display(results)}: no such file")
    out = _output_folder(Path(args.out))
    try:
        if results is not None:
            return gm.rereport(root, results, out)
        return gm.main(root, out, sample=sample, seed=seed, timeout=timeout,
                       progress=progress or Progress(enabled=True))
    except ValueError as exc:  # a malformed classification file or results file
        raise UsageError(str(exc)) from None
    except RuntimeError as exc:  # cosmic-ray missing or failing
        raise UsageError(str(exc)) from None


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
            "mutants": mutants_command, "power": power_command,
            "generated-mutants": generated_mutants_command,
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
