"""A bug report per violated clause, in the structure of the seed's issue #1 (``S1-<slug>.md``).

Every statement comes from the failing run: the violations and their evidence records from the
checker, the file:line locations from the call stacks captured while it ran
(`harness.runner.RunStacks`), the steps from the shrunk program, the expected and actual lines from
the standalone reproduction's own output; the requirement, impact and fix come from `harness.spec`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from harness import spec
from harness.history import Complete, Deliver, History, Invoke, ProcessEnter, Send
from streamspec.reports.text import Implementation, Location, describe_record, program_steps

SEVERITY_MARK = {"critical": "CRITICAL ❌", "high": "HIGH ❌", "medium": "MEDIUM ⚠️", "low": "LOW"}
MAX_EVIDENCE = 14


def slug(clause_id: str) -> str:
    """``S1-identity``, ``S7.2-replay-after-restart``: the stem of a clause's report files."""
    title = spec.clause(clause_id).title.lower()
    return f"{clause_id}-" + re.sub(r"[^a-z0-9]+", "-", title).strip("-")


@dataclass
class Component:
    location: Location
    role: str


def affected_components(
    history: History, stacks: Any, clause_id: str, violations: Iterable[Any], impl: Implementation
) -> list[Component]:
    """The implementation's file:line locations involved in the violations, from captured stacks:
    where the objects the evidence names were created, where the runs it names were started and
    run, where the clients it names were registered and fed."""
    out: list[Component] = []
    seen: set[tuple[str, int]] = set()
    if stacks is None:
        return out

    def add(stack: Any, role: str, callers: int = 1) -> None:
        locations = impl.locations(stack)
        for n, loc in enumerate(locations[: 1 + callers]):
            key = (loc.path, loc.line)
            if key in seen:
                continue
            seen.add(key)
            out.append(Component(loc, role if n == 0 else f"calls `{locations[n - 1].function}` ({role})"))

    evidence = sorted({i for v in violations for i in v.evidence if 0 <= i < len(history)})
    objects: dict[str, str] = {}
    runs: list[ProcessEnter] = []
    clients: dict[str, str] = {}
    for i in evidence:
        r = history[i]
        if isinstance(r, Complete) and isinstance(r.value, str) and r.value.startswith("obj"):
            op = history.op(r.op_id)
            objects.setdefault(r.value, f"created {r.value}, the object {op.op} {op.op_id} returned")
        elif isinstance(r, Invoke) and r.op == "lookup":
            done = history.op(r.op_id)
            if done.value:
                objects.setdefault(done.value, f"created {done.value}, the object {r.op} {r.op_id} returned")
        elif isinstance(r, ProcessEnter):
            runs.append(r)
        if isinstance(r, Invoke | Complete):
            op = history.op(r.op_id)
            if op.op == "attach":
                client, via = op.args.get("client"), op.args.get("via")
                clients.setdefault(client, f"registers client {client}")
                if via:
                    objects.setdefault(via, f"created {via}, the object client {client} was attached through")
        if isinstance(r, Deliver):
            clients.setdefault(r.client, f"delivers to client {r.client}")
        if isinstance(r, Send):
            for run in history.runs(r.task):
                if run.active_at(r.index):
                    objects.setdefault(
                        run.obj,
                        f"created {run.obj}, the object whose process() sent event {r.seq} of {r.task}",
                    )
    for attachment in history.attachments():
        if any(attachment.op.start <= i <= (attachment.op.end or attachment.op.start) for i in evidence):
            clients.setdefault(attachment.client, f"registers client {attachment.client}")
    for obj, role in objects.items():
        add(stacks.objects.get(obj), role)
    for enter in runs:
        add(stacks.spawned.get(enter.index), f"starts the run of process() of {enter.task} on {enter.obj}")
        add(stacks.runs.get(enter.index), f"runs process() of {enter.task} on {enter.obj}", callers=0)
    for client in clients:
        places = 0
        for stack in stacks.clients.get(client, ()):
            if places == 2:  # the first places that took the queue: where it was registered and fed
                break
            before = len(out)
            add(stack, f"takes client {client}'s queue (registers it, or puts an event into it)", callers=0)
            places += len(out) > before
    if not out:  # nothing named directly (e.g. resources left over): every object and run of the run
        for obj, stack in stacks.objects.items():
            origin = history.origin(obj)
            add(stack, f"created {obj}" + (f" ({origin.op} {origin.op_id})" if origin else ""), callers=0)
        for enter in history.of_kind(ProcessEnter):
            add(stacks.spawned.get(enter.index), f"starts the run of {enter.task} on {enter.obj}", callers=0)
    return out


def _evidence_lines(history: History, stacks: Any, violation: Any, impl: Implementation) -> list[str]:
    lines = []
    for i in list(violation.evidence)[:MAX_EVIDENCE]:
        if not 0 <= i < len(history):
            continue
        r = history[i]
        where = ""
        if stacks is not None:
            if isinstance(r, Complete) and isinstance(r.value, str) and r.value in stacks.objects:
                locs = impl.locations(stacks.objects[r.value])
                if locs and history.origin(r.value) is not None and history.origin(r.value).op_id == r.op_id:
                    where = (
                        f" — {r.value} was created inside this operation, at `{locs[0]}` "
                        f"in `{locs[0].function}`"
                    )
            elif isinstance(r, ProcessEnter):
                locs = impl.locations(stacks.spawned.get(r.index))
                if locs:
                    where = f" — its asyncio task was created at `{locs[0]}` in `{locs[0].function}`"
        lines.append(f"- `#{r.index}` ({r.process}, t={r.time:g}s): {describe_record(r, history)}{where}")
    return lines


def _facts(history: History, clause_id: str, violations: list[Any]) -> list[str]:
    """A few plain inferences read off the history (who made the objects the evidence names)."""
    facts: list[str] = []
    named: dict[str, None] = {}
    for v in violations:
        for i in v.evidence:
            r = history[i] if 0 <= i < len(history) else None
            if isinstance(r, Complete) and isinstance(r.value, str) and r.value.startswith("obj"):
                named[r.value] = None
            if isinstance(r, Invoke | Complete) and history.op(r.op_id).op == "attach":
                via = history.op(r.op_id).args.get("via")
                if via:
                    named[via] = None
    running = {run.obj for run in history.runs()}
    for obj in named:
        origin = history.origin(obj)
        if origin is None:
            continue
        if origin.op == "lookup":
            state = "" if obj in running else " and never ran process() itself"
            facts.append(
                f"{obj} is a fresh load of the row that the coordinator's lookup {origin.op_id} made and "
                f"returned{state}; objects running the task: {', '.join(sorted(running)) or 'none'}."
            )
        elif origin.op == "reload":
            facts.append(
                f"{obj} is a second Python object of the same row (reload {origin.op_id}); the task's "
                f"runtime state reaches it only if the implementation keeps that state outside "
                f"the object."
            )
    sends = history.of_kind(Send)
    if sends and clause_id in ("S2", "S3", "S5"):
        by = sorted({s.task for s in sends})
        facts.append(f"Events sent in the run: {len(sends)} (tasks {', '.join(by)}).")
    return facts


def render(
    *,
    failure: Any,
    outcome: Any,
    adapter: Any,
    versions: dict[str, str],
    sut: str,
    files: dict[str, str],
    repro: Any | None,
    related: list[str],
) -> str:
    """The markdown bug report for one violated clause."""
    c = spec.clause(failure.clause)
    impl = Implementation.of(adapter)
    history: History = outcome.history
    result = outcome.result(c.id)
    violations = list(result.violations)
    first = violations[0].explanation if violations else "the clause failed"
    name = f"{versions['implementation']} {versions['implementation_version']}"
    components = affected_components(history, outcome.stacks, c.id, violations, impl)
    lines = [
        f"# {c.id} {c.title} violated in {name}: {first}",
        "",
        f"*Written by streamspec {versions['streamspec']} from a failing run it found and shrank "
        f"(family `{failure.family}`, seed {failure.seed}, Django {versions['django']}, "
        f"Python {versions['python']}). Record numbers (`#12`) refer to the recorded history in "
        f"[`{files['failure']}`]({files['failure']}) and the [timeline]({files['timeline']}).*",
        "",
        "## Severity",
        f"**{SEVERITY_MARK.get(str(c.severity), str(c.severity).upper())}** — {c.level} clause {c.id} "
        + (
            "(an implementation that violates it does not conform)"
            if c.level == spec.Level.MUST
            else "(a SHOULD: reported as a failure, it does not make `streamspec verify` fail "
            "without `--strict`)"
        ),
        "",
        "## Affected Components",
    ]
    if components:
        lines += [f"- `{comp.location}` in `{comp.location.function}` — {comp.role}" for comp in components]
        lines += [
            "",
            "These locations come from call stacks captured while the failing run ran, filtered to "
            f"{versions['implementation']}'s own files.",
        ]
    else:
        lines.append(
            "- No frame of the implementation was on the stacks captured for this violation's evidence "
            "(see the Root Cause Analysis for the records)."
        )
    lines += [
        "",
        "## Description",
        "",
        f"{c.id} requires: {c.requirement}",
        "",
        f"In a run of {name}, this did not hold:",
        "",
        *(f"- {v.explanation}" for v in violations[:5]),
        *([f"- … and {len(violations) - 5} more"] if len(violations) > 5 else []),
        "",
        f"{c.rationale}",
        "",
        "## How to Reproduce",
        "",
        "### Steps",
        "",
        f"The shortest failing scenario streamspec found ({len(failure.program)} steps); the order in which "
        "concurrent steps, coroutines and database calls interleave is part of it:",
        "",
        *program_steps(list(failure.program)),
        "",
        "### Standalone script",
        "",
    ]
    if repro is not None and repro.reproduced:
        lines += [
            f"[`{files['repro']}`]({files['repro']}) needs only Django and {versions['implementation']} "
            "(no streamspec). It configures Django on a throw-away SQLite database, defines its own task "
            "model, and runs the steps on a small controlled event loop, trying the recorded interleaving "
            "first:",
            "",
            "```bash",
            f"python {files['repro']}",
            "```",
            "",
            "Its output (exit status 1 while the bug is there, 0 once it is fixed):",
            "",
            "```",
            repro.output.rstrip(),
            "```",
            "",
            "<details><summary>The script</summary>",
            "",
            "```python",
            repro.path.read_text(encoding="utf-8").rstrip(),
            "```",
            "",
            "</details>",
        ]
    else:
        note = repro.note if repro is not None else "no standalone script was generated for this run"
        lines += [f"No standalone reproduction: {note}. Replay the recorded run instead (below)."]
        if repro is not None and repro.path.exists():
            lines += ["", f"The attempted script is [`{files.get('repro')}`]({files.get('repro')})."]
    lines += [
        "",
        "### Replay the recorded run",
        "",
        "```bash",
        f"streamspec replay {files['failure']}",
        "```",
        "",
        "reruns exactly this run (the program and its choice tape) against the implementation and says "
        "whether the violation is still there.",
        "",
        "## Requirement / Expected / Actual",
        "",
        f"**Requirement ({c.id}, {c.level}).** {c.requirement}",
        "",
    ]
    expected = _repro_lines(repro, "expected:")
    actual_lines = _repro_lines(repro, "actual:")
    lines.append("**Expected.** " + ("; ".join(dict.fromkeys(expected)) if expected else c.requirement))
    lines.append("")
    lines.append(
        "**Actual.** "
        + "; ".join(v.explanation for v in violations[:5])
        + (f" (the standalone script: {'; '.join(dict.fromkeys(actual_lines))})" if actual_lines else "")
    )
    lines += ["", "## Root Cause Analysis", ""]
    for n, v in enumerate(violations[:3], 1):
        lines += [f"**Violation {n}.** {v.explanation}", "", "Evidence, in the order it happened:", ""]
        lines += _evidence_lines(history, outcome.stacks, v, impl)
        lines.append("")
    facts = _facts(history, c.id, violations)
    if facts:
        lines += ["What the history shows:", "", *(f"- {f}" for f in facts), ""]
    snippets = [comp for comp in components if comp.location.source][:3]
    if snippets:
        lines += ["Where in the code:", ""]
        for comp in snippets:
            lines += [
                f"`{comp.location}` in `{comp.location.function}` ({comp.role}):",
                "",
                "```python",
                comp.location.snippet(),
                "```",
                "",
            ]
    lines += [
        "## Impact",
        "",
        f"{c.rationale} Severity {c.severity}: "
        + {
            "critical": "clients silently lose the stream or tasks run twice.",
            "high": "clients miss results or wait forever.",
            "medium": "resources or state degrade over time.",
            "low": "a minor deviation.",
        }.get(str(c.severity), ""),
        "",
    ]
    if related:
        lines += ["The same run also violates " + ", ".join(related) + ".", ""]
    lines += [
        "## Suggested Fix",
        "",
        c.fix_hint,
    ]
    if components:
        lines += ["", f"Start at `{components[0].location}` in `{components[0].location.function}`."]
    lines += ["", "## Related clauses", ""]
    for other in related:
        oc = spec.clause(other)
        lines.append(f"- {oc.id} {oc.title} ({oc.level}): violated in the same run — {oc.violation}")
    overlaps = _overlaps(c.id)
    lines += [f"- {line}" for line in overlaps]
    if not related and not overlaps:
        lines.append("- none")
    lines += ["", f"See SPEC.md, section {c.id}, for how the clause is judged: {c.judging}", ""]
    return "\n".join(lines)


def _repro_lines(repro: Any | None, prefix: str) -> list[str]:
    if repro is None or not repro.reproduced:
        return []
    return [line[len(prefix) :].strip() for line in repro.output.splitlines() if line.startswith(prefix)]


def _overlaps(clause_id: str) -> list[str]:
    """The lines of SPEC.md's "Where clauses overlap" that name this clause."""
    from harness.spec import SPEC_MD

    try:
        text = SPEC_MD.read_text(encoding="utf-8")
    except OSError:
        return []
    section = text.split("## Where clauses overlap", 1)[-1] if "## Where clauses overlap" in text else ""
    items = re.split(r"\n- ", section)[1:]
    out = []
    for item in items:
        flat = " ".join(item.split())
        if re.search(rf"\b{re.escape(clause_id)}\b(?!\.\d)", flat):
            out.append(flat)
    return out
