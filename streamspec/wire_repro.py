"""Standalone reproduction scripts of the HTTP mode: ``repro_<clause>.py`` beside a wire report.

Over the wire a reproduction needs what the HTTP mode needs: server processes that load the probe
app (the task whose steps the script decides), the control channel, SSE clients and the clause's
checker. Those live in several modules that the server processes import by name, so they cannot be
inlined into one namespace as the in-process scripts are (`streamspec.repro`). Instead a script
carries streamspec's `harness` package as a zip (`PAYLOAD`, with its SHA-256), unpacks it into a
temporary folder, and runs the failure's program from there: the same engine, the same checker,
nothing of streamspec installed. It starts its servers itself; it needs the implementation under
test importable (and Django, httpx and httpx-sse), and, for an adapter named ``module:Class``, that
module.

The program is written out as `WireRun` calls (`harness.wire.steps`), one per step, with the step
in words above it. The orderings inside the servers are not the script's to choose, so it runs the
program up to ``--attempts`` times and exits 1 as soon as the violation shows, 0 if it never did.
The same program and the same harness give the same script, byte for byte (the zip's entries are
sorted and dated alike).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import textwrap
import zipfile
from pathlib import Path
from typing import Any

from harness import spec
from harness.wire.steps import describe, statements_of
from streamspec.inline import ROOT
from streamspec.repro import script_name

__all__ = ["build_wire_script", "harness_payload", "script_name"]

TEMPLATE = Path(__file__).resolve().parent / "reports" / "wire_repro_template.py"
BEGIN = "# >>> generated"
END = "# <<< generated"
ATTEMPTS = 5
"""Runs a script makes at most by default (a flaky failure may need more than one)."""
_EPOCH = (1980, 1, 1, 0, 0, 0)


def harness_payload() -> bytes:
    """streamspec's `harness` package (its Python files) as a zip, the same bytes for the same files."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted((ROOT / "harness").rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            info = zipfile.ZipInfo(path.relative_to(ROOT).as_posix(), _EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def _steps_code(program: list[dict[str, Any]]) -> list[str]:
    lines = ["async def steps(run: Any) -> None:", "    task = await run.create()"]
    for number, step in enumerate(program[1:], 1):
        lines.append(f"    # {number}. {describe(step)}")
        lines += [f"    {statement}" for statement in statements_of(step)]
        lines.append("    await asyncio.sleep(STEP_PAUSE)")
    return lines


def build_wire_script(*, clause: str, sut: str, implementation: str, program: list[dict[str, Any]],
                      command: str, rate: str | None = None, step_pause: float = 0.05) -> str:
    """The text of ``repro_<clause>.py`` for `program` (a wire program, servers first) failing
    `clause` against adapter `sut`; `command` is the streamspec command that found it."""
    c = spec.clause(clause)
    template = TEMPLATE.read_text(encoding="utf-8")
    head, rest = template.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    tail = tail.split("\n", 1)[1]
    docstring_end = head.index('"""', head.index('"""') + 3) + 3
    seen = f" It came back in {rate} re-runs of the search." if rate else ""
    paragraphs = [
        f"{clause} {c.title} ({c.level}) violated by {implementation} over HTTP: a standalone reproduction.",
        f"Found by `{command}`.{seen}",
        c.requirement,
        f"Run it with `python {script_name(clause)}`: it starts {program[0]['count']} server process(es) of "
        "the implementation on loopback ports, performs the steps below with real SSE clients and "
        f"judges what they saw with streamspec's checker of {clause}. Exit 1: reproduced; 0: not in "
        "any attempt (the orderings inside the servers are the operating system's: try more with "
        "--attempts); 2: it could not run.",
        "It needs the implementation importable, with Django, httpx and httpx-sse, and nothing of "
        "streamspec: the harness it runs is PAYLOAD below, a zip of streamspec's `harness` package, "
        "unpacked into a temporary folder. DATABASE_URL (or --database-url) picks the database the "
        "servers share; by default a new SQLite file.",
    ]
    text = "\n\n".join(textwrap.fill(p, 100) for p in paragraphs)
    docstring = '"""' + text.replace("\\", "\\\\").replace('"""', '\\"""') + '\n"""'
    payload = harness_payload()
    generated = [
        f"{BEGIN}: what this script reproduces",
        f"CLAUSE = {json.dumps(clause)}",
        f"TITLE = {json.dumps(c.title)}",
        f"LEVEL = {json.dumps(str(c.level))}",
        f"REQUIREMENT = {json.dumps(c.requirement)}",
        f"SUT = {json.dumps(sut)}",
        f"IMPLEMENTATION = {json.dumps(implementation)}",
        f"SERVERS = {int(program[0]['count'])}",
        f"ATTEMPTS = {ATTEMPTS}",
        f"STEP_PAUSE = {step_pause!r}",
        "",
        "",
        *_steps_code(program),
        END,
    ]
    encoded = base64.encodebytes(payload).decode("ascii")
    tail = tail.replace('PAYLOAD_SHA256 = ""', f'PAYLOAD_SHA256 = "{hashlib.sha256(payload).hexdigest()}"')
    tail = tail.replace('PAYLOAD = ""', f'PAYLOAD = """\n{encoded}"""')
    return "#!/usr/bin/env python3\n" + docstring + head[docstring_end:].rstrip("\n") + "\n\n" + \
        "\n".join(generated) + "\n" + tail
