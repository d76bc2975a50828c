"""Standalone reproduction scripts: `repro_<clause>.py`, which need only Django and the implementation.

A script is assembled (`streamspec.inline`) from three parts. First the template
`streamspec/reports/repro_template.py` with its generated block replaced: the clause, the shrunk
program's steps written out as plain code, and the interleaving that shows the violation; it also
carries Django settings on a throw-away SQLite database, a task model of its own (a subclass of the
implementation's ``StreamTask`` in the implementation's app) and a compact controlled event loop
(ready callbacks, offloaded database calls, virtual time). Then the engine's judging code, inlined:
`harness/records.py`, `harness/history.py`, `harness/checkers/base.py`, the clause's checker, and
what of `harness/spec.py` and `harness/errors.py` they use. The script judges with the very checker
`streamspec verify` judged with: there is no second judge to drift. Last
`streamspec/reports/repro_world.py`: one coordinator per simulated process, the operations recorded
as a `harness.history.History` the way the harness records them, the attempts and ``main``.

The harness's own choice tape cannot be reused (it counts the harness's coroutines too), so
`build` runs the fresh script once in search mode (plain FIFO order first, then a fixed list of
seeds) and writes the interleaving it finds into the script as its tape; a second run confirms the
script exits 1 on its own. The scripts target the django-streaming-coordinator API (``models.
StreamTask``, ``coordinator.TaskCoordinator`` with ``start_task``/``get_task_instance``,
``add_client``/``remove_client``); an adapter names its package with ``repro_package`` when that is
not the package of its ``task_base``. Clients' items are read as the harness read them: with the
reference's conventions (`harness/conventions.py`, inlined), or, for an adapter with its own
``classify`` / ``event_parts`` hooks, with those: the script imports the adapter's module for them
(``ADAPTER``), which must then be importable where the script runs.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any

from harness import spec
from streamspec.inline import Piece, assemble
from streamspec.reports.text import Implementation, program_steps

TEMPLATE = Path(__file__).resolve().parent / "reports" / "repro_template.py"
WORLD = "streamspec/reports/repro_world.py"
ENGINE = ("harness/conventions.py", "harness/records.py", "harness/history.py", "harness/checkers/base.py")
"""Modules every script inlines whole; what a checker imports from another checker is inlined in part."""
BEGIN = "# >>> generated"
END = "# <<< generated"
SEARCH_SEEDS = 400
"""Seeded interleavings tried when a script is generated, after plain FIFO order."""
RUN_SEEDS = 200
"""Seeded interleavings a generated script tries after its recorded one."""
TIMEOUT = 180.0


def script_name(clause: str) -> str:
    """``repro_S1.py``; ``repro_S7_2.py`` for a sub-clause (a file name Python can import)."""
    return f"repro_{clause.replace('.', '_')}.py"


def package_of(adapter: Any) -> str:
    """The implementation's package with the django-streaming-coordinator API."""
    explicit = getattr(adapter, "repro_package", None)
    if explicit:
        return str(explicit)
    base = str(getattr(adapter, "task_base", ""))
    if ".models." in base:
        return base.rsplit(".models.", 1)[0]
    apps = list(getattr(adapter, "installed_apps", ()))
    return apps[0] if apps else "streaming"


# -- the steps as code --------------------------------------------------------------------------


def steps_code(program: list[dict[str, Any]]) -> str:
    """The body of ``async def steps(w)``: the program's steps as plain calls, slot for slot."""
    prose = program_steps(program)
    counters = {"obj": 0, "task": 0, "client": 0}
    task_of_obj: dict[int, int] = {}
    procs = ["p0"]
    lines = ["    p0 = w.processes[0]"]

    def proc(step: dict[str, Any]) -> str:
        i = int(step.get("process", 0))
        return procs[i] if 0 <= i < len(procs) else "None"

    def call(step: dict[str, Any], grouped: bool) -> tuple[str, str, list[str]]:
        """(target, awaitable expression, lines to run after it)."""
        op = step["op"]
        if op == "create":
            counters["obj"] += 1
            counters["task"] += 1
            obj, task = counters["obj"], counters["task"]
            task_of_obj[obj - 1] = task - 1
            return f"obj{obj}", f"w.create({proc(step)})", [f"T{task} = w.task(obj{obj})"]
        if op == "start":
            return "_", f"w.start({proc(step)}, obj{step['obj'] + 1})", []
        if op in ("lookup", "reload"):
            counters["obj"] += 1
            task_of_obj[counters["obj"] - 1] = int(step["task"])
            spelled = f", {int(step['spelling'])}" if op == "lookup" and step.get("spelling") else ""
            return f"obj{counters['obj']}", f"w.{op}({proc(step)}, T{step['task'] + 1}{spelled})", []
        if op == "attach":
            counters["client"] += 1
            return f"c{counters['client']}", f"w.attach({proc(step)}, obj{step['obj'] + 1})", []
        if op == "detach":
            return "_", f"w.detach(c{step['client'] + 1})", []
        if op == "stall":
            return "_", f"w.stall(c{step['client'] + 1})", []
        if op == "release" and step.get("count", 1) > 1:
            return "_", f"w.release(T{step['task'] + 1}, {int(step['count'])})", []
        if op in ("finish_ok", "finish_fail") and step.get("how"):
            return "_", f"w.{op}(T{step['task'] + 1}, {_py(step['how'])})", []
        if op in ("release", "finish_ok", "finish_fail"):
            return "_", f"w.{op}(T{step['task'] + 1})", []
        if op in ("crash", "shutdown"):
            return "_", f"w.{op}({proc(step)})", []
        if op == "wait":
            return "_", f"w.wait({float(step['seconds'])!r})", []
        if op in ("restart", "spawn"):
            old = proc(step)
            procs.append(f"p{len(procs)}")
            expr = f"w.restart({old})" if op == "restart" else "w.start_process()"
            return procs[-1], expr, []
        raise ValueError(f"unknown program step {step!r}")

    for n, step in enumerate(program):
        for text in prose[n].splitlines():
            lines.append(f"    # {text.strip()}")
        if step["op"] == "concurrently":
            calls = [call(sub, True) for sub in step["steps"]]
            targets = ", ".join(t for t, _, _ in calls) + ("," if len(calls) == 1 else "")
            lines.append(f"    {targets} = await asyncio.gather(")
            lines += [f"        {expr}," for _, expr, _ in calls]
            lines.append("    )")
            lines += [f"    {after}" for _, _, afters in calls for after in afters]
        else:
            target, expr, afters = call(step, False)
            lines.append(f"    {target} = await {expr}" if target != "_" else f"    await {expr}")
            lines += [f"    {after}" for after in afters]
    return "\n".join(lines)


# -- the script ---------------------------------------------------------------------------------


def _clause_table(c: spec.Clause) -> str:
    """``CLAUSES`` as `harness.spec` writes it, with only the clause this script judges."""
    lines = [
        "# harness/spec.py lists every clause; this script needs only the one it judges.",
        "CLAUSES: tuple[Clause, ...] = (",
        "    Clause(",
    ]
    for f in fields(c):
        value = getattr(c, f.name)
        text = f"{type(value).__name__}.{value.name}" if isinstance(value, Enum) else repr(value)
        lines.append(f"        {f.name}={text},")
    return "\n".join([*lines, "    ),", ")", ""])


def engine_pieces(clause_id: str) -> list[Piece]:
    """The engine's code a script of `clause_id` judges with, in the order it must be defined."""
    c = spec.clause(clause_id)
    checker = Piece.of(c.checker_path)
    borrowed = []  # what the checker imports from other checkers (S7.2 uses S7's unfinished_at)
    for node in ast.parse(checker.source).body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("harness.checkers."):
            path = (node.module or "").replace(".", "/") + ".py"
            if path not in ENGINE:
                borrowed.append(Piece.of(path, [alias.name for alias in node.names]))
    return [
        Piece.of("harness/errors.py", ["StreamspecError", "AdapterError"]),
        Piece.of("harness/bounds.py",
                 ["SCRIPT_MAX_STEPS", "RUN_MAX_VIRTUAL_TIME", "SETTLE_SECONDS", "SETTLE_ROUNDS",
                  "SHUTDOWN_GRACE"]),
        Piece.of("harness/adapters/__init__.py", ["default_spellings"]),
        Piece.of("harness/probe/gates.py",
                 ["SEND", "RETURN", "RAISE", "FINISH_WAYS", "FAIL_WAYS", "ProbeFailure", "ProbeAbort",
                  "ProbeHooks", "_Gate", "Gates", "finish_way", "fail_way"]),
        Piece.of("harness/spec.py", ["Level", "Severity", "MAX_CLIENT_BUFFER", "Clause"]),
        Piece("harness/spec.py: the clause", _clause_table(c)),
        Piece.of("harness/spec.py", ["BY_ID", "clause", "ReadKind", "READ_KINDS"]),
        *(Piece.of(path) for path in ENGINE),
        *borrowed,
        checker,
    ]


def _py(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


@dataclass
class ScriptInfo:
    clause: str
    implementation: str
    package: str
    program: list[dict[str, Any]]
    seed: int | None = None
    family: str | None = None
    extra_apps: list[str] = field(default_factory=list)
    tape: list[int] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    """Django settings the adapter gave the implementation (the script configures the same)."""
    buffer_limit: int | None = None
    """The client buffer bound the implementation documented under those settings (S8.2)."""
    adapter: str | None = None
    """``module:Class`` of an adapter with its own `classify` / `event_parts` hooks, which the script
    imports to read the clients' items; None: the reference's conventions, inlined."""
    pk_as_int: bool = False
    """Whether the implementation's own request path turns the URL's pk into an int before its
    lookup (the adapter's ``lookup_pk_as_int``): the script's lookups do the same."""


def render(info: ScriptInfo) -> str:
    """The script's text for `info` (its tape as given: empty until `build` searched for one)."""
    c = spec.clause(info.clause)
    steps = "\n".join(program_steps(info.program))
    name = script_name(info.clause)
    reading = "" if info.adapter is None else (
        "\nIt reads the clients' events with the classify / event_parts hooks of the adapter\n"
        f"{info.adapter}, which it imports: its module must be importable where the script runs.\n"
    )
    doc = f"""Reproduction of streamspec clause {c.id} {c.title} ({c.level}, {c.severity}) for {
        info.implementation
    }.

Generated by `streamspec verify` from the minimal failing run it found{
        f" (family {info.family}, seed {info.seed})" if info.family else ""
    }. It needs only Django and
the implementation, not streamspec:

    python {name}                           # the implementation as installed: package `{info.package}`
    python {name} PACKAGE                   # another package with the same API, e.g. reference_impl.streaming
    STREAMSPEC_REPRO_PACKAGE=PACKAGE python {name}
{reading}
It configures Django on a throw-away SQLite database, defines its own task model (a subclass of the
implementation's StreamTask whose process() only sends, completes or fails when a step says so) and
runs the steps below on a small controlled event loop: the violation needs an ordering of coroutines
and database calls that plain asyncio does not reliably give. It tries the recorded interleaving
first, then a fixed list of seeded ones, and prints what was expected and what happened.

Exit status: 1 while the violation is there, 0 once it is fixed, 2 if it cannot run.

Requirement ({c.id}): {c.requirement}

Steps:
{steps}
"""
    text = TEMPLATE.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    generated = "\n".join(
        [
            f"{BEGIN}: what this script reproduces",
            f"CLAUSE = {_py(c.id)}",
            f"TITLE = {_py(c.title)}",
            f"LEVEL = {_py(str(c.level))}",
            f"REQUIREMENT = {_py(c.requirement)}",
            f"IMPLEMENTATION = {_py(info.implementation)}",
            f"DEFAULT_PACKAGE = {_py(info.package)}",
            f"EXTRA_APPS: list[str] = {_py(list(info.extra_apps))}",
            f"EXTRA_SETTINGS: dict[str, Any] = {dict(info.settings)!r}",
            f"BUFFER_LIMIT: int | None = {info.buffer_limit!r}",
            f"ADAPTER: str | None = {info.adapter!r}",
            f"LOOKUP_PK_AS_INT = {info.pk_as_int!r}",
            f"TAPE: list[int] = {_py(list(info.tape))}",
            f"SEEDS = range({RUN_SEEDS})",
            f"STEPS = {_py(steps)}",
            "",
            "",
            "async def steps(w: World) -> None:",
            steps_code(info.program),
            END,
        ]
    )
    shebang = "#!/usr/bin/env python3\n"
    docstring = '"""' + doc.replace('"""', "'''").replace("\\", "\\\\") + '"""'
    template = Piece("streamspec/reports/repro_template.py", head + generated + tail)
    return assemble(shebang + docstring, [template, *engine_pieces(c.id), Piece.of(WORLD)])


# -- searching and confirming -------------------------------------------------------------------


@dataclass
class Repro:
    """A generated script and what running it showed."""

    path: Path
    reproduced: bool
    output: str
    """What the script printed when it was run on its own (the confirmation run)."""
    tape: list[int]
    note: str = ""


def adapter_ref(adapter: Any) -> str | None:
    """``module:Class`` of `adapter` if it reads client items its own way (a `classify` or
    `event_parts` hook), for the script to import; None if the reference's conventions do."""
    if not any(getattr(adapter, hook, None) is not None for hook in ("classify", "event_parts")):
        return None
    cls = type(adapter)
    return f"{cls.__module__}:{cls.__qualname__}"


def _module_base(ref: str | None) -> list[str]:
    """The folder to put on PYTHONPATH so that `ref`'s module imports, if it came from a file."""
    module = sys.modules.get((ref or "").partition(":")[0])
    path = getattr(module, "__file__", None)
    if module is None or not path:
        return []
    base = Path(path).resolve().parent
    for _ in range(module.__name__.count(".") + (Path(path).stem == "__init__")):
        base = base.parent
    return [str(base)]


def _env(adapter: Any) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("STREAMSPEC_REPRO_PACKAGE", None)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    bases = sorted({base for _, base in Implementation.of(adapter).roots}
                   | set(_module_base(adapter_ref(adapter))))
    env["PYTHONPATH"] = os.pathsep.join([*bases, *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_script(
    path: Path,
    args: Sequence[str] = (),
    *,
    adapter: Any = None,
    python: str | None = None,
    package: str | None = None,
    timeout: float = TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run a generated script in a fresh interpreter (its own Django), from its own folder."""
    env = _env(adapter) if adapter is not None else dict(os.environ)
    if package:
        env["STREAMSPEC_REPRO_PACKAGE"] = package
    return subprocess.run(
        [python or sys.executable, path.name, *args],
        cwd=path.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _buffer_limit(failure: Any) -> int | None:
    """The documented client buffer bound the failing run's snapshots carried, if any."""
    outcome = getattr(failure, "outcome", None)
    if outcome is None:
        return None
    from harness.history import Snapshot

    return next((s.buffer_limit for s in outcome.history.of_kind(Snapshot) if s.buffer_limit), None)


def build(failure: Any, adapter: Any, folder: Path, *, search: int = SEARCH_SEEDS) -> Repro:
    """Write ``repro_<clause>.py`` for `failure` into `folder`, find its interleaving, confirm it."""
    versions = adapter.versions()
    info = ScriptInfo(
        clause=failure.clause,
        implementation=" ".join(
            filter(None, [versions.get("implementation", adapter.name), versions.get("version")])
        ),
        package=package_of(adapter),
        program=list(failure.program),
        seed=getattr(failure, "seed", None),
        family=getattr(failure, "family", None),
        extra_apps=list(getattr(adapter, "repro_extra_apps", ())),
        settings=dict(getattr(adapter, "django_settings", {})),
        buffer_limit=_buffer_limit(failure),
        adapter=adapter_ref(adapter),
        pk_as_int=bool(getattr(adapter, "lookup_pk_as_int", False)),
    )
    path = folder / script_name(failure.clause)
    path.write_text(render(info), encoding="utf-8")
    try:
        found = run_script(path, ["--search", str(search)], adapter=adapter)
    except subprocess.TimeoutExpired:
        return Repro(path, False, "", [], f"the search for an interleaving took longer than {TIMEOUT:.0f}s")
    tape_line = next((line for line in found.stdout.splitlines() if line.startswith("TAPE ")), None)
    if found.returncode != 1 or tape_line is None:
        why = (
            "it could not run: " + (found.stdout + found.stderr).strip().splitlines()[-1]
            if found.returncode == 2
            or (found.returncode not in (0, 1) and (found.stdout + found.stderr).strip())
            else f"no interleaving of the {search + 1} it tried showed the violation"
        )
        return Repro(path, False, found.stdout, [], f"the standalone script does not reproduce it: {why}")
    info.tape = json.loads(tape_line[len("TAPE ") :])
    path.write_text(render(info), encoding="utf-8")
    confirm = run_script(path, adapter=adapter)
    if confirm.returncode != 1:
        return Repro(
            path,
            False,
            confirm.stdout,
            info.tape,
            f"the script found the violation while searching but exited {confirm.returncode} on its own",
        )
    return Repro(path, True, confirm.stdout, info.tape)
