"""The clause index of SPEC.md: for every clause, where its pieces are, read from the code.

For each clause of `harness.spec` the index lists its checker (the `harness.checkers` registry), the
scenario families built to reach it (`Family.clauses` in `scenarios/families.py`), the reference
code that keeps it, its tests and its mutants. The wire clauses (W1..., judged by `--mode http`)
have a table of their own: their scenario steps are the HTTP mode's (`WIRE_STEPS` in
`scenarios/wire.py`), their checker tests the ``WIRE_VIOLATIONS`` of `tests/test_wire_checkers.py`,
and no mutants (the mutant matrix runs in-process). `python -m streamspec.clause_index` rewrites the
index between its GENERATED markers in SPEC.md; ``--check`` only reports whether it is stale and
which clause lacks a piece (exit 1 if either).

The reference implementation, the tests and the mutant catalogue are read as source text, never
imported: the reference must not depend on streamspec, and the application layer may not import
the test suite (import-linter contracts in pyproject.toml). Their conventions:

- reference code: a clause ID in a docstring or comment of `reference_impl/streaming/` (``S1:``,
  ``(S3)``, ``S2/S3``) tags the module, class or function it sits in; the docstring of
  `coordinator.py` is the map from every clause to the code that keeps it;
- tests: ``@pytest.mark.clause("S3")`` marks (also in a module's ``pytestmark``), a name starting
  ``test_s3_`` (``test_s7_2_`` for S7.2), else the clause IDs in the title of the section comment
  (``# -- S3 latest-event replay ----``) the test sits under; `tests/test_checkers.py` also has
  one parametrized case per entry of its ``VIOLATIONS`` list, and `tests/test_wire_checkers.py` per
  entry of ``WIRE_VIOLATIONS``;
- mutants: the clause of each ``Mutant(name, clause, ...)`` in ``CATALOGUE`` of `tests/mutants.py`.
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import sys
import tokenize
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness import spec
from harness.checkers import CHECKERS, WIRE_CHECKERS, Checker
from scenarios.families import FAMILIES, Family
from scenarios.wire import WIRE_STEPS

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_DIR = "reference_impl/streaming"
TESTS_DIR = "tests"
CHECKER_TESTS = ("test_checkers.py", "test_wire_checkers.py")
VIOLATION_LISTS = {"VIOLATIONS": "test_checker_catches_violation",
                   "WIRE_VIOLATIONS": "test_wire_checker_catches_planted_bug"}
"""A checker test module's list of violating histories -> the parametrized test that runs it."""
MUTANTS_FILE = "tests/mutants.py"

BEGIN_MARK = (
    "<!-- BEGIN GENERATED clause index from streamspec/clause_index.py: "
    "run `python -m streamspec.clause_index` -->"
)
END_MARK = "<!-- END GENERATED clause index -->"

# An ID is ``S<n>``, ``S<n>.<m>`` or ``W<n>``; "S8." ending a sentence is S8, and "S7.2" is never
# also S7.
_ID = re.compile(r"(?<![\w.])[SW]\d+(?:\.\d+)?(?!\w)")
_SECTION = re.compile(r"^# -- (?P<title>.+?) -{3,}\s*$")
_TEST_NAME = re.compile(r"^test_s(\d+)(?:_(\d+))?_")


@dataclass(frozen=True)
class ClauseEntry:
    """Everything the index says about one clause."""

    id: str
    title: str = ""
    level: str = ""
    requirement: str = ""
    anchor: str = ""
    """The link target of the clause's section in SPEC.md ("" if the spec does not have it)."""
    checker: str = ""
    """Path of the checker module registered for the clause ("" if none is)."""
    families: tuple[str, ...] = ()
    reference: tuple[str, ...] = ()
    """``file: where`` locations in reference_impl/streaming/ tagged with the clause."""
    reference_tests: tuple[str, ...] = ()
    """``file::test`` of tests/ outside test_checkers.py."""
    checker_tests: tuple[str, ...] = ()
    """``test_checkers.py::test`` and its VIOLATIONS cases."""
    mutants: tuple[str, ...] = ()


@dataclass
class _Found:
    """Clause ID -> locations, in the order found."""

    by_clause: dict[str, list[str]] = field(default_factory=dict)

    def add(self, clause_ids: Iterable[str], where: str) -> None:
        for clause_id in clause_ids:
            places = self.by_clause.setdefault(clause_id, [])
            if where not in places:
                places.append(where)

    def get(self, clause_id: str) -> tuple[str, ...]:
        return tuple(self.by_clause.get(clause_id, ()))


def clause_ids(text: str) -> list[str]:
    """The clause IDs a piece of prose names, in order, each once."""
    return list(dict.fromkeys(_ID.findall(text)))


# -- reference code ---------------------------------------------------------------------------------


def _scopes(tree: ast.Module) -> list[tuple[int, int, str, ast.AST]]:
    """(first line, last line, qualified name, node) of every class and function, outermost first."""
    scopes: list[tuple[int, int, str, ast.AST]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                scopes.append((first, child.end_lineno or child.lineno, name, child))
                visit(child, f"{name}.")

    visit(tree, "")
    return scopes


def _innermost(scopes: Sequence[tuple[int, int, str, ast.AST]], line: int) -> str:
    inside = [s for s in scopes if s[0] <= line <= s[1]]
    return max(inside, key=lambda s: s[0])[2] if inside else "module"


def _comments(source: str) -> list[tuple[int, str]]:
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return [(tok.start[0], tok.string) for tok in tokens if tok.type == tokenize.COMMENT]


def reference_tags(source: str, filename: str) -> dict[str, list[str]]:
    """Clause ID -> ``filename: where`` for the docstrings and comments of one reference module
    that name it (``where`` is ``module docstring``, ``module`` or a class or function)."""
    tree = ast.parse(source)
    scopes = _scopes(tree)
    found = _Found()
    doc = ast.get_docstring(tree, clean=False)
    if doc:
        found.add(clause_ids(doc), f"{filename}: module docstring")
    for _first, _last, name, node in scopes:
        doc = ast.get_docstring(node, clean=False)  # type: ignore[arg-type]
        if doc:
            found.add(clause_ids(doc), f"{filename}: {name}")
    for line, comment in _comments(source):
        found.add(clause_ids(comment), f"{filename}: {_innermost(scopes, line)}")
    return found.by_clause


def _reference(root: Path) -> _Found:
    found = _Found()
    base = root / REFERENCE_DIR
    for path in sorted(base.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        name = path.relative_to(base).as_posix()
        for clause_id, places in reference_tags(path.read_text(encoding="utf-8"), name).items():
            for place in places:
                found.add([clause_id], place)
    return found


# -- tests ------------------------------------------------------------------------------------------


def _mark_clauses(node: ast.expr) -> list[str]:
    """The IDs of ``pytest.mark.clause("S3")`` calls in a decorator or a ``pytestmark`` value."""
    found = []
    for call in ast.walk(node):
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and call.func.attr == "clause"
            and isinstance(call.func.value, ast.Attribute)
            and call.func.value.attr == "mark"
        ):
            found += [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    return found


def _name_clause(name: str, known: Iterable[str]) -> list[str]:
    match = _TEST_NAME.match(name)
    if match is None:
        return []
    major, minor = match.groups()
    known = set(known)
    if minor is not None and f"S{major}.{minor}" in known:
        return [f"S{major}.{minor}"]
    return [f"S{major}"] if f"S{major}" in known else []


def _violation_cases(tree: ast.Module, filename: str) -> list[tuple[str, str]]:
    """(clause, ``file::<test>[<clause>-<maker>]``) per entry of a `VIOLATION_LISTS` list."""
    cases = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        lists = [t.id for t in targets if isinstance(t, ast.Name) and t.id in VIOLATION_LISTS]
        if not lists or node.value is None:
            continue
        test = VIOLATION_LISTS[lists[0]]
        if not isinstance(node.value, ast.List | ast.Tuple):
            continue
        for entry in node.value.elts:
            if not (isinstance(entry, ast.Tuple) and entry.elts and isinstance(entry.elts[0], ast.Constant)):
                continue
            clause_id = str(entry.elts[0].value)
            maker = entry.elts[1] if len(entry.elts) > 1 else None
            label = maker.id if isinstance(maker, ast.Name) else "seed"
            cases.append((clause_id, f"{filename}::{test}[{clause_id}-{label}]"))
    return cases


def tagged_tests(source: str, filename: str, known: Iterable[str]) -> dict[str, list[str]]:
    """Clause ID -> ``filename::test`` for the tests of one test module (see the module docstring
    for the conventions; a test's own marks and name win over its section's title)."""
    known = list(known)
    tree = ast.parse(source)
    sections = [
        (line, clause_ids(m.group("title")))
        for line, comment in _comments(source)
        if (m := _SECTION.match(comment))
    ]
    module_marks: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
        ):
            module_marks += _mark_clauses(node.value)
    found = _Found()
    tests: list[tuple[ast.FunctionDef | ast.AsyncFunctionDef, str]] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            tests.append((node, node.name))
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            tests += [
                (m, f"{node.name}::{m.name}")
                for m in node.body
                if isinstance(m, ast.FunctionDef | ast.AsyncFunctionDef)
            ]
    for node, qualname in tests:
        if not node.name.startswith("test_"):
            continue
        own = module_marks + [c for d in node.decorator_list for c in _mark_clauses(d)]
        own += _name_clause(node.name, known)
        if not own:
            above = [ids for line, ids in sections if line < node.lineno]
            own = above[-1] if above else []
        found.add(own, f"{filename}::{qualname}")
    for clause_id, case in _violation_cases(tree, filename):
        found.add([clause_id], case)
    return found.by_clause


def _tests(root: Path, known: Iterable[str]) -> tuple[_Found, _Found]:
    """(reference tests, checker tests)."""
    reference, checkers = _Found(), _Found()
    for path in sorted((root / TESTS_DIR).glob("test_*.py")):
        found = checkers if path.name in CHECKER_TESTS else reference
        for clause_id, places in tagged_tests(path.read_text(encoding="utf-8"), path.name, known).items():
            for place in places:
                found.add([clause_id], place)
    return reference, checkers


# -- mutants ----------------------------------------------------------------------------------------


def _catalogue_calls(node: ast.expr) -> list[ast.Call]:
    """The ``Mutant(...)`` calls of a CATALOGUE value: a tuple or list, or a sum of them."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _catalogue_calls(node.left) + _catalogue_calls(node.right)
    if isinstance(node, ast.Tuple | ast.List):
        calls = []
        for elt in node.elts:
            if isinstance(elt, ast.Starred):
                calls += _catalogue_calls(elt.value)
            elif isinstance(elt, ast.Call):
                calls.append(elt)
        return calls
    return []


def _argument(call: ast.Call, position: int, keyword: str) -> str | None:
    for kw in call.keywords:
        if kw.arg == keyword and isinstance(kw.value, ast.Constant):
            return str(kw.value.value)
    if len(call.args) > position and isinstance(call.args[position], ast.Constant):
        return str(call.args[position].value)  # type: ignore[attr-defined]
    return None


def mutant_tags(source: str) -> dict[str, list[str]]:
    """Clause ID -> names of the mutants in the ``CATALOGUE`` of a mutants module, and in its
    ``CLAUSE_TEST_MUTANTS`` (mutants only the clause tests kill yet), marked "(clause tests)"."""
    found = _Found()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        names = {t.id for t in targets if isinstance(t, ast.Name)}
        if not names & {"CATALOGUE", "CLAUSE_TEST_MUTANTS"}:
            continue
        for call in _catalogue_calls(value):
            name, clause_id = _argument(call, 0, "name"), _argument(call, 1, "clause")
            if name is not None and clause_id is not None:
                found.add([clause_id], name if "CATALOGUE" in names else f"{name} (clause tests)")
    return found.by_clause


# -- the index --------------------------------------------------------------------------------------


def collect(
    root: Path = ROOT,
    *,
    clauses: Sequence[spec.Clause] = spec.CLAUSES,
    checkers: Mapping[str, Checker] = CHECKERS,
    families: Mapping[str, Family] = FAMILIES,
) -> list[ClauseEntry]:
    """One entry per clause of the spec, in spec order, then one per ID that something declares
    (a checker, a family, a mutant, a test mark) but the spec does not have."""
    by_id = {c.id: c for c in clauses}
    family_found = _Found()
    for family in families.values():
        family_found.add(sorted(family.clauses), family.name)
    reference = _reference(root)
    reference_tests, checker_tests = _tests(root, by_id)
    mutants_path = root / MUTANTS_FILE
    mutants = mutant_tags(mutants_path.read_text(encoding="utf-8")) if mutants_path.exists() else {}
    declared = [*checkers, *family_found.by_clause, *mutants, *reference_tests.by_clause,
                *checker_tests.by_clause]
    kinds = {c.id[0] for c in clauses}  # an S table lists stray S IDs, the wire table stray W IDs
    ids = list(by_id) + [i for i in dict.fromkeys(declared) if i not in by_id and i[0] in kinds]
    entries = []
    for clause_id in ids:
        clause = by_id.get(clause_id)
        checker = checkers.get(clause_id)
        module = getattr(checker, "__module__", "") if checker is not None else ""
        entries.append(ClauseEntry(
            id=clause_id,
            title=clause.title if clause else "",
            level=str(clause.level) if clause else "",
            requirement=clause.requirement if clause else "",
            anchor=spec._anchor(clause) if clause else "",
            checker=module.replace(".", "/") + ".py" if module else "",
            families=family_found.get(clause_id),
            reference=reference.get(clause_id),
            reference_tests=reference_tests.get(clause_id),
            checker_tests=checker_tests.get(clause_id),
            mutants=tuple(mutants.get(clause_id, ())),
        ))
    return entries


@dataclass(frozen=True)
class _Steps:
    """The wire steps that reach some clauses, shown where the S clauses show their families."""

    name: str
    clauses: frozenset[str]


def collect_wire(root: Path = ROOT) -> list[ClauseEntry]:
    """The index entries of the wire clauses: their steps are the HTTP mode's (`WIRE_STEPS`)."""
    steps = {op: _Steps(f"{op} step", frozenset(ids)) for op, ids in WIRE_STEPS.items()}
    return collect(root, clauses=spec.WIRE_CLAUSES, checkers=WIRE_CHECKERS, families=steps)  # type: ignore[arg-type]


def missing(entries: Iterable[ClauseEntry]) -> list[str]:
    """One line per missing piece of a clause, saying what to add where; empty when complete."""
    problems = []
    for e in entries:
        q = f'"{e.id}"'
        wire = e.id.startswith("W")
        if not (e.title and e.requirement and e.level):
            problems.append(f"{e.id}: no spec text: add a Clause(id={q}, title=..., level=..., "
                            f"requirement=...) to {'WIRE_CLAUSES' if wire else 'CLAUSES'} in harness/spec.py")
        if not e.checker:
            problems.append(f"{e.id}: no checker: add harness/checkers/{e.id[0].lower()}<id>_<name>.py with "
                            f"CLAUSE_ID = {q} and list it in {'WIRE_MODULES' if wire else 'MODULES'} of "
                            "harness/checkers/__init__.py")
        if not e.families and wire:
            problems.append(f"{e.id}: no scenario step: add {q} to the clauses of the step in WIRE_STEPS "
                            "(scenarios/wire.py) that is there to reach it")
        elif not e.families:
            problems.append(f"{e.id}: no scenario family: add {q} to the clauses= of the family in "
                            "scenarios/families.py whose rules reach it")
        if not e.reference:
            problems.append(f"{e.id}: no reference code: name {e.id} in a docstring or comment of the "
                            "code in reference_impl/streaming/ that keeps it (and in the clause map of "
                            "coordinator.py's docstring)")
        if not e.reference_tests:
            where = "tests/test_reference_wire.py" if wire else (
                f"tests/test_reference_clauses.py, under a section comment "
                f"'# -- {e.id} {e.title.lower() or '<title>'} ----'")
            problems.append(f"{e.id}: no reference test: add a test marked @pytest.mark.clause({q}) "
                            f"to {where}")
        if not e.checker_tests:
            where = ("WIRE_VIOLATIONS in tests/test_wire_checkers.py" if wire
                     else "VIOLATIONS in tests/test_checkers.py")
            problems.append(f"{e.id}: no checker test: add a violating history for {q} to {where}")
        if not e.mutants and not wire:
            problems.append(f"{e.id}: no mutant: add Mutant(<name>, {q}, <description>, <patches>) to "
                            "CATALOGUE in tests/mutants.py")
    return problems


def _cell(items: Iterable[str]) -> str:
    """Locations grouped by file, the cases of one parametrized test in one pair of brackets:
    ``a.py: x, t[S1-a, S1-b]<br>b.py: z``; "—" when there are none."""
    groups: dict[str, dict[str, list[str]]] = {}
    for item in items:
        file, sep, where = item.partition("::") if "::" in item else item.partition(": ")
        name, _, case = (where if sep else file).partition("[")
        cases = groups.setdefault(file if sep else "", {}).setdefault(name, [])
        if case:
            cases.append(case.rstrip("]"))
    lines = []
    for file, names in groups.items():
        shown = ", ".join(
            f"`{n}[{', '.join(c)}]`" if c else n if " " in n else f"`{n}`" for n, c in names.items()
        )
        lines.append(f"`{file}`: {shown}" if file else shown)
    return "<br>".join(lines) or "—"


def _row(e: ClauseEntry) -> str:
    """A table row of `e` up to its tests (the S table adds the mutants)."""
    name = f"[{e.id} {e.title}](#{e.anchor})" if e.anchor else e.id
    checker = f"`{e.checker}`" if e.checker else "—"
    return (f"| {name} | {e.level or '—'} | {checker} | {_cell(e.families)} | {_cell(e.reference)} "
            f"| {_cell([*e.reference_tests, *e.checker_tests])} |")


def render(entries: Sequence[ClauseEntry], wire: Sequence[ClauseEntry] = ()) -> str:
    """Everything SPEC.md holds between the clause index's GENERATED markers: the S clauses'
    table, and the wire clauses' (`collect_wire`) if any."""
    rows = [
        "| Clause | Level | Checker | Scenario families | Reference code (`reference_impl/streaming/`) "
        "| Tests (`tests/`) | Mutants (`tests/mutants.py`) |",
        "|---|---|---|---|---|---|---|",
    ]
    rows += [f"{_row(e)} {_cell(e.mutants)} |" for e in entries]
    gaps = missing([*entries, *wire])
    intro = (
        "Where each clause's pieces are, generated from the code: the checker registry, "
        "`Family.clauses` in `scenarios/families.py`, clause IDs in the docstrings and comments of "
        "the reference, tests marked `@pytest.mark.clause(...)` (or named `test_s<id>_`, or in a "
        "clause's section), and the clause of each mutant in `CATALOGUE`."
    )
    parts = [BEGIN_MARK, "## Clause index", intro, "\n".join(rows)]
    if wire:
        wire_rows = [
            "| Clause | Level | Checker | Scenario steps (`scenarios/wire.py`) | Reference code "
            "(`reference_impl/streaming/`) | Tests (`tests/`) |",
            "|---|---|---|---|---|---|",
        ]
        wire_rows += [_row(e) for e in wire]
        parts += ["### Wire clauses", "Judged by `--mode http` only; the mutant matrix runs in-process, "
                  "so they have no mutants.", "\n".join(wire_rows)]
    if gaps:
        parts.append("Missing pieces:\n\n" + "\n".join(f"- {g}" for g in gaps))
    parts.append(END_MARK)
    return "\n\n".join(parts)


def generated_block(text: str) -> str:
    """The clause index of a SPEC.md text, markers included; ValueError if it has none."""
    match = re.search(re.escape(BEGIN_MARK) + r".*?" + re.escape(END_MARK), text, flags=re.S)
    if match is None:
        raise ValueError(f"SPEC.md has no clause index markers ({BEGIN_MARK} ... {END_MARK})")
    return match.group(0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streamspec.clause_index",
        description="Rewrite the clause index of SPEC.md from the code (or, with --check, say whether "
        "it is stale and which clause lacks a piece).",
    )
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if the index is stale or a clause lacks a piece")
    parser.add_argument("--spec-md", type=Path, default=ROOT / "SPEC.md", metavar="FILE")
    args = parser.parse_args(argv)
    entries, wire = collect(), collect_wire()
    text = args.spec_md.read_text(encoding="utf-8")
    new = text.replace(generated_block(text), render(entries, wire))
    gaps = missing([*entries, *wire])
    for gap in gaps:
        print(f"missing: {gap}")
    if args.check:
        stale = new != text
        if stale:
            print(f"{args.spec_md.name}: the clause index is stale: run python -m streamspec.clause_index")
        return 1 if stale or gaps else 0
    if new != text:
        args.spec_md.write_text(new, encoding="utf-8")
        print(f"{args.spec_md.name}: clause index updated")
    else:
        print(f"{args.spec_md.name}: clause index already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
