"""Where a ci-profile search spends its time: cProfile over `streamspec verify`'s search, grouped by
layer (Hypothesis, the scheduler, the database, the implementation, the checkers, ...).

    python benchmarks/profile_search.py --sut reference --families joins --seed 0
    python benchmarks/profile_search.py --stats prof.out      # also keep the raw pstats file

Prints a table of own time (tottime) per group, as a share of the total, and the throughput.
Profiling slows the run down (roughly twice): read the shares, not the absolute seconds.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Hypothesis (stateful machinery, generation, shrinking)", ("/hypothesis/",)),
    ("harness scheduler and choices", ("harness/scheduler.py", "harness/choice.py", "harness/offload.py")),
    ("harness run driver, runner, recorder, probe", ("harness/driver.py", "harness/runner.py",
                                                     "harness/recorder.py", "harness/probe/")),
    ("checkers and history", ("harness/checkers/", "harness/history.py", "harness/records.py")),
    ("scenario machine and programs", ("scenarios/",)),
    ("the implementation under test", ("reference_impl/", "/streaming/")),
    ("Django ORM and database driver", ("/django/db/", "sqlite3", "psycopg", "/asgiref/")),
    ("rest of Django", ("/django/",)),
    ("asyncio and the standard library", ("/asyncio/", "/lib/python3")),
)


OFFLOAD_WAIT = "database calls (the main thread waiting on the offload thread that runs them)"


def group_of(filename: str, function: str = "") -> str:
    if filename == "~" and "SimpleQueue" in function:
        # cProfile sees only the main thread: the harness runs every database call on its offload
        # thread (harness/offload.py), and the loop waits for it on a queue.
        return OFFLOAD_WAIT
    for name, needles in GROUPS:
        if any(n in filename for n in needles):
            return name
    return "builtins called by the layers above (getattr, isinstance, len, ...)"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sut", default="reference")
    parser.add_argument("--profile", default="ci")
    parser.add_argument("--families", default="joins")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stats", default=None, help="write the raw pstats file here")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from harness import offload
    from harness.adapters import load_adapter
    from harness.django_setup import configure
    from scenarios.verify import verify

    adapter = load_adapter(args.sut)
    configure(adapter)
    families = [f for f in args.families.split(",") if f]
    # The offload thread runs every database call: profile it too (cProfile sees one thread).
    worker_profiler = cProfile.Profile()
    serve = offload.OffloadWorker._serve

    def profiled_serve(self: object) -> None:
        worker_profiler.enable()
        try:
            serve(self)  # type: ignore[arg-type]
        finally:
            worker_profiler.disable()

    offload.shutdown_worker()
    offload.OffloadWorker._serve = profiled_serve  # type: ignore[method-assign]
    profiler = cProfile.Profile()
    began = time.perf_counter()
    profiler.enable()
    result = verify(adapter, families=families, profile=args.profile, seed=args.seed)
    profiler.disable()
    seconds = time.perf_counter() - began
    offload.shutdown_worker()  # its profiler stops with it
    if args.stats:
        profiler.dump_stats(args.stats)
        worker_profiler.dump_stats(args.stats + ".offload")
    own: dict[str, float] = {}
    for thread, which in ((profiler, "main thread"), (worker_profiler, "offload thread")):
        for (filename, _, function), (_, _, tottime, _, _) in pstats.Stats(thread).stats.items():  # type: ignore[attr-defined]
            group = group_of(filename, function)
            if which == "offload thread" and group == OFFLOAD_WAIT:
                group = "offload thread idle (waiting for work)"
            elif which == "offload thread" and filename == "~":
                group = "Django ORM and database driver"  # C calls of the database thread: sqlite3's
            own[group] = own.get(group, 0.0) + tottime
    waiting = own.pop(OFFLOAD_WAIT, 0.0) + own.pop("offload thread idle (waiting for work)", 0.0)
    total = sum(own.values())
    print(f"not in the table: {waiting:.1f} s of the two threads handing database calls to each other "
          "(queue waits, GIL switches)")
    examples = sum(result.examples.values())
    print(f"{args.sut}, profile {args.profile}, families {','.join(families)}, seed {args.seed}: "
          f"{examples} examples in {seconds:.1f} s under the profiler ({examples / seconds:.0f}/s)")
    print("| where | own time | share |")
    print("| --- | ---: | ---: |")
    for name, value in sorted(own.items(), key=lambda item: -item[1]):
        print(f"| {name} | {value:.1f} s | {100 * value / total:.0f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
