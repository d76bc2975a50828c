"""Generated mutants: an unbiased sample of the reference's mutants, made by cosmic-ray.

Our own catalogue (`tests/mutants.py`) holds bugs we thought of; it says little about the bugs we
did not. Here a mutation tool made for the job (cosmic-ray) generates every mutant its operators
can make of the reference's core modules; a seeded uniform sample of them is run, each against
``streamspec verify --profile dev`` (the test command: exit 0 means the mutant survived). Every
survivor must be classified in a committed file (`baselines/generated-mutants.json`):

- ``equivalent``: no behaviour can tell it from the original (say why);
- ``unreachable``: the scenarios cannot exercise that code (say which path, and why);
- ``missed``: a real change the suite did not catch (say what a scenario would need).

The score is killed / (tried - equivalent). `run` works in a temporary copy of the tree, so the
checkout is never mutated; `report` only reads results, so it is tested without running anything.
"""

from __future__ import annotations

import ast
import json
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CLASSES", "CORE_MODULES", "Mutant", "Report", "classification_key", "load_classification",
    "report", "run", "write",
]

CORE_MODULES = (
    "reference_impl/streaming/coordinator.py",
    "reference_impl/streaming/channel.py",
    "reference_impl/streaming/subscription.py",
    "reference_impl/streaming/models.py",
    "reference_impl/streaming/relay.py",
    "reference_impl/streaming/following.py",
    "reference_impl/streaming/terminal.py",
)
"""What runs a task and serves its clients; not the views, the server or the settings."""

CLASSES = ("equivalent", "unreachable", "missed")
NOT_EXECUTED = ("its line is never executed by the unmutated dev-profile search (coverage): nothing "
                "can detect it")
CLASSIFICATION = Path("baselines/generated-mutants.json")
SAMPLE, SEED, TIMEOUT = 220, 0, 240.0
"""Mutants run (of all generated), the sampling seed, seconds per verify (a timeout kills)."""

# What is copied for a run: the packages a verify imports, nothing generated.
_TREE = ("harness", "scenarios", "streamspec", "reference_impl", "tests", "pyproject.toml", "conftest.py")


@dataclass(frozen=True)
class Mutant:
    module: str
    line: int
    operator: str
    occurrence: int
    outcome: str
    """``killed``, ``survived``, ``timeout`` (killed: a hang is a violation), ``incompetent``, or
    ``not_executed`` (its line never runs in the search: not run, it cannot be detected)."""
    diff: str = ""
    output: str = ""

    @property
    def key(self) -> str:
        return classification_key(self.module, self.line, self.operator, self.occurrence)


def classification_key(module: str, line: int, operator: str, occurrence: int) -> str:
    """A survivor's key in the classification file: stable while the module's lines stay put."""
    return f"{module}:{line}:{operator}:{occurrence}"


@dataclass
class Report:
    generated: int
    mutants: list[Mutant]
    classification: dict[str, dict[str, str]]
    sample: int
    seed: int
    annotated: int = 0
    """Generated mutants inside annotations: equivalent by construction, set aside, not run."""

    def count(self, outcome: str) -> int:
        return sum(1 for m in self.mutants if m.outcome == outcome)

    @property
    def survivors(self) -> list[Mutant]:
        return [m for m in self.mutants if m.outcome == "survived"]

    def class_of(self, mutant: Mutant) -> str | None:
        """Its class: unreachable for a mutant whose line never runs, else the committed one."""
        if mutant.outcome == "not_executed":
            return "unreachable"
        entry = self.classification.get(mutant.key)
        return entry.get("class") if entry else None

    def reason_of(self, mutant: Mutant) -> str | None:
        if mutant.outcome == "not_executed":
            return NOT_EXECUTED
        return (self.classification.get(mutant.key) or {}).get("reason")

    @property
    def unclassified(self) -> list[Mutant]:
        return [m for m in self.survivors if self.class_of(m) not in CLASSES]

    def classified(self, cls: str) -> list[Mutant]:
        """Survivors of class `cls`, the mutants whose line never runs counted as unreachable."""
        return [m for m in (*self.survivors, *self.not_executed) if self.class_of(m) == cls]

    @property
    def not_executed(self) -> list[Mutant]:
        return [m for m in self.mutants if m.outcome == "not_executed"]

    @property
    def score(self) -> float | None:
        """Killed among the non-equivalent ones (a timeout is a kill; an incompetent mutant, one
        that could not be run, counts as neither)."""
        tried = len(self.mutants) - self.count("incompetent") - len(self.classified("equivalent"))
        killed = self.count("killed") + self.count("timeout")
        return killed / tried if tried else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "streamspec.generated-mutants", "version": 1, "generated": self.generated,
            "in_annotations": self.annotated,
            "sample": self.sample, "seed": self.seed, "tried": len(self.mutants),
            "killed": self.count("killed"), "timeout": self.count("timeout"),
            "incompetent": self.count("incompetent"), "not_executed": len(self.not_executed),
            "survived": len(self.survivors),
            "equivalent": len(self.classified("equivalent")),
            "unreachable": len(self.classified("unreachable")), "missed": len(self.classified("missed")),
            "unclassified": [m.key for m in self.unclassified], "score": self.score,
            "mutants": [{**asdict(m), "key": m.key, "class": self.class_of(m), "reason": self.reason_of(m)}
                        for m in self.mutants],
        }


def load_classification(path: Path) -> dict[str, dict[str, str]]:
    """The committed classification: {key: {"class": ..., "reason": ...}}. Refuses an entry whose
    class is not one of `CLASSES` or that gives no reason."""
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    entries = data.get("survivors", {})
    for key, entry in entries.items():
        if entry.get("class") not in CLASSES or not str(entry.get("reason", "")).strip():
            raise ValueError(f"{path}: {key}: give a class ({', '.join(CLASSES)}) and a reason")
    return entries


def report(generated: int, mutants: Iterable[Mutant], classification: dict[str, dict[str, str]], *,
           sample: int = SAMPLE, seed: int = SEED, annotated: int = 0) -> Report:
    return Report(generated, sorted(mutants, key=lambda m: (m.module, m.line, m.operator, m.occurrence)),
                  classification, sample, seed, annotated)


def markdown(rep: Report) -> str:
    score = "-" if rep.score is None else f"{100 * rep.score:.1f}%"
    lines = [
        "# Generated mutants of the reference",
        "",
        f"cosmic-ray generated {rep.generated} mutants of the reference's core modules. "
        f"{rep.annotated} of them change an annotation, which `from __future__ import annotations` "
        "leaves a string never evaluated: equivalent by construction, they are not run. Of the "
        f"others a uniform sample of {len(rep.mutants)} (seed {rep.seed}) was each verified with "
        "the `dev` profile (exit 0: survived).",
        "",
        "| tried | killed | timed out (killed) | incompetent | line never executed | ran and survived "
        "| equivalent | unreachable (never executed included) | missed | score (killed of non-equivalent) |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {len(rep.mutants)} | {rep.count('killed')} | {rep.count('timeout')} | {rep.count('incompetent')} "
        f"| {len(rep.not_executed)} | {len(rep.survivors)} | {len(rep.classified('equivalent'))} | "
        f"{len(rep.classified('unreachable'))} | {len(rep.classified('missed'))} | {score} |",
        "",
    ]
    if rep.unclassified:
        lines += [f"**{len(rep.unclassified)} survivors are not classified**: add each key below to "
                  f"`{CLASSIFICATION}` with a class ({', '.join(CLASSES)}) and a reason.", ""]
    if rep.not_executed:
        lines += ["## Never executed", "", f"Unreachable: {NOT_EXECUTED}.", ""]
        lines += [f"- `{m.key}`" for m in rep.not_executed] + [""]
    lines += ["## Survivors that ran", ""]
    for m in rep.survivors:
        lines += [f"### `{m.key}`: {rep.class_of(m) or 'UNCLASSIFIED'}", "",
                  rep.reason_of(m) or "(no reason given)", "", "```diff", m.diff.strip(), "```", ""]
    return "\n".join(lines)


def write(rep: Report, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "generated-mutants.json").write_text(json.dumps(rep.to_dict(), indent=1) + "\n")
    (out / "generated-mutants.md").write_text(markdown(rep))


# -- running cosmic-ray ---------------------------------------------------------------------------


def _config(test_command: str, timeout: float) -> str:
    modules = ", ".join(json.dumps(m) for m in CORE_MODULES)
    return (
        "[cosmic-ray]\n"
        f"module-path = [{modules}]\n"
        f"timeout = {timeout}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(test_command)}\n"
        "[cosmic-ray.distributor]\n"
        'name = "local"\n'
    )


def _cosmic_ray(*args: str, cwd: Path, every: Callable[[], None] | None = None) -> None:
    """Run a cosmic-ray command in `cwd`; `every` is called every 30 s while it runs (progress)."""
    with tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen([sys.executable, "-m", "cosmic_ray.cli", *args], cwd=cwd,
                                 stdout=subprocess.DEVNULL, stderr=err, text=True)
        try:
            while True:
                try:
                    code = child.wait(timeout=30)
                    break
                except subprocess.TimeoutExpired:
                    if every is not None:
                        every()
        except BaseException:  # interrupted: no mutation run left behind (cosmic-ray restores the file)
            child.terminate()
            child.wait()
            raise
        if code != 0:
            err.seek(0)
            raise RuntimeError(f"cosmic-ray {args[0]} exited {code}: {err.read().strip()[-2000:]}")


def annotation_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(start, end) (line, column) of every annotation in `source`. Under ``from __future__ import
    annotations`` (every core module) an annotation is a string never evaluated: a mutant inside
    one is equivalent by construction, so it is set aside before sampling rather than run."""
    spans = []
    for node in ast.walk(ast.parse(source)):
        annotations = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            annotations.append(node.returns)
            args = node.args
            annotations += [a.annotation for a in (*args.posonlyargs, *args.args, *args.kwonlyargs,
                                                    args.vararg, args.kwarg) if a is not None]
        elif isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
        for a in annotations:
            if a is not None and a.end_lineno is not None and a.end_col_offset is not None:
                spans.append(((a.lineno, a.col_offset), (a.end_lineno, a.end_col_offset)))
    return spans


def _in_annotation(spans: list[tuple[tuple[int, int], tuple[int, int]]], start: tuple[int, int],
                   end: tuple[int, int]) -> bool:
    return any(s <= start and end <= e for s, e in spans)


def _executed_lines(tree: Path, command: str) -> dict[str, set[int]]:
    """Per core module, the lines one run of `command` (the unmutated verify) executes."""
    data = tree / ".coverage-generated"
    # A configuration of its own: the project's (pyproject.toml) measures subprocesses, which
    # splits the data into parallel files.
    rcfile = tree / ".coveragerc-generated"
    rcfile.write_text("[run]\nsource = reference_impl/streaming\n")
    args = shlex.split(command)
    python, rest = args[0], args[1:]
    done = subprocess.run([python, "-m", "coverage", "run", f"--rcfile={rcfile}", f"--data-file={data}",
                           *rest], cwd=tree, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the unmutated verify failed under coverage (exit {done.returncode}): "
                           f"{(done.stdout + done.stderr).strip()[-2000:]}")
    import coverage

    cov = coverage.Coverage(data_file=str(data), config_file=str(rcfile))
    cov.load()
    measured = cov.get_data()
    lines: dict[str, set[int]] = {}
    for module in CORE_MODULES:
        ran = set(measured.lines(str((tree / module).resolve())) or ())
        # Coverage counts a statement at its first line: a mutant on a continuation line ran when
        # the innermost statement around it did.
        nodes = ast.walk(ast.parse((tree / module).read_text()))
        spans = [(n.lineno, n.end_lineno or n.lineno) for n in nodes if isinstance(n, ast.stmt)]
        lines[module] = {
            line for first, last in spans if first in ran for line in range(first, last + 1)
            # a line inside a nested statement is that statement's to answer for
            if line == first or not any(first < f <= line <= e for f, e in spans)
        }
    return lines


def run(root: Path, *, sample: int = SAMPLE, seed: int = SEED, timeout: float = TIMEOUT,
        progress: Callable[[str], None] | None = None) -> tuple[int, int, list[Mutant]]:
    """Generate every mutant of `CORE_MODULES` in a copy of `root`, run a seeded sample of
    `sample` of those outside annotations, and return (number generated, number in annotations,
    the sample's results)."""
    try:
        from cosmic_ray.work_db import WorkDB, use_db
        from cosmic_ray.work_item import MutationSpec, TestOutcome, WorkerOutcome, WorkResult
    except ImportError as exc:
        raise RuntimeError("cosmic-ray is not installed: pip install 'streamspec[mutation]'") from exc
    say = progress or (lambda _line: None)
    with tempfile.TemporaryDirectory(prefix="streamspec-generated-") as tmp:
        tree = Path(tmp) / "tree"
        tree.mkdir()
        for name in _TREE:
            src = root / name
            if src.is_dir():
                shutil.copytree(src, tree / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            elif src.exists():
                shutil.copy2(src, tree / name)
        out = Path(tmp) / "verify"
        # cosmic-ray splits the command as a shell would. One process: the coverage of the unmutated
        # run below must see every line the search executes.
        command = (f"{shlex.quote(sys.executable)} -m streamspec verify --sut reference --profile dev "
                   f"--seed 0 --no-corpus --no-repro --jobs 1 --out {shlex.quote(str(out))}")
        (tree / "cosmic-ray.toml").write_text(_config(command, timeout))
        session = tree / "session.sqlite"
        _cosmic_ray("init", "cosmic-ray.toml", str(session), cwd=tree)
        say("measuring which lines the unmutated search executes (coverage of one dev verify)")
        executed = _executed_lines(tree, command)
        # cosmic-ray's paths are relative to the tree, and its positions 1-based lines, 0-based
        # columns, as the ast module's.
        spans = {m: annotation_spans((tree / m).read_text()) for m in CORE_MODULES}
        with use_db(str(session), WorkDB.Mode.open) as db:
            items = sorted(db.work_items, key=lambda w: w.job_id)
            generated = len(items)
            candidates = [w for w in items if not _in_annotation(
                spans.get(str(w.mutations[0].module_path), []),
                tuple(w.mutations[0].start_pos), tuple(w.mutations[0].end_pos))]
            annotated = generated - len(candidates)
            chosen = {w.job_id for w in random.Random(seed).sample(candidates, min(sample, len(candidates)))}
            # A sampled mutant on a line the search never executes cannot be detected: it is
            # recorded as such (it counts against the score) rather than run.
            unexecuted: dict[str, MutationSpec] = {}
            for item in items:
                spec = item.mutations[0]
                ran = executed.get(str(spec.module_path), set())
                if item.job_id in chosen and spec.start_pos[0] not in ran:
                    unexecuted[item.job_id] = spec
                if item.job_id not in chosen or item.job_id in unexecuted:
                    db.set_result(item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
        to_run = len(chosen) - len(unexecuted)
        say(f"cosmic-ray generated {generated} mutants, {annotated} of them in annotations (equivalent: "
            f"not run); sampled {len(chosen)} of the others (seed {seed}), {len(unexecuted)} of them on "
            f"lines the search never executes; running {to_run}")

        def count_verified() -> None:
            with use_db(str(session), WorkDB.Mode.open) as db:
                ran = sum(1 for item, result in db.completed_work_items
                          if item.job_id in chosen and item.job_id not in unexecuted
                          and result.worker_outcome != WorkerOutcome.SKIPPED)
            say(f"{ran} of {to_run} mutants verified")

        _cosmic_ray("exec", "cosmic-ray.toml", str(session), cwd=tree, every=count_verified)
        mutants = [Mutant(str(spec.module_path), spec.start_pos[0], spec.operator_name, spec.occurrence,
                          "not_executed") for spec in unexecuted.values()]
        with use_db(str(session), WorkDB.Mode.open) as db:
            for item, result in db.completed_work_items:
                if item.job_id not in chosen or item.job_id in unexecuted:
                    continue
                spec = item.mutations[0]
                if result.test_outcome == TestOutcome.SURVIVED:
                    outcome = "survived"
                elif result.test_outcome == TestOutcome.INCOMPETENT or result.test_outcome is None:
                    outcome = "incompetent"
                else:
                    outcome = "timeout" if (result.output or "").strip() == "timeout" else "killed"
                mutants.append(Mutant(str(spec.module_path), spec.start_pos[0], spec.operator_name,
                                      spec.occurrence, outcome, result.diff or "",
                                      "\n".join((result.output or "").strip().splitlines()[-3:])))
    return generated, annotated, mutants


def main(root: Path, out: Path, *, sample: int, seed: int, timeout: float,
         progress: Callable[[str], None]) -> int:
    """Run, report against the committed classification, write `out`; 1 if a survivor is not
    classified, else 0."""
    classification = load_classification(root / CLASSIFICATION)
    generated, annotated, mutants = run(root, sample=sample, seed=seed, timeout=timeout, progress=progress)
    rep = report(generated, mutants, classification, sample=sample, seed=seed, annotated=annotated)
    write(rep, out)
    progress(f"{len(rep.mutants)} tried: {rep.count('killed') + rep.count('timeout')} killed, "
             f"{len(rep.survivors)} survived ({len(rep.unclassified)} unclassified); "
             f"report: {out / 'generated-mutants.md'}")
    return 1 if rep.unclassified else 0


def rereport(root: Path, results: Path, out: Path) -> int:
    """Report a finished run's results (its generated-mutants.json) against the classification as it
    is now: classify survivors without running everything again."""
    data = json.loads(results.read_text())
    fields: Sequence[str] = ("module", "line", "operator", "occurrence", "outcome", "diff", "output")
    mutants = [Mutant(**{f: m[f] for f in fields}) for m in data["mutants"]]
    rep = report(data["generated"], mutants, load_classification(root / CLASSIFICATION),
                 sample=data["sample"], seed=data["seed"], annotated=data.get("in_annotations", 0))
    write(rep, out)
    return 1 if rep.unclassified else 0
