"""The report writers: summary (md, json, junit, terminal), bug reports, timelines, the index.

Fast: canned histories and small runs; the full pipeline is tests/test_cli.py's.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import spec
from harness.checkers import check_all
from harness.choice import Tape
from harness.driver import Outcome
from harness.runner import RunStacks
from streamspec.reports import bugreport, index, summary, timeline
from streamspec.reports.text import Implementation, program_steps
from tests import histories

SEED_HEADINGS = [
    "## Severity",
    "## Affected Components",
    "## Description",
    "## How to Reproduce",
    "## Requirement / Expected / Actual",
    "## Root Cause Analysis",
    "## Impact",
    "## Suggested Fix",
    "## Related clauses",
]
VERSIONS = {
    "implementation": "lib",
    "implementation_version": "1.0",
    "django": "5.2",
    "python": "3.11.7",
    "streamspec": "0.1.0",
    "hypothesis": "6",
}


def _row(clause: str, verdict: str, **extra) -> dict:
    return {**summary.clause_row(clause), "verdict": verdict, "examples": 10, **extra}


def _summary(rows: list[dict], **extra) -> dict:
    data = {
        "format": summary.FORMAT,
        "version": 1,
        "sut": "lib",
        "adapter": "lib",
        "versions": VERSIONS,
        "mode": "inproc",
        "profile": "dev",
        "seed": 7,
        "seconds": 1.5,
        "examples": {"joins": 10},
        "strict": False,
        "clauses": rows,
        "conclusion": "DOES NOT CONFORM",
        "exit_code": 1,
        "corpus": {},
        "baseline": None,
        "notes": [],
        "folder": "reports/lib",
    }
    data.update(extra)
    return data


def _all_rows(failing: dict[str, str]) -> list[dict]:
    rows = []
    for c in spec.CLAUSES:
        if c.id in failing:
            rows.append(
                _row(
                    c.id,
                    "fail",
                    violation=failing[c.id],
                    violations=[failing[c.id]],
                    files={"report": f"{bugreport.slug(c.id)}.md", "failure": f"{bugreport.slug(c.id)}.json"},
                )
            )
        else:
            rows.append(_row(c.id, "pass"))
    return rows


# -- summary ------------------------------------------------------------------------------------


def test_should_failure_never_reads_as_a_pass():
    assert summary.verdict_label(_row("S7.2", "fail")) == "FAIL (SHOULD)"
    assert summary.verdict_label(_row("S1", "fail")) == "FAIL (MUST)"
    assert summary.verdict_label(_row("S1", "pass")) == "PASS"


def test_markdown_table_lists_every_clause_with_its_files():
    data = _summary(_all_rows({"S1": "lookup op3 returned obj2", "S7.2": "replayed nothing"}))
    text = summary.to_markdown(data)
    for c in spec.CLAUSES:
        assert f"| {c.id} | {c.title} |" in text
    assert "**FAIL (MUST)**" in text and "**FAIL (SHOULD)**" in text
    assert "[bug report](S1-identity.md)" in text
    assert "## MUST failures" in text and "## SHOULD failures" in text
    assert "--seed 7" in text


def test_junit_has_one_case_per_clause_and_should_failures_fail():
    data = _summary(_all_rows({"S1": "x", "S7.2": "y"}))
    root = ET.fromstring(summary.to_junit(data))
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == len(spec.CLAUSES)
    failed = {
        c.get("name").split()[0]: c.find("failure").get("type")
        for c in cases
        if c.find("failure") is not None
    }
    assert failed == {"S1": "MUST", "S7.2": "SHOULD"}
    assert suite.get("failures") == "2"


def test_terminal_summary_lists_should_failures_separately():
    data = _summary(_all_rows({"S7.2": "y"}), conclusion="CONFORMS", exit_code=0)
    text = summary.to_terminal(data)
    assert "SHOULD failures: S7.2" in text and "--strict" in text
    assert "MUST failures" not in text
    assert text.rstrip().endswith("CONFORMS")
    assert "\033[" not in text  # no colour unless asked


# -- timeline -----------------------------------------------------------------------------------


def test_timeline_has_a_lane_per_client_and_highlights_evidence():
    history = histories.seed_issue_1()
    violations = next(r for r in check_all(history) if r.clause == "S1").violations
    page = timeline.render(history, title="S1 on the seed", violations=violations)
    assert "<th>client c1 (T1)</th>" in page and "<th>client c2 (T1)</th>" in page
    assert "<th>task T1</th>" in page
    for i in violations[0].evidence:
        assert re.search(rf'<tr class="evidence"><td class="n"><a id="r{i}"></a>#{i}</td>', page)
    assert page.count("receives 1") == 1  # c1 received event 1, c2 nothing
    assert "<script" not in page


# -- bug reports --------------------------------------------------------------------------------


def test_bug_report_follows_the_seed_structure(sut_adapter):
    history = histories.seed_issue_1()
    outcome = Outcome(history, check_all(history), Tape(), 0, 0.0, RunStacks())
    failure = SimpleNamespace(
        clause="S1",
        family="joins",
        seed=3,
        program=[{"op": "create", "process": 0}, {"op": "lookup", "task": 0, "process": 0}],
    )
    files = {
        "report": "S1-identity.md",
        "failure": "S1-identity.json",
        "timeline": "S1-identity.html",
        "repro": "repro_S1.py",
    }
    text = bugreport.render(
        failure=failure,
        outcome=outcome,
        adapter=sut_adapter,
        versions=VERSIONS,
        sut="lib",
        files=files,
        repro=None,
        related=["S2", "S3"],
    )
    positions = [text.index(h) for h in SEED_HEADINGS]
    assert positions == sorted(positions)
    assert text.startswith("# S1 Identity violated in lib 1.0: lookup op")
    assert "**CRITICAL ❌**" in text
    assert spec.clause("S1").fix_hint in text
    assert "streamspec replay S1-identity.json" in text
    assert "- S2 No orphan clients (MUST): violated in the same run" in text
    assert "1. Create task row T1 in p0: object obj1." in text
    assert "`#12`" in text  # the lookup's completion, cited as evidence


def test_affected_components_come_from_stacks_captured_in_the_run(sut_adapter):
    """The race of issue #1 against the session's implementation: on upstream the second object
    is created in the coordinator's get_task_instance; the reference never fails, so there a
    lookup's object is looked for in the reference's own files."""
    from harness.choice import FifoChoices
    from harness.driver import run_scenario
    from scenarios import REGRESSIONS, search_program

    async def race(run):
        created = await run.create()
        await run.concurrently(run.start(created), run.lookup(created.task))

    impl = Implementation.of(sut_adapter)
    if sut_adapter.name == "upstream":
        found = search_program(sut_adapter, REGRESSIONS["lookup_vs_start"].program, clauses={"S1"},
                               max_examples=200, seed=0)
        assert found is not None
        result = found.outcome.result("S1")
        components = bugreport.affected_components(
            found.outcome.history, found.outcome.stacks, "S1", result.violations, impl
        )
        first = components[0].location
        assert (first.path, first.function) == ("streaming/coordinator.py", "get_task_instance")
        assert "aget" in first.source
    else:
        outcome = run_scenario(sut_adapter, race, FifoChoices())
        made = [impl.locations(stack) for stack in outcome.stacks.objects.values()]
        spawned = [impl.locations(stack) for stack in outcome.stacks.spawned.values()]
        assert any(locs for locs in spawned), "no frame of the implementation where the run was started"
        for locs in [*made, *spawned]:
            for loc in locs:
                assert loc.path.startswith("reference_impl/streaming/") and not loc.path.startswith("/")


def test_program_steps_name_slots_like_the_history():
    program = [
        {"op": "create", "process": 0},
        {
            "op": "concurrently",
            "steps": [{"op": "start", "obj": 0, "process": 0}, {"op": "lookup", "task": 0, "process": 0}],
        },
        {"op": "attach", "obj": 1, "process": 0},
        {"op": "restart", "process": 0},
        {"op": "reload", "task": 0, "process": 1},
        {"op": "detach", "client": 0},
    ]
    lines = program_steps(program)
    assert lines[0] == "1. Create task row T1 in p0: object obj1."
    assert "start T1 through obj1" in lines[1] and "object obj2" in lines[1]
    assert lines[2] == "3. Attach client c1 through obj2 in p0."
    assert lines[3] == "4. Crash p0 and start p1 over the same database."
    assert "in p1: object obj3" in lines[4]
    assert lines[5] == "6. Detach client c1."


# -- index --------------------------------------------------------------------------------------


def test_index_matrix_has_a_column_per_implementation(tmp_path: Path):
    for name, failing in (("upstream", {"S1": "x"}), ("reference", {})):
        folder = tmp_path / name
        folder.mkdir()
        data = _summary(_all_rows(failing), sut=name, adapter=name)
        (folder / "summary.json").write_text(json.dumps(data))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "summary.json").write_text("{not json")
    path = index.write_index(tmp_path)
    page = path.read_text()
    assert [n for n, _ in index.load_summaries(tmp_path)] == ["reference", "upstream"]
    assert page.index('href="reference/summary.md"') < page.index('href="upstream/summary.md"')
    assert 'href="upstream/S1-identity.md">FAIL (MUST)</a>' in page
    assert page.count('<tr><td class="clause">') == len(spec.CLAUSES)
    assert not list(tmp_path.glob(".index*"))


@pytest.mark.parametrize("clause", [c.id for c in spec.CLAUSES])
def test_slugs_are_file_names(clause):
    assert re.fullmatch(r"S\d(\.\d)?-[a-z0-9-]+", bugreport.slug(clause))
