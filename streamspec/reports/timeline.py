"""An HTML timeline of one run: a lane per task and per client, a row per record.

What each client saw (joins, events received, the end of its stream), what each task did (runs,
events sent), and the operations, reloads, crashes and restarts around them, in the order they
happened; the records a violation cites are highlighted and linked from the top. Self-contained:
one file, inline CSS, no script.
"""

from __future__ import annotations

from html import escape
from typing import Any

from harness.history import (
    Complete,
    Deliver,
    Fault,
    History,
    Invoke,
    ProcessEnter,
    ProcessExit,
    Record,
    RunEnd,
    Send,
    Snapshot,
    StreamEnd,
)
from streamspec.reports.text import describe_record

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
table.timeline { border-collapse: collapse; font-size: 12.5px; }
table.timeline th, table.timeline td { border: 1px solid #ddd; padding: 3px 6px; vertical-align: top; }
table.timeline th { background: #f4f4f4; position: sticky; top: 0; }
td.n, td.t, td.p { color: #777; white-space: nowrap; font-family: ui-monospace, monospace; }
tr.evidence td { background: #fff3cd; } tr.evidence td.n { font-weight: bold; color: #a15c00; }
.join { color: #0b5394; font-weight: 600; } .event { color: #38761d; }
.end { color: #666; font-style: italic; }
.bad { color: #b00020; font-weight: 600; } .run { color: #674ea7; font-weight: 600; }
.op { color: #444; } .fault { color: #b00020; font-weight: 700; } .lane-empty { background: #fcfcfc; }
ul.violations li { margin: .3em 0; } code { background: #f4f4f4; padding: 0 3px; }
"""


def _lanes(history: History) -> tuple[list[str], list[tuple[str, str]]]:
    tasks = history.tasks()
    clients = [(a.client, a.task) for a in history.attachments()]
    known = {c for c, _ in clients}
    for op in history.ops("attach"):  # failed attaches still get a lane
        client = op.args.get("client")
        if client and client not in known:
            clients.append((client, op.task or "?"))
            known.add(client)
    return tasks, clients


def _cells(r: Record, history: History, tasks: list[str], clients: list[tuple[str, str]]) -> tuple[str, dict]:
    """(text for the operations column, {lane: html}) for one record."""
    lane: dict[str, str] = {}
    ops = ""
    if isinstance(r, Invoke):
        if r.op == "attach":
            lane["c:" + str(r.args.get("client"))] = (
                f'<span class="join">attach begins</span> to {escape(str(r.task))} through '
                f"{escape(str(r.args.get('via')))} ({escape(r.process)})"
            )
        elif r.op == "detach":
            lane["c:" + str(r.args.get("client"))] = '<span class="end">detach begins</span>'
        elif r.op == "stall":
            lane["c:" + str(r.args.get("client"))] = '<span class="end">stops reading</span>'
        elif r.op in ("crash", "shutdown", "restart"):
            ops = f'<span class="fault">{escape(describe_record(r, history))}</span>'
        else:
            ops = f'<span class="op">{escape(describe_record(r, history))}</span>'
            if r.op in ("release", "finish_ok", "finish_fail") and r.task:
                lane["t:" + r.task] = f'<span class="op">{escape(r.op)}</span>'
    elif isinstance(r, Complete):
        op = history.op(r.op_id)
        if op.op == "attach":
            status = "joined" if r.status == "ok" else f"attach {r.status}"
            lane["c:" + str(op.args.get("client"))] = f'<span class="join">{escape(status)}</span>'
        elif op.op not in ("release", "finish_ok", "finish_fail", "crash", "shutdown", "restart", "wait"):
            css = "bad" if r.status != "ok" else "op"
            ops = f'<span class="{css}">{escape(describe_record(r, history))}</span>'
    elif isinstance(r, ProcessEnter):
        lane["t:" + r.task] = (
            f'<span class="run">process() entered on {escape(r.obj)} ({escape(r.process)})</span>'
        )
    elif isinstance(r, ProcessExit):
        css = "run" if r.outcome == "ok" else "bad"
        lane["t:" + r.task] = f'<span class="{css}">process() on {escape(r.obj)}: {escape(r.outcome)}</span>'
    elif isinstance(r, Send):
        lane["t:" + r.task] = f'<span class="event">sends {r.seq} ({escape(r.event_type)})</span>'
    elif isinstance(r, Deliver):
        what = f"{r.seq}" if r.seq is not None else "synthesized"
        lane["c:" + r.client] = f'<span class="event">receives {escape(what)} ({escape(r.event_type)})</span>'
    elif isinstance(r, StreamEnd):
        css = "end" if r.reason in ("terminal", "detached") else "bad"
        lane["c:" + r.client] = f'<span class="{css}">stream ends: {escape(r.reason)}</span>'
    elif isinstance(r, Fault | Snapshot | RunEnd):
        css = "fault" if isinstance(r, Fault) else "op"
        ops = f'<span class="{css}">{escape(describe_record(r, history))}</span>'
    elif getattr(r, "kind", "") == "sent":
        lane["t:" + getattr(r, "task", "?")] = (
            f'<span class="end">send {getattr(r, "seq", "?")} returned</span>'
        )
    else:
        ops = escape(describe_record(r, history))
    return ops, lane


def render(history: History, *, title: str, violations: list[Any] | None = None, note: str = "") -> str:
    """The timeline page of `history`; `violations` (with ``explanation`` and ``evidence``) are
    listed on top and their records highlighted."""
    violations = violations or []
    evidence = {i for v in violations for i in v.evidence}
    tasks, clients = _lanes(history)
    head = ["#", "time", "process", "operations, faults, snapshots"]
    head += [f"task {t}" for t in tasks]
    head += [f"client {c} ({t})" for c, t in clients]
    rows = []
    for r in history:
        ops, lane = _cells(r, history, tasks, clients)
        css = ' class="evidence"' if r.index in evidence else ""
        cells = [
            f'<td class="n"><a id="r{r.index}"></a>#{r.index}</td>',
            f'<td class="t">{r.time:g}s</td>',
            f'<td class="p">{escape(r.process)}</td>',
            f"<td>{ops}</td>",
        ]
        cells += [f"<td>{lane.get('t:' + t, '')}</td>" for t in tasks]
        cells += [f"<td>{lane.get('c:' + c, '')}</td>" for c, _ in clients]
        rows.append(f"<tr{css}>" + "".join(cells) + "</tr>")
    items = []
    for v in violations:
        links = ", ".join(f'<a href="#r{i}">#{i}</a>' for i in v.evidence)
        items.append(f"<li>{escape(v.explanation)} <small>(records {links})</small></li>")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
    ]
    if note:
        parts.append(f"<p>{escape(note)}</p>")
    if items:
        parts += ["<h2>Violations</h2>", '<ul class="violations">', *items, "</ul>"]
    parts += [
        "<h2>Timeline</h2>",
        "<p>One row per recorded event, in the order it happened (virtual time). Each client has a lane: "
        "when it joined, every event it received, how its stream ended. Highlighted rows are the evidence "
        "of a violation.</p>",
        '<table class="timeline"><thead><tr>'
        + "".join(f"<th>{escape(h)}</th>" for h in head)
        + "</tr></thead><tbody>",
        *rows,
        "</tbody></table>",
        "</body></html>",
        "",
    ]
    return "\n".join(parts)
