"""One source of truth for judging: a standalone script's judge is the clause's checker, inlined.

Differential: every history the checker tests judge (collected by running `tests.test_checkers`'
own test functions, parametrized as pytest runs them) goes through `harness.checkers` and through the
``check`` of each clause's generated script, and both give the same result, violations included.
Then each script is shown to catch its clause on its own: in a subprocess, against the reference
with a planted bug (a mutant of `tests.mutants`, or one planted here where the catalogue has none
that the script's steps reach), it exits 1 naming the clause; against the clean reference it exits 0.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import inspect
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from harness import spec
from harness.checkers import CHECKERS
from harness.checkers.base import Judge, Verdict
from harness.history import History
from streamspec.repro import ScriptInfo, render, script_name
from tests import test_checkers
from tests.histories import happy_path
from tests.test_repro import ORPHAN, RACE, _run

CLAUSES = [c.id for c in spec.CLAUSES]


# -- the corpus: every history the checker tests judge -------------------------------------------


def _parametrizations(func: Any) -> list[dict[str, Any]]:
    """The keyword arguments pytest calls a test function with, one dict per generated test."""
    combos: list[dict[str, Any]] = [{}]
    for mark in getattr(func, "pytestmark", []):
        if mark.name != "parametrize":
            continue
        names = mark.args[0]
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        rows = []
        for value in mark.args[1]:
            if hasattr(value, "marks"):  # a pytest.param(...): its values are always a tuple
                values = tuple(value.values)
            else:
                values = tuple(value) if len(names) > 1 else (value,)
            rows.append(dict(zip(names, values, strict=True)))
        combos = [{**combo, **row} for combo in combos for row in rows]
    return combos


def _judged_histories() -> list[History]:
    """Every distinct history a checker is run on by the tests in `tests.test_checkers`."""
    seen: dict[str, History] = {}
    original = Judge.__init__

    def capture(self: Judge, clause_id: str, history: History) -> None:
        seen.setdefault(history.to_json(), history)
        original(self, clause_id, history)

    members = inspect.getmembers(test_checkers, inspect.isfunction)
    tests = [f for name, f in members if name.startswith("test_")]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Judge, "__init__", capture)
        for test in tests:
            wanted = set(inspect.signature(test).parameters)
            for kwargs in _parametrizations(test):
                if not wanted <= {*kwargs, "monkeypatch"}:
                    continue
                with pytest.MonkeyPatch.context() as monkeypatch, contextlib.suppress(AssertionError):
                    # A checker test that fails says so itself; here only its histories matter.
                    test(**kwargs, **({"monkeypatch": monkeypatch} if "monkeypatch" in wanted else {}))
    return list(seen.values())


@pytest.fixture(scope="module")
def corpus() -> list[History]:
    return _judged_histories()


@pytest.fixture(scope="module")
def scripts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ModuleType]]:
    """Each clause's generated script, imported as a module (it runs nothing until main())."""
    folder = tmp_path_factory.mktemp("scripts")
    modules = {}
    for clause in CLAUSES:
        path = folder / script_name(clause)
        path.write_text(render(ScriptInfo(clause, "lib 1.0", "streaming", RACE)), encoding="utf-8")
        name = f"streamspec_script_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # dataclasses look their module up while the script defines them
        module_spec.loader.exec_module(module)
        modules[clause] = module
    yield modules
    for module in modules.values():
        sys.modules.pop(module.__name__, None)


def _outcome(judge: Any, history: Any) -> dict[str, Any]:
    try:
        return judge(history).to_dict()
    except Exception as exc:  # a checker that crashes must crash the same way in the script
        return {"raised": f"{type(exc).__name__}: {exc}"}


def _scripted(script: ModuleType, history: History) -> dict[str, Any]:
    return _outcome(script.check, script.History.from_json(history.to_json()))


# -- the same verdicts ---------------------------------------------------------------------------


def test_the_corpus_holds_every_checker_test_history_and_a_violation_of_every_clause(corpus):
    assert len(corpus) >= 80, len(corpus)
    planted = {make()[0].to_json() for _, make, _ in test_checkers.VIOLATIONS}
    assert planted <= {h.to_json() for h in corpus}
    failing = {c for c in CLAUSES for h in corpus if CHECKERS[c](h).verdict is Verdict.FAIL}
    assert failing == set(CLAUSES)


@pytest.mark.parametrize("clause", CLAUSES)
def test_the_script_judges_every_history_as_the_checker_does(clause, corpus, scripts):
    different = []
    for n, history in enumerate(corpus):
        expected, got = _outcome(CHECKERS[clause], history), _scripted(scripts[clause], history)
        if got != expected:
            different.append((n, expected, got))
    assert not different, different[:3]


@pytest.mark.parametrize(
    ("clause", "make", "words"), test_checkers.VIOLATIONS,
    ids=[f"{clause}-{getattr(make, '__name__', 'seed')}" for clause, make, _ in test_checkers.VIOLATIONS],
)
def test_the_script_catches_each_planted_violation(clause, make, words, scripts):
    history, evidence = make()
    result = _scripted(scripts[clause], history)
    assert result["verdict"] == "fail", result
    matching = [v for v in result["violations"] if all(w in v["explanation"] for w in words)]
    assert matching and matching[0]["evidence"] == sorted(evidence), result["violations"]
    assert _scripted(scripts[clause], happy_path())["verdict"] == "pass"


def _definitions(source: str) -> str:
    """A module's code below its docstring and imports, as inlining keeps it."""
    lines = source.splitlines(keepends=True)
    body = [n for n in ast.parse(source).body if not isinstance(n, ast.Import | ast.ImportFrom)][1:]
    return "".join(lines[body[0].lineno - 1 :]).strip()


@pytest.mark.parametrize("clause", CLAUSES)
def test_the_script_holds_the_checker_source_verbatim(clause):
    text = render(ScriptInfo(clause, "lib 1.0", "streaming", RACE))
    root = Path(__file__).resolve().parent.parent
    for module in ("harness/records.py", "harness/history.py", "harness/checkers/base.py",
                   spec.clause(clause).checker_path):
        definitions = _definitions((root / module).read_text(encoding="utf-8"))
        if module == "harness/history.py":  # its re-export list of the records is not inlined
            definitions = definitions.split("# -- derived views", 1)[1]
        assert definitions in text, module
    assert "def judge_S" not in text  # the second engine's judges are gone


# -- each script catches its clause on its own --------------------------------------------------

PLANTED_APP = '''
import os

from django.apps import AppConfig


def planted(name):
    """Bugs the mutant catalogue has none of that a script's steps reach."""
    from django.conf import settings

    from reference_impl.streaming.channel import TaskChannel
    from reference_impl.streaming.coordinator import TaskCoordinator

    if name == "terminal_never_delivered":  # S5: the probe's own terminal event reaches no client
        publish = TaskChannel.publish

        def quiet(self, event):
            if event.get("type") != "complete":
                return publish(self, event)
            queues, self._queues = self._queues, type(self._queues)()
            try:
                publish(self, event)
            finally:
                self._queues = queues

        return {(TaskChannel, "publish"): quiet}
    if name == "never_taken_over":  # S7: a crashed process's task is never resumed
        claim, first = TaskCoordinator._claim, []

        async def only_the_first_claims(self, task):
            if first and first[0] is not self:
                return "elsewhere"
            first.append(self)
            return await claim(self, task)

        return {(TaskCoordinator, "_claim"): only_the_first_claims}
    if name == "no_event_log":  # S7.2: nothing survives the crash
        return {(settings, "STREAMING_EVENT_LOG"): False}
    raise KeyError(name)


class PlantedConfig(AppConfig):
    name = "repro_planted"

    def ready(self):
        from tests.mutants import BY_NAME, _apply

        name = os.environ.get("REPRO_BUG", "")
        if name:
            _apply(BY_NAME[name].patches() if name in BY_NAME else planted(name))
'''

CREATE = {"op": "create", "process": 0}
START = {"op": "start", "obj": 0, "process": 0}
ATTACH = {"op": "attach", "obj": 0, "process": 0}
RELEASE = {"op": "release", "task": 0}
FINISH = {"op": "finish_ok", "task": 0}
AFTER_A_CRASH = [CREATE, ATTACH, START, RELEASE, {"op": "restart", "process": 0},
                 {"op": "lookup", "task": 0, "process": 1}, {"op": "attach", "obj": 1, "process": 1}]
LIVE: list[tuple[str, str, list[dict[str, Any]]]] = [
    ("S1", "reload_overwrites_cache", RACE),
    ("S2", "state_on_the_object", ORPHAN),
    ("S3", "no_replay", [CREATE, START, RELEASE, ATTACH, RELEASE, FINISH]),
    ("S4", "check_then_start", [CREATE, {"op": "concurrently", "steps": [START, START]}, FINISH]),
    ("S5", "terminal_never_delivered", [CREATE, ATTACH, START, FINISH]),
    ("S6", "failure_not_persisted",
     [CREATE, ATTACH, START, {"op": "finish_fail", "task": 0}, {"op": "lookup", "task": 0, "process": 0}]),
    ("S7", "never_taken_over", AFTER_A_CRASH),
    ("S7.2", "no_event_log", AFTER_A_CRASH),
    ("S7.3", "shutdown_fails_the_task",
     [{"op": "spawn"}, CREATE, START, RELEASE, {"op": "lookup", "task": 0, "process": 1},
      {"op": "attach", "obj": 1, "process": 1}, {"op": "shutdown", "process": 0}]),
    ("S8", "loads_never_removed", [CREATE, START, FINISH, {"op": "lookup", "task": 0, "process": 0}]),
    ("S8.2", "unbounded_buffers",
     [CREATE, ATTACH, START, {"op": "stall", "client": 0}, {"op": "release", "task": 0, "count": 12}]),
]


BEHAVIOURS: list[tuple[str, str, list[dict[str, Any]]]] = [
    # The probe's other ways to end, a spelled lookup and a wait, in scripts as in the harness.
    ("S5", "no_terminal_without_complete",
     [CREATE, ATTACH, START, {"op": "finish_ok", "task": 0, "how": "value"}]),
    ("S6", "own_cancellation_escapes",
     [CREATE, ATTACH, START, RELEASE, {"op": "finish_fail", "task": 0, "how": "cancelled"}]),
    ("S1", "lookup_keyed_on_raw_strings",
     [CREATE, START, RELEASE, {"op": "wait", "seconds": 1.0},
      {"op": "lookup", "task": 0, "process": 0, "spelling": 1}]),
]


def test_every_clause_has_a_live_case():
    assert [clause for clause, _, _ in LIVE] == CLAUSES


@pytest.mark.parametrize(("clause", "bug", "program"), LIVE + BEHAVIOURS,
                         ids=[f"{c}-{b}" for c, b, _ in LIVE + BEHAVIOURS])
def test_the_script_catches_its_clause_on_a_buggy_implementation_and_passes_the_clean_one(
    clause, bug, program, tmp_path: Path, monkeypatch
):
    app = tmp_path / "repro_planted"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "apps.py").write_text(PLANTED_APP)
    buffer = 2  # the reference adapter's tiny client buffer, so a stalled client overflows at once
    info = ScriptInfo(clause, "reference", "reference_impl.streaming", program, extra_apps=["repro_planted"],
                      settings={"STREAMING_CLIENT_BUFFER": buffer}, buffer_limit=buffer)
    path = tmp_path / script_name(clause)
    path.write_text(render(info), encoding="utf-8")
    monkeypatch.setenv("REPRO_BUG", bug)
    buggy = _run(path)
    assert buggy.returncode == 1, buggy.stdout + buggy.stderr
    assert f"RESULT: {clause} is violated" in buggy.stdout and "\nactual:   " in buggy.stdout
    monkeypatch.setenv("REPRO_BUG", "")
    clean = _run(path)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert f"RESULT: {clause} holds" in clean.stdout


@pytest.mark.parametrize("clause", CLAUSES)
def test_a_script_judges_a_saved_history_alone(clause, tmp_path: Path):
    """``--judge FILE``: the script's checker on a history streamspec wrote, in a fresh interpreter."""
    violation = next(make()[0] for c, make, _ in test_checkers.VIOLATIONS if c == clause)
    path = tmp_path / script_name(clause)
    path.write_text(render(ScriptInfo(clause, "lib 1.0", "streaming", RACE)), encoding="utf-8")
    (tmp_path / "bad.json").write_text(json.dumps({"history": violation.to_dict()}))
    (tmp_path / "good.json").write_text(happy_path().to_json())
    bad, good = _run(path, "--judge", "bad.json"), _run(path, "--judge", "good.json")
    assert bad.returncode == 1 and f"RESULT: {clause} is violated" in bad.stdout, bad.stdout + bad.stderr
    assert CHECKERS[clause](violation).violations[0].explanation in bad.stdout
    assert good.returncode == 0, good.stdout + good.stderr
    assert f"RESULT: {clause} is not violated" in good.stdout


def test_the_corpus_runner_expands_parametrize_as_pytest_does():
    @pytest.mark.parametrize("a", [1, pytest.param(2, id="two")])
    @pytest.mark.parametrize(("b", "c"), [("x", "y")])
    def sample(a, b, c):
        pass

    expected = [{"b": "x", "c": "y", "a": 1}, {"b": "x", "c": "y", "a": 2}]
    assert sorted(_parametrizations(sample), key=str) == sorted(expected, key=str)
    assert _parametrizations(lambda: None) == [{}]


def test_a_script_whose_own_code_breaks_inside_the_task_exits_2_never_0(tmp_path: Path):
    """A name the script failed to inline, raised inside process(), would read to the implementation
    as the task failing: the script must say it broke, not judge the implementation on it."""
    program = [CREATE, ATTACH, START, {"op": "finish_fail", "task": 0, "how": "base_exception"}]
    text = render(ScriptInfo("S6", "reference", "reference_impl.streaming", program))
    start = text.index("class ProbeAbort(BaseException):")
    end = text.index("\n\n\n", start)
    path = tmp_path / script_name("S6")
    path.write_text(text[:start] + text[end:], encoding="utf-8")
    broken = _run(path)
    assert broken.returncode == 2, broken.stdout + broken.stderr
    assert "the script itself broke" in broken.stdout and "NameError" in broken.stdout
