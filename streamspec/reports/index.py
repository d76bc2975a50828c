"""`reports/index.html`: every clause against every implementation verified, like Autobahn|Testsuite.

It reads the ``summary.json`` of each report folder under the reports root (one folder per
implementation: ``reports/reference/``, ``reports/upstream/``, a mutant's...), so running
`streamspec verify` for another implementation adds a column; `streamspec index` rebuilds it.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from harness import spec
from streamspec.reports.summary import FORMAT, verdict_label

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; } th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: center; }
th.clause, td.clause { text-align: left; } thead th { background: #f4f4f4; vertical-align: bottom; }
td.pass { background: #d9ead3; } td.fail-must { background: #f4cccc; font-weight: 700; }
td.fail-should { background: #fce5cd; font-weight: 600; } td.unknown { background: #fff2cc; }
td.skipped { background: #eee; color: #777; } small { color: #666; } a { color: inherit; }
tr.verdict td { font-weight: 700; }
"""


def load_summaries(root: Path) -> list[tuple[str, dict[str, Any]]]:
    """(folder name, summary) of every report folder under `root`, in folder order; unreadable
    or foreign files are skipped."""
    found = []
    for path in sorted(root.glob("*/summary.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("format") == FORMAT:
            found.append((path.parent.name, data))
    # The reference first, then the others by name: the column a reader compares against.
    return sorted(found, key=lambda item: (item[1].get("adapter") != "reference", item[0]))


def _cell(folder: str, row: dict[str, Any] | None) -> str:
    if row is None:
        return '<td class="skipped">—</td>'
    verdict = row["verdict"]
    css = {"pass": "pass", "unknown": "unknown", "skipped": "skipped"}.get(
        verdict, "fail-must" if row["level"] == "MUST" else "fail-should"
    )
    files = row.get("files") or {}
    label = escape(verdict_label(row))
    if files.get("report"):
        label = f'<a href="{escape(folder)}/{escape(files["report"])}">{label}</a>'
    detail = f"<br><small>{row['examples']} examples</small>" if row.get("examples") is not None else ""
    return f'<td class="{css}" title="{escape(row.get("violation") or "")}">{label}{detail}</td>'


def render(summaries: list[tuple[str, dict[str, Any]]]) -> str:
    head = ['<th class="clause">clause</th>', "<th>level</th>", "<th>severity</th>"]
    for folder, s in summaries:
        v = s["versions"]
        head.append(
            f'<th><a href="{escape(folder)}/summary.md">{escape(s.get("adapter", folder))}</a><br>'
            f"<small>{escape(v['implementation'])} {escape(v['implementation_version'])}<br>"
            f"Django {escape(v['django'])}, Python {escape(v['python'])}<br>"
            f"{escape(s['profile'])}, seed {s['seed']}</small></th>"
        )
    body = []
    for clause in spec.CLAUSES:
        cells = [
            f'<td class="clause"><b>{clause.id}</b> {escape(clause.title)}</td>',
            f"<td>{clause.level}</td>",
            f"<td>{clause.severity}</td>",
        ]
        for folder, s in summaries:
            row = next((r for r in s["clauses"] if r["clause"] == clause.id), None)
            cells.append(_cell(folder, row))
        body.append("<tr>" + "".join(cells) + "</tr>")
    verdicts = ['<td class="clause" colspan="3">conforms (every MUST holds)</td>']
    for _, s in summaries:
        ok = not any(r["verdict"] == "fail" and r["level"] == "MUST" for r in s["clauses"])
        verdicts.append(f'<td class="{"pass" if ok else "fail-must"}">{"yes" if ok else "no"}</td>')
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>streamspec: conformance matrix</title><style>{CSS}</style></head><body>",
            "<h1>streamspec conformance matrix</h1>",
            "<p>Every clause of the specification against every implementation verified into this folder. "
            "A failed cell links to its bug report; a column header to the implementation's summary.</p>",
            "<table><thead><tr>" + "".join(head) + "</tr></thead><tbody>",
            *body,
            '<tr class="verdict">' + "".join(verdicts) + "</tr>",
            "</tbody></table>",
            "</body></html>",
            "",
        ]
    )


def write_index(root: Path) -> Path:
    """Rebuild ``index.html`` in `root` from the summaries found there."""
    path = root / "index.html"
    tmp = root / ".index.html.tmp"
    tmp.write_text(render(load_summaries(root)), encoding="utf-8")
    tmp.replace(path)
    return path
