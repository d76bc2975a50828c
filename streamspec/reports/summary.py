"""The conformance summary of one verify run: `summary.json`, `summary.md`, `junit.xml`, the terminal.

The summary is a plain dict (the content of summary.json); everything else renders it, so the
index page, CI and people read the same numbers.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape, quoteattr

from harness import spec

FORMAT = "streamspec.summary"
VERSION = 1

VERDICT_WORDS = {"pass": "PASS", "fail": "FAIL", "unknown": "UNKNOWN", "skipped": "not run"}


def verdict_label(row: dict[str, Any]) -> str:
    """PASS, FAIL (MUST), FAIL (SHOULD), UNKNOWN, "not run": a SHOULD failure never reads as a pass."""
    word = VERDICT_WORDS.get(row["verdict"], row["verdict"].upper())
    return f"{word} ({row['level']})" if row["verdict"] == "fail" else word


def must_failures(summary: dict[str, Any]) -> list[str]:
    return [r["clause"] for r in summary["clauses"] if r["verdict"] == "fail" and r["level"] == "MUST"]


def should_failures(summary: dict[str, Any]) -> list[str]:
    return [r["clause"] for r in summary["clauses"] if r["verdict"] == "fail" and r["level"] == "SHOULD"]


# -- markdown -----------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(summary: dict[str, Any]) -> str:
    v = summary["versions"]
    lines = [
        f"# streamspec conformance: {v['implementation']} {v['implementation_version']}",
        "",
        f"Verified with streamspec {v['streamspec']} on Django {v['django']}, Python {v['python']} "
        f"(mode {summary['mode']}, profile {summary['profile']}, seed {summary['seed']}, "
        f"{summary['seconds']:.1f} s, {sum(summary['examples'].values())} examples). Rerun it with "
        f"`streamspec verify --sut {summary['adapter']} --profile {summary['profile']} "
        f"--seed {summary['seed']}`.",
        "",
        f"**{summary['conclusion']}**",
        "",
        "| Clause | Title | Level | Severity | Verdict | Examples | Report |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in summary["clauses"]:
        files = row.get("files") or {}
        report = " · ".join(
            f"[{label}]({files[key]})"
            for key, label in (
                ("report", "bug report"),
                ("repro", "repro"),
                ("timeline", "timeline"),
                ("failure", "replay"),
            )
            if files.get(key)
        )
        found = ""
        if row["verdict"] == "fail" and row.get("examples_to_first") is not None:
            found = f" (first after {row['examples_to_first']})"
        lines.append(
            f"| {row['clause']} | {_md_cell(row['title'])} | {row['level']} | {row['severity']} | "
            f"**{verdict_label(row)}** | {row['examples']}{found} | {report} |"
        )
    lines.append("")
    musts, shoulds = must_failures(summary), should_failures(summary)
    if musts:
        lines += ["## MUST failures", ""]
        lines += [
            f"- **{c}** {_row(summary, c)['title']}: {_row(summary, c).get('violation', '')}" for c in musts
        ]
        lines.append("")
    if shoulds:
        lines += [
            "## SHOULD failures",
            "",
            "These do not make the run fail unless `--strict` is given; they are still failures.",
            "",
        ]
        lines += [
            f"- **{c}** {_row(summary, c)['title']}: {_row(summary, c).get('violation', '')}" for c in shoulds
        ]
        lines.append("")
    unknown = [r for r in summary["clauses"] if r["verdict"] == "unknown"]
    if unknown:
        lines += ["## Not judged", ""]
        lines += [
            f"- {r['clause']} {r['title']}: {r.get('note') or 'no example could judge it'}" for r in unknown
        ]
        lines.append("")
    corpus = summary.get("corpus") or {}
    if corpus.get("entries"):
        lines += [
            "## Regression corpus",
            "",
            f"{len(corpus['entries'])} stored failures replayed first (`{corpus.get('folder')}`):",
            "",
        ]
        lines += [f"- `{e['file']}` ({e['clause']}): {e['status']}" for e in corpus["entries"]]
        lines.append("")
    if corpus.get("added"):
        lines += ["New corpus entries: " + ", ".join(f"`{f}`" for f in corpus["added"]), ""]
    baseline = summary.get("baseline")
    if baseline:
        lines += [
            "## Baseline",
            "",
            f"Expected failures from `{baseline['file']}`: "
            + (", ".join(baseline["expected"]) or "none")
            + ".",
            "",
        ]
        if baseline["new"]:
            lines.append("- **New failures** (not in the baseline): " + ", ".join(baseline["new"]))
        if baseline["stale"]:
            lines.append(
                "- **Stale entries** (expected to fail, now pass: remove them from the baseline): "
                + ", ".join(baseline["stale"])
            )
        if not baseline["new"] and not baseline["stale"]:
            lines.append("- Every failure is expected and every expected failure still fails.")
        lines.append("")
    lines += ["## Versions", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {val} |" for k, val in v.items()]
    lines.append("")
    return "\n".join(lines)


def _row(summary: dict[str, Any], clause: str) -> dict[str, Any]:
    return next(r for r in summary["clauses"] if r["clause"] == clause)


# -- terminal -----------------------------------------------------------------------------------


def to_terminal(summary: dict[str, Any], *, color: bool = False) -> str:
    """The table printed last by `streamspec verify`."""

    def paint(text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if color else text

    v = summary["versions"]
    head = (
        f"streamspec verify {summary['adapter']}: {v['implementation']} {v['implementation_version']}, "
        f"Django {v['django']}, Python {v['python']}"
    )
    sub = (
        f"profile {summary['profile']}, seed {summary['seed']}, mode {summary['mode']}, "
        f"{sum(summary['examples'].values())} examples in {summary['seconds']:.1f}s"
    )
    rows = [("clause", "level", "severity", "verdict", "examples", "title")]
    for r in summary["clauses"]:
        rows.append(
            (r["clause"], r["level"], r["severity"], verdict_label(r), str(r["examples"]), r["title"])
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["", head, sub, ""]
    for n, row in enumerate(rows):
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        if n == 0:
            lines.append("  ".join(cells).rstrip())
            continue
        verdict = summary["clauses"][n - 1]["verdict"]
        code = {"pass": "32", "fail": "31;1", "unknown": "33"}.get(verdict, "2")
        cells[3] = paint(cells[3], code)
        lines.append("  ".join(cells).rstrip())
    lines.append("")
    musts, shoulds = must_failures(summary), should_failures(summary)
    if musts:
        lines.append(paint("MUST failures: ", "31;1") + ", ".join(musts))
    if shoulds:
        extra = "" if summary.get("strict") else " (listed separately: they fail the run only with --strict)"
        lines.append(paint("SHOULD failures: ", "33") + ", ".join(shoulds) + extra)
    baseline = summary.get("baseline")
    if baseline:
        lines.append(
            f"baseline {baseline['file']}: new failures: {', '.join(baseline['new']) or 'none'}; "
            f"stale entries: {', '.join(baseline['stale']) or 'none'}"
        )
    corpus = summary.get("corpus") or {}
    if corpus.get("entries") or corpus.get("added"):
        still = sum(1 for e in corpus.get("entries", []) if e["status"].startswith("still fails"))
        lines.append(
            f"corpus {corpus.get('folder')}: {len(corpus.get('entries', []))} replayed, {still} still "
            f"failing, {len(corpus.get('added', []))} added"
        )
    for note in summary.get("notes", []):
        lines.append(f"note: {note}")
    if summary.get("folder"):
        reports = [r for r in summary["clauses"] if (r.get("files") or {}).get("report")]
        lines.append(
            f"reports: {summary['folder']}/ (summary.md, junit.xml"
            + (f", {len(reports)} bug report{'s' * (len(reports) != 1)}" if reports else "")
            + ")"
        )
        first = next((r for r in reports if r["level"] == "MUST"), reports[0] if reports else None)
        if first:
            lines.append(f"replay:  streamspec replay {summary['folder']}/{first['files']['failure']}")
            if first["files"].get("repro"):
                lines.append(f"repro:   python {summary['folder']}/{first['files']['repro']}")
    lines.append(paint(summary["conclusion"], "32;1" if summary["exit_code"] == 0 else "31;1"))
    return "\n".join(lines)


# -- junit --------------------------------------------------------------------------------------


def to_junit(summary: dict[str, Any]) -> str:
    """JUnit XML: one test case per clause; a SHOULD failure is a failure (type "SHOULD")."""
    rows = summary["clauses"]
    failures = sum(1 for r in rows if r["verdict"] == "fail")
    skipped = sum(1 for r in rows if r["verdict"] in ("unknown", "skipped"))
    suite = f"streamspec.{summary['sut']}"
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<testsuites name="streamspec" tests="{len(rows)}" failures="{failures}" errors="0" '
        f'skipped="{skipped}" time="{summary["seconds"]:.3f}">',
        f'  <testsuite name={quoteattr(suite)} tests="{len(rows)}" failures="{failures}" errors="0" '
        f'skipped="{skipped}" time="{summary["seconds"]:.3f}">',
        "    <properties>",
    ]
    for key, value in summary["versions"].items():
        out.append(f"      <property name={quoteattr(key)} value={quoteattr(str(value))}/>")
    for key in ("profile", "seed", "mode"):
        out.append(f"      <property name={quoteattr(key)} value={quoteattr(str(summary[key]))}/>")
    out.append("    </properties>")
    for r in rows:
        name = f"{r['clause']} {r['title']} ({r['level']}, {r['severity']})"
        out.append(f'    <testcase classname={quoteattr(suite)} name={quoteattr(name)} time="0">')
        if r["verdict"] == "fail":
            files = r.get("files") or {}
            body = "\n".join(
                [*(r.get("violations") or [r.get("violation", "")]), *(f"{k}: {v}" for k, v in files.items())]
            )
            out.append(
                f"      <failure type={quoteattr(r['level'])} "
                f"message={quoteattr(verdict_label(r) + ': ' + (r.get('violation') or ''))}>"
                f"{escape(body)}</failure>"
            )
        elif r["verdict"] in ("unknown", "skipped"):
            out.append(
                f"      <skipped message={quoteattr(verdict_label(r) + ': ' + (r.get('note') or ''))}/>"
            )
        out.append("    </testcase>")
    out += ["  </testsuite>", "</testsuites>", ""]
    return "\n".join(out)


def clause_row(clause_id: str) -> dict[str, Any]:
    """The fixed columns of a clause's row."""
    c = spec.clause(clause_id)
    return {"clause": c.id, "title": c.title, "level": str(c.level), "severity": str(c.severity)}
