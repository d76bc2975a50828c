"""Standalone reproductions: generated from a program, they run with only Django and the package.

On upstream (``--sut upstream``) the lookup-versus-start race is found, its script generated and
confirmed to exit 1; pointed at the reference (same API, another package) the same script exits 0.
On the reference the scripts of known-bad programs hold (exit 0).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import spec
from streamspec.inline import InlineError, Piece, assemble
from streamspec.repro import ScriptInfo, build, package_of, render, run_script, script_name, steps_code

ROOT = Path(__file__).resolve().parent.parent
EVERY_OP = [
    {"op": "create", "process": 0},
    {
        "op": "concurrently",
        "steps": [{"op": "start", "obj": 0, "process": 0}, {"op": "lookup", "task": 0, "process": 0}],
    },
    {"op": "attach", "obj": 1, "process": 0},
    {"op": "stall", "client": 0},
    {"op": "release", "task": 0, "count": 3},
    {
        "op": "concurrently",
        "steps": [{"op": "release", "task": 0}, {"op": "reload", "task": 0, "process": 0}],
    },
    {"op": "finish_fail", "task": 0},
    {"op": "detach", "client": 0},
    {"op": "spawn"},
    {"op": "restart", "process": 0},
    {"op": "lookup", "task": 0, "process": 2},
    {"op": "crash", "process": 1},
    {"op": "concurrently", "steps": [{"op": "finish_ok", "task": 0}]},
]
RACE = [
    {"op": "create", "process": 0},
    {
        "op": "concurrently",
        "steps": [{"op": "start", "obj": 0, "process": 0}, {"op": "lookup", "task": 0, "process": 0}],
    },
]
ORPHAN = [  # issue #1: a client attached through a fresh load of a running task's row
    {"op": "create", "process": 0},
    {"op": "start", "obj": 0, "process": 0},
    {"op": "release", "task": 0},
    {"op": "reload", "task": 0, "process": 0},
    {"op": "attach", "obj": 1, "process": 0},
    {"op": "release", "task": 0},
    {"op": "finish_ok", "task": 0},
]


def _parse(text: str) -> ast.Module:
    """ast.parse on a thread of its own: CPython 3.11 before 3.11.8 may raise "AST constructor
    recursion depth mismatch" when the calling thread's recursion count was disturbed by a
    tracer (coverage) or an earlier deep recursion; a fresh thread starts from zero."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(ast.parse, text).result()


def _env(package: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("DJANGO_SETTINGS_MODULE", None)
    if package:
        env["STREAMSPEC_REPRO_PACKAGE"] = package
    return env


def _run(path: Path, *args: str, package: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, path.name, *args],
        cwd=path.parent,
        env=_env(package),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_every_op_becomes_plain_code():
    code = steps_code(EVERY_OP)
    assert "obj1 = await w.create(p0)" in code
    assert "_, obj2 = await asyncio.gather(" in code and "w.lookup(p0, T1)," in code
    assert "c1 = await w.attach(p0, obj2)" in code
    assert "await w.stall(c1)" in code and "await w.release(T1, 3)" in code
    assert "p1 = await w.start_process()" in code and "p2 = await w.restart(p0)" in code
    assert "obj4 = await w.lookup(p2, T1)" in code
    assert "await w.crash(p1)" in code and "_, = await asyncio.gather(" in code
    text = render(ScriptInfo("S4", "lib 1.0", "streaming", EVERY_OP))
    compile(text, "repro_S4.py", "exec")


@pytest.mark.parametrize("clause", ["S1", "S2", "S3", "S4", "S5", "S6", "S7", "S7.2", "S8", "S8.2"])
def test_script_judges_with_its_clause_checker_and_imports_no_streamspec(clause):
    text = render(ScriptInfo(clause, "lib 1.0", "streaming", RACE))
    tree = _parse(text)
    defined = [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)]
    assert defined.count("check") == 1 and len(defined) == len(set(defined))
    assert f"# == {spec.clause(clause).checker_path} ==" in text
    assert not [name for name in defined if name.startswith("judge_S")]
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not imported & {"harness", "scenarios", "streamspec", "hypothesis", "reference_impl"}
    assert imported <= set(sys.stdlib_module_names) | {"django", "__future__"}
    assert script_name(clause) == f"repro_{clause.replace('.', '_')}.py"


def test_inlining_refuses_a_name_defined_twice_or_never():
    checker = "from harness.history import History\n\n\ndef check(h: History) -> None:\n    pass\n"
    one = Piece("one.py", checker)
    other = Piece("other.py", "def check() -> None:\n    pass\n")
    with pytest.raises(InlineError, match=r"check is defined by both one\.py and other\.py"):
        assemble("", [one, other])
    with pytest.raises(InlineError, match="stripped imports need History, which no piece defines"):
        assemble("", [one])
    history = Piece("history.py", "import json\n\n\nclass History:\n    pass\n\n\nUNUSED = 1\n", ("History",))
    script = assemble("#!/usr/bin/env python3", [history, one])
    assert "import json" not in script and "UNUSED" not in script and "from harness" not in script
    namespace: dict = {}
    exec(compile(script, "script.py", "exec"), namespace)
    assert namespace["check"](namespace["History"]()) is None


def test_repro_scripts_hold_on_the_reference(tmp_path: Path):
    """Programs that break upstream are harmless on the reference: each script exits 0."""
    for clause, program in (("S1", RACE), ("S2", ORPHAN), ("S3", ORPHAN)):
        path = tmp_path / script_name(clause)
        path.write_text(render(ScriptInfo(clause, "lib 1.0", "reference_impl.streaming", program)))
        done = _run(path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"RESULT: {clause} holds" in done.stdout


def test_a_package_that_cannot_load_exits_2(tmp_path: Path):
    path = tmp_path / "repro_S1.py"
    path.write_text(render(ScriptInfo("S1", "lib 1.0", "no_such_streaming_package", RACE)))
    done = _run(path)
    assert done.returncode == 2
    assert "cannot set up Django with 'no_such_streaming_package'" in done.stdout


def test_upstream_race_reproduces_standalone_and_passes_on_the_reference(sut_adapter, tmp_path: Path):
    from scenarios import REGRESSIONS, search_program

    found = search_program(sut_adapter, REGRESSIONS["lookup_vs_start"].program, clauses={"S1"},
                           max_examples=200, seed=0)
    if sut_adapter.name != "upstream":
        assert found is None  # the race is upstream's: there is nothing to reproduce here
        return
    assert found is not None
    failure = SimpleNamespace(clause="S1", program=RACE, seed=0, family="joins")
    repro = build(failure, sut_adapter, tmp_path)
    assert package_of(sut_adapter) == "streaming"
    assert repro.reproduced, repro.note
    assert "RESULT: S1 is violated" in repro.output and "actual:   lookup op" in repro.output
    alone = run_script(repro.path, adapter=sut_adapter)
    assert alone.returncode == 1 and alone.stdout == repro.output  # deterministic
    fixed = _run(repro.path, package="reference_impl.streaming")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
