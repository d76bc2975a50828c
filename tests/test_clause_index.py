"""The clause index of SPEC.md (`streamspec.clause_index`): current, complete, able to say what is missing."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from harness import spec
from harness.checkers import CHECKERS
from scenarios.families import FAMILIES, Family
from streamspec import clause_index
from streamspec.clause_index import (
    ClauseEntry,
    collect,
    collect_wire,
    missing,
    mutant_tags,
    reference_tags,
    tagged_tests,
)

ROOT = Path(__file__).resolve().parent.parent


def test_spec_md_clause_index_is_current():
    text = (ROOT / "SPEC.md").read_text(encoding="utf-8")
    assert clause_index.generated_block(text) == clause_index.render(collect(), collect_wire()), (
        "SPEC.md's clause index is stale: run `python -m streamspec.clause_index` and commit SPEC.md"
    )


def test_every_clause_has_every_piece():
    gaps = missing([*collect(), *collect_wire()])
    assert gaps == [], "clauses lack pieces:\n" + "\n".join(gaps)


def test_the_wire_clauses_have_their_own_table_with_their_steps_and_no_mutants():
    wire = {e.id: e for e in collect_wire()}
    assert list(wire) == [c.id for c in spec.WIRE_CLAUSES]
    assert wire["W7"].families == ("intrude step",) and wire["W7"].checker == "harness/checkers/w7_access.py"
    case = "test_wire_checkers.py::test_wire_checker_catches_planted_bug[W7-w7_let_in]"
    assert case in wire["W7"].checker_tests
    assert not any(e.id.startswith("W") for e in collect())  # the S table lists S clauses only
    # A wire clause lacking its step is told where wire steps are declared; none needs a mutant.
    lacking = dataclasses.replace(wire["W4"], families=(), mutants=())
    assert missing([lacking]) == [
        "W4: no scenario step: add \"W4\" to the clauses of the step in WIRE_STEPS (scenarios/wire.py) "
        "that is there to reach it"]


# -- the completeness check can fail ------------------------------------------------------------------


def _complete(clause_id: str = "S1") -> ClauseEntry:
    return ClauseEntry(
        id=clause_id, title="Identity", level="MUST", requirement="a lookup returns the running object",
        anchor="s1", checker="harness/checkers/s1_identity.py", families=("joins",),
        reference=("coordinator.py: module docstring",),
        reference_tests=("test_reference_clauses.py::test_s1_x",),
        checker_tests=("test_checkers.py::test_checker_catches_violation[S1-seed]",),
        mutants=("reload_overwrites_cache",),
    )


def test_a_complete_entry_has_nothing_missing():
    assert missing([_complete()]) == []


@pytest.mark.parametrize(
    ("piece", "says"),
    [
        ("requirement", "no spec text: add a Clause(id=\"S1\""),
        ("checker", "no checker: add harness/checkers/s<id>_<name>.py with CLAUSE_ID = \"S1\""),
        ("families", "no scenario family: add \"S1\" to the clauses= of the family in scenarios/families.py"),
        ("reference", "no reference code: name S1 in a docstring or comment of the code in "
                      "reference_impl/streaming/"),
        ("reference_tests", "no reference test: add a test marked @pytest.mark.clause(\"S1\") to "
                            "tests/test_reference_clauses.py, under a section comment "
                            "'# -- S1 identity ----'"),
        ("checker_tests", "no checker test: add a violating history for \"S1\" to VIOLATIONS"),
        ("mutants", "no mutant: add Mutant(<name>, \"S1\", <description>, <patches>) to CATALOGUE in "
                    "tests/mutants.py"),
    ],
)
def test_a_missing_piece_is_named_with_where_to_add_it(piece, says):
    empty = "" if isinstance(getattr(_complete(), piece), str) else ()
    gaps = missing([_complete("S2"), dataclasses.replace(_complete(), **{piece: empty})])
    assert len(gaps) == 1 and gaps[0].startswith(f"S1: {says}"), gaps


def _tree(tmp_path: Path, *, mutants: str) -> Path:
    """A project with one clause, S1, and each of its pieces in the conventions of the real one."""
    files = {
        "reference_impl/streaming/coordinator.py": '''
            """The coordinator.

            - S1: the running instance is registered before the first await.
            """
        ''',
        "tests/test_reference_clauses.py": '''
            import pytest

            # -- S1 identity ----------------------------------------------------------------

            @pytest.mark.clause("S1")
            def test_s1_lookups_return_the_running_object():
                assert True
        ''',
        "tests/test_checkers.py": '''
            VIOLATIONS = [
                ("S1", s1_lookup_fails, ["returned obj"]),
            ]
        ''',
        "tests/mutants.py": mutants,
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return tmp_path


def _collect_s1(root: Path) -> list[ClauseEntry]:
    return collect(
        root,
        clauses=[spec.clause("S1")],
        checkers={"S1": CHECKERS["S1"]},
        families={"joins": dataclasses.replace(FAMILIES["joins"], clauses=frozenset({"S1"}))},
    )


def test_the_check_passes_a_complete_tree_and_fails_one_without_its_mutant(tmp_path):
    with_mutant = 'CATALOGUE = (\n    Mutant("reload_overwrites_cache", "S1", "caches its copy", _p),\n)\n'
    complete = _collect_s1(_tree(tmp_path / "complete", mutants=with_mutant))
    assert missing(complete) == [], complete

    without = _collect_s1(_tree(tmp_path / "without", mutants="CATALOGUE = ()\n"))
    assert [g.split(":")[:2] for g in missing(without)] == [["S1", " no mutant"]]
    assert without[0].mutants == () and without[0].reference_tests == complete[0].reference_tests


def test_a_family_declaring_an_unknown_clause_is_reported_as_lacking_spec_text(tmp_path):
    root = _tree(tmp_path, mutants="CATALOGUE = ()\n")
    families = {"odd": Family("odd", "", frozenset(), frozenset(), clauses=frozenset({"S1", "S9"}))}
    entries = collect(root, clauses=[spec.clause("S1")], checkers={"S1": CHECKERS["S1"]}, families=families)
    assert [e.id for e in entries] == ["S1", "S9"]
    assert any(g.startswith("S9: no spec text") for g in missing(entries)), missing(entries)


def test_check_mode_fails_on_a_stale_index_and_leaves_the_file_alone(tmp_path, capsys):
    spec_md = tmp_path / "SPEC.md"
    stale = f"intro\n\n{clause_index.BEGIN_MARK}\nold\n{clause_index.END_MARK}\n\nafter\n"
    spec_md.write_text(stale, encoding="utf-8")
    assert clause_index.main(["--check", "--spec-md", str(spec_md)]) == 1
    assert "stale" in capsys.readouterr().out
    assert spec_md.read_text(encoding="utf-8") == stale
    clause_index.main(["--spec-md", str(spec_md)])
    rewritten = spec_md.read_text(encoding="utf-8")
    assert rewritten.startswith("intro\n\n") and rewritten.endswith("\n\nafter\n")
    assert "| [S1 Identity](#s1-identity-must-critical) | MUST |" in rewritten


# -- the parsers recognise the conventions, including pieces still to come -----------------------------


def test_mutants_are_read_from_the_catalogue_positional_or_by_keyword():
    source = textwrap.dedent('''
        OTHER = (Mutant("not_catalogued", "S1", "", _p),)
        CATALOGUE: tuple[Mutant, ...] = (
            Mutant("no_replay", "S3", "A joiner does not get the latest event", _no_replay),
            Mutant("resumed_twice", "S7",
                   "Two processes both take over a task whose owner died", _resumed_twice),
            Mutant(name="replay_lost_on_restart", clause="S7.2", description="", patches=_p),
        ) + (Mutant("queues_left_behind", "S8", "", _p),)
    ''')
    assert mutant_tags(source) == {
        "S3": ["no_replay"], "S7": ["resumed_twice"], "S7.2": ["replay_lost_on_restart"],
        "S8": ["queues_left_behind"],
    }


def test_tests_are_read_from_marks_names_sections_and_violation_cases():
    source = textwrap.dedent('''
        import pytest

        # -- S6 failure ------------------------------------------------------------------

        @pytest.mark.clause("S6")
        async def test_s6_failure_is_persisted():
            ...

        # -- S7 restart and S7.2 replay after restart ----------------------------------

        @pytest.mark.clause("S7")
        async def test_s7_a_dead_owners_task_is_resumed_once():
            ...

        @pytest.mark.clause("S7.2")
        async def test_a_joiner_after_the_restart_gets_the_last_event():
            ...

        def test_s7_2_named_only():
            ...

        async def test_in_the_section_without_a_mark():
            ...

        # -- API surface ----------------------------------------------------------------

        async def test_events_carry_ids():
            ...

        VIOLATIONS = [
            ("S7", s7_resumed_twice, ["entered process() 2 times"]),
            ("S5", lambda: (seed(), (1,)), ["never received"]),
        ]
    ''')
    found = tagged_tests(source, "t.py", spec.BY_ID)
    assert found == {
        "S6": ["t.py::test_s6_failure_is_persisted"],
        "S7": ["t.py::test_s7_a_dead_owners_task_is_resumed_once", "t.py::test_in_the_section_without_a_mark",
               "t.py::test_checker_catches_violation[S7-s7_resumed_twice]"],
        "S7.2": ["t.py::test_a_joiner_after_the_restart_gets_the_last_event", "t.py::test_s7_2_named_only",
                 "t.py::test_in_the_section_without_a_mark"],
        "S5": ["t.py::test_checker_catches_violation[S5-seed]"],
    }


def test_reference_tags_name_the_docstring_or_the_function_a_comment_sits_in():
    source = textwrap.dedent('''
        """The coordinator, by clause:

        - S2/S3: clients live in a channel per task.
        - S7: a dead owner's task is taken over once; its last event is replayed (S7.2).
        - S8. Nothing is kept.
        """

        class Coordinator:
            """Runs each task once (S4)."""

            async def lookup(self):
                return running  # the running object wins (S1)
    ''')
    assert reference_tags(source, "c.py") == {
        "S2": ["c.py: module docstring"], "S3": ["c.py: module docstring"],
        "S7": ["c.py: module docstring"], "S7.2": ["c.py: module docstring"],
        "S8": ["c.py: module docstring"], "S4": ["c.py: Coordinator"], "S1": ["c.py: Coordinator.lookup"],
    }
