#!/usr/bin/env python3
"""The template of a standalone reproduction script of the HTTP mode (`streamspec.wire_repro`).

`streamspec.wire_repro` writes ``repro_<clause>.py`` from this module: its docstring replaced by
the script's own, its generated block by the failure's (the clause, the servers, the steps as
`WireRun` calls), and `PAYLOAD` by streamspec's `harness` package as a zip. The script unpacks the
harness into a temporary folder and runs from there, so that it needs only the implementation
under test (with Django, httpx and httpx-sse) and starts its servers itself. It is a module so that
ruff and the import contracts check it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import io
import os
import shutil
import sys
import tempfile
import zipfile
from typing import Any

# >>> generated: what this script reproduces (everything below the marker is the same in every script)
CLAUSE = "S4"
TITLE = "Single execution"
LEVEL = "MUST"
REQUIREMENT = "A task's process() runs at most once at a time, across all processes."
SUT = "upstream"
IMPLEMENTATION = "django-streaming-coordinator 0.2.1"
SERVERS = 2
ATTEMPTS = 3
STEP_PAUSE = 0.05


async def steps(run: Any) -> None:
    task = await run.create()
    # 1. a client joins on server 0
    await run.attach(task, 0)
    await asyncio.sleep(STEP_PAUSE)
    # 2. a client joins on server 1
    await run.attach(task, 1)
    await asyncio.sleep(STEP_PAUSE)
# <<< generated


def unpack(folder: str) -> None:
    """The harness this script runs, from `PAYLOAD`, checked against its digest."""
    data = base64.b64decode(PAYLOAD)
    if hashlib.sha256(data).hexdigest() != PAYLOAD_SHA256:
        raise SystemExit("this script's PAYLOAD was changed after it was written: regenerate the script")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(folder)


async def one_run(adapter: Any, database_url: str, logs: str) -> tuple[Any, dict[str, str]]:
    from harness.wire.run import WireRun

    run = WireRun(adapter, SUT, database_url, logs, processes=SERVERS)
    try:
        await run.open()
        await steps(run)
        await run.finish()
    finally:
        await run.close()
    return run.recorder.history(), {name: s.log_tail(40) for name, s in run.servers.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=f"Reproduce {CLAUSE} ({TITLE}) against {IMPLEMENTATION} over HTTP. "
                    "Exit 1: reproduced; 0: not in any attempt; 2: could not run.")
    parser.add_argument("--attempts", type=int, default=ATTEMPTS,
                        help=f"runs at most, until the violation shows (default {ATTEMPTS})")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"),
                        help="the database the servers share (default: DATABASE_URL, else a new SQLite file)")
    args = parser.parse_args(argv)
    if args.attempts < 1:
        parser.error("--attempts must be at least 1")
    folder = tempfile.mkdtemp(prefix="streamspec-repro-")
    try:
        unpack(folder)
        sys.path.insert(0, folder)
        import harness

        if not os.path.abspath(harness.__file__).startswith(os.path.abspath(folder)):
            print(f"error: imported another harness ({harness.__file__}), not this script's", file=sys.stderr)
            return 2
        from django.conf import settings

        from harness.adapters import load_adapter
        from harness.checkers import check_wire
        from harness.django_setup import configure
        from harness.errors import ConfigError
        from harness.wire.timeline import client_timeline

        adapter = load_adapter(SUT)
        configure(adapter, args.database_url)
        database_url = args.database_url or "sqlite:///" + str(settings.DATABASES["default"]["NAME"])
        logs = os.path.join(folder, "logs")
        os.makedirs(logs)
        print(f"{CLAUSE} {TITLE} ({LEVEL}): {REQUIREMENT}")
        print(f"against {IMPLEMENTATION}, {SERVERS} server(s); up to {args.attempts} attempt(s)")
        for attempt in range(1, args.attempts + 1):
            try:
                history, tails = asyncio.run(one_run(adapter, database_url, logs))
            except ConfigError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            result = next(r for r in check_wire(history) if r.clause == CLAUSE)
            print(f"attempt {attempt}: {CLAUSE} {str(result.verdict).upper()}")
            if str(result.verdict) != "fail":
                continue
            print("\nWhat clients saw:")
            print("\n".join(client_timeline(history)))
            for violation in result.violations:
                print(f"\nVIOLATED: {violation.explanation}")
                for index in violation.evidence:
                    print(f"    #{index} {history[index]!r}")
            for name, tail in tails.items():
                print(f"\nserver {name}, the end of its log:\n{tail}")
            return 1
        print(f"\nnot reproduced in {args.attempts} attempt(s): the orderings inside the servers are the "
              "operating system's; try more with --attempts")
        return 0
    finally:
        shutil.rmtree(folder, ignore_errors=True)


PAYLOAD_SHA256 = ""
PAYLOAD = ""

if __name__ == "__main__":
    sys.exit(main())
