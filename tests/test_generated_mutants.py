"""The generated-mutant report: score, classification by key, refusal of what is not classified.

cosmic-ray itself is not run here (a run takes an hour); the report is computed from results.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamspec import generated_mutants as gm
from streamspec.cli import main


def _mutant(line: int, outcome: str, operator: str = "core/NumberReplacer") -> gm.Mutant:
    return gm.Mutant("reference_impl/streaming/channel.py", line, operator, 0, outcome, f"diff {line}", "")


MUTANTS = [_mutant(1, "killed"), _mutant(2, "killed"), _mutant(3, "timeout"), _mutant(4, "survived"),
           _mutant(5, "survived"), _mutant(6, "incompetent")]


def _classes(**by_line: str) -> dict[str, dict[str, str]]:
    return {_mutant(int(line[1:]), "survived").key: {"class": cls, "reason": "because"}
            for line, cls in by_line.items()}


def test_the_score_counts_timeouts_as_kills_and_leaves_equivalent_and_incompetent_ones_out():
    rep = gm.report(100, MUTANTS, _classes(l4="equivalent", l5="missed"))
    # killed 2 + timeout 1, of 6 tried - 1 incompetent - 1 equivalent
    assert rep.score == pytest.approx(3 / 4)
    assert not rep.unclassified
    assert rep.to_dict()["missed"] == 1 and rep.to_dict()["equivalent"] == 1


def test_an_unclassified_survivor_is_named_with_what_to_do(tmp_path):
    rep = gm.report(100, MUTANTS, _classes(l4="unreachable"))
    assert [m.line for m in rep.unclassified] == [5]
    gm.write(rep, tmp_path)
    md = (tmp_path / "generated-mutants.md").read_text()
    assert "1 survivors are not classified" in md and str(gm.CLASSIFICATION) in md
    assert _mutant(5, "survived").key in md


def test_a_classification_is_matched_by_module_line_operator_and_occurrence():
    other_operator = {_mutant(4, "survived", operator="core/AddNot").key: {"class": "equivalent",
                                                                         "reason": "x"}}
    rep = gm.report(100, MUTANTS, other_operator)
    assert {m.line for m in rep.unclassified} == {4, 5}


@pytest.mark.parametrize("entry", [{"class": "probably fine", "reason": "x"}, {"class": "equivalent"},
                                   {"class": "missed", "reason": "  "}])
def test_a_classification_without_a_known_class_or_a_reason_is_refused(tmp_path, entry):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"survivors": {"m:1:op:0": entry}}))
    with pytest.raises(ValueError, match="give a class"):
        gm.load_classification(path)


def test_report_only_reads_an_earlier_run_and_fails_on_an_unclassified_survivor(tmp_path, monkeypatch):
    results = tmp_path / "run" / "generated-mutants.json"
    gm.write(gm.report(100, MUTANTS, {}), results.parent)
    # A checkout with the core modules and a classification that covers one of the two survivors.
    root = tmp_path / "checkout"
    for module in gm.CORE_MODULES:
        (root / module).parent.mkdir(parents=True, exist_ok=True)
        (root / module).write_text("")
    (root / gm.CLASSIFICATION).parent.mkdir(parents=True)
    (root / gm.CLASSIFICATION).write_text(json.dumps({"survivors": _classes(l4="equivalent")}))
    monkeypatch.chdir(root)
    out = tmp_path / "out"
    assert main(["generated-mutants", "--report-only", str(results), "--out", str(out)]) == 1
    data = json.loads((out / "generated-mutants.json").read_text())
    assert data["unclassified"] == [_mutant(5, "survived").key]
    (root / gm.CLASSIFICATION).write_text(json.dumps({"survivors": _classes(l4="equivalent", l5="missed")}))
    assert main(["generated-mutants", "--report-only", str(results), "--out", str(out)]) == 0


def test_the_committed_classification_is_well_formed():
    root = Path(__file__).resolve().parent.parent
    entries = gm.load_classification(root / gm.CLASSIFICATION)
    assert entries, "baselines/generated-mutants.json classifies no survivor"
    for key in entries:
        module, line, operator, occurrence = key.rsplit(":", 3)[0], *key.rsplit(":", 3)[1:]
        assert module in gm.CORE_MODULES and line.isdigit() and operator and occurrence.isdigit(), key


@pytest.mark.parametrize(("args", "message"), [
    (["--sample", "0"], "--sample 0: give at least 1"),
    (["--timeout", "-1"], "give a positive number"),
    (["--report-only", "no-such.json"], "no such file"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, capsys):
    assert main(["generated-mutants", *args]) == 2
    assert message in capsys.readouterr().err


def test_mutants_inside_annotations_are_told_apart_from_the_code_beside_them():
    source = ("from __future__ import annotations\n"
              "def f(a: int | None, *rest: str) -> list[int] | None:\n"
              "    b: int | None = a or 0\n"
              "    return [b | 1]\n")
    spans = gm.annotation_spans(source)
    in_arg = ((2, 9), (2, 19))          # int | None of a
    in_return = ((2, 36), (2, 52))      # list[int] | None
    in_annassign = ((3, 7), (3, 17))    # the annotation of b
    in_code = ((4, 12), (4, 17))        # b | 1: real code
    assert gm._in_annotation(spans, *in_arg)
    assert gm._in_annotation(spans, *in_return)
    assert gm._in_annotation(spans, *in_annassign)
    assert not gm._in_annotation(spans, *in_code)
    assert not gm._in_annotation(spans, (3, 20), (3, 26))  # the value assigned to b


def test_a_continuation_line_ran_when_its_statement_did_a_nested_one_only_if_it_ran(tmp_path, monkeypatch):
    module = gm.CORE_MODULES[0]
    (tmp_path / module).parent.mkdir(parents=True)
    (tmp_path / module).write_text("def f(x):\n"           # 1
                                   "    if (x and\n"       # 2
                                   "            x > 1):\n"  # 3: continuation of the if
                                   "        return 1\n"    # 4: never ran
                                   "    return 0\n")       # 5
    for other in gm.CORE_MODULES[1:]:
        (tmp_path / other).write_text("")

    class Data:
        def lines(self, path):
            return [1, 2, 5] if path.endswith(module) else []

    class Coverage:
        def __init__(self, **kwargs):
            pass

        def load(self):
            pass

        def get_data(self):
            return Data()

    import subprocess

    import coverage

    monkeypatch.setattr(coverage, "Coverage", Coverage)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, "", ""))
    ran = gm._executed_lines(tmp_path, "python -m streamspec verify")[module]
    assert {1, 2, 3, 5} <= ran and 4 not in ran
