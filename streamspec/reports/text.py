"""Plain words for reports: history records, program steps, and where in the implementation.

Everything here reads what a run recorded (its history, its program, the stacks captured while it
ran); nothing is written by hand per implementation.
"""

from __future__ import annotations

import importlib
import linecache
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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

# -- where in the implementation ----------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    """One frame of the implementation: a path to show (relative to its package's parent, never a
    machine path), the line, the function, and the real file (to read the source line)."""

    path: str
    line: int
    function: str
    filename: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def source(self) -> str:
        return linecache.getline(self.filename, self.line).strip()

    def snippet(self, context: int = 2) -> str:
        """The source around the line, numbered, the line itself marked with ``>``."""
        lines = []
        for n in range(max(1, self.line - context), self.line + context + 1):
            text = linecache.getline(self.filename, n)
            if not text and n > self.line:
                break
            mark = ">" if n == self.line else " "
            lines.append(f"{n:>4} {mark} {text.rstrip()}")
        return "\n".join(lines)


class Implementation:
    """Which files belong to the implementation under test (its Django apps' packages)."""

    def __init__(self, installed_apps: Iterable[str]) -> None:
        self.roots: list[tuple[str, str]] = []  # (package dir + sep, dir its display path is relative to)
        for app in installed_apps:
            try:
                module = importlib.import_module(app)
            except ImportError:
                continue
            files = getattr(module, "__path__", None) or [
                os.path.dirname(getattr(module, "__file__", "") or "")
            ]
            top = importlib.import_module(app.split(".")[0])
            top_dirs = list(getattr(top, "__path__", [])) or [os.path.dirname(top.__file__ or "")]
            base = os.path.dirname(os.path.realpath(top_dirs[0]))
            for path in files:
                if path:
                    self.roots.append((os.path.realpath(path) + os.sep, base))

    @classmethod
    def of(cls, adapter: Any) -> Implementation:
        return cls(getattr(adapter, "installed_apps", ()))

    def owns(self, filename: str) -> tuple[str, str] | None:
        real = os.path.realpath(filename)
        for root, base in self.roots:
            if real.startswith(root):
                return root, base
        return None

    def locations(self, stack: Sequence[tuple[str, int, str]] | None) -> list[Location]:
        """The implementation's frames of a captured stack, innermost first."""
        out: list[Location] = []
        for filename, line, function in reversed(tuple(stack or ())):
            owner = self.owns(filename)
            if owner is None or "/migrations/" in filename.replace("\\", "/"):
                continue
            rel = os.path.relpath(os.path.realpath(filename), owner[1]).replace(os.sep, "/")
            out.append(Location(rel, line, function, filename))
        return out


# -- history records ----------------------------------------------------------------------------


FINISH_PROSE = {
    "complete": "send `complete` and return",
    "value": "return a value without sending a terminal event",
    "none": "return None without sending a terminal event",
    "mark_completed": "call `mark_completed()` itself and return a value, without a terminal event",
}
FAIL_PROSE = {
    "exception": "raise",
    "cancelled": "raise an `asyncio.CancelledError` of its own (nothing cancelled it)",
    "base_exception": "raise a `BaseException` that is not an `Exception`",
}


def _finish_way(how: Any) -> str:
    return "" if how is None else f" ({how.replace('_', ' ')})"


def _spelled(spelling: Any) -> str:
    return "" if not spelling else " as the URL /" + "/".join(str(part) for part in spelling)


def describe_record(r: Record, history: History | None = None) -> str:
    """One record in plain words (its number and process are shown separately)."""
    if isinstance(r, Invoke):
        what = {
            "create": "create a task row",
            "start": f"start {r.task} through {r.args.get('via', 'the coordinator')}",
            "lookup": f"look {r.task} up through the coordinator" + _spelled(r.args.get("spelling")),
            "reload": f"load {r.task}'s row from the database again",
            "attach": f"attach client {r.args.get('client')} to {r.task} through {r.args.get('via')}",
            "detach": f"detach client {r.args.get('client')}",
            "stall": f"client {r.args.get('client')} stops reading (it stays connected)",
            "release": (f"let {r.task} send its next {r.args['count']} events" if r.args.get("count")
                        else f"let {r.task} send its next event"),
            "finish_ok": f"let {r.task} complete" + _finish_way(r.args.get("how")),
            "finish_fail": f"make {r.task}'s process() raise" + _finish_way(r.args.get("how")),
            "crash": f"crash process {r.args.get('process')}",
            "shutdown": f"shut process {r.args.get('process')} down gracefully (SIGTERM)",
            "wait": f"let {r.args.get('seconds')} s of quiet pass",
            "restart": f"start process {r.args.get('process')} in place of {r.args.get('replaces')}",
        }.get(r.op, r.op)
        if r.op in ("finish_ok",) and r.args.get("teardown"):
            what += " (end of the scenario)"
        return f"{r.op_id} begins: {what}"
    if isinstance(r, Complete):
        op = history.op(r.op_id).op if history is not None else "operation"
        if r.status == "fail":
            return f"{r.op_id} ({op}) failed: {r.error}"
        if r.status == "unknown":
            return f"{r.op_id} ({op}) never returned: its process crashed"
        if op in ("create", "lookup", "reload"):
            return f"{r.op_id} ({op}) returned {r.value or 'nothing'}"
        return f"{r.op_id} ({op}) returned"
    if isinstance(r, ProcessEnter):
        return f"process() of {r.task} entered on {r.obj}"
    if isinstance(r, ProcessExit):
        how = {"ok": "returned", "error": "raised", "crashed": "died with its process",
               "cancelled": "was cancelled from outside"}[r.outcome]
        return f"process() of {r.task} on {r.obj} {how}"
    if isinstance(r, Send):
        return f"{r.task} sends event {r.seq} ({r.event_type})"
    if isinstance(r, Deliver):
        number = f"event {r.seq}" if r.seq is not None else "an event the implementation made up"
        return f"client {r.client} receives {number} ({r.event_type}) of {r.task}"
    if isinstance(r, StreamEnd):
        why = {
            "terminal": "after the terminal event",
            "detached": "it detached",
            "overflow": "dropped with an overflow notice",
            "crashed": "its process crashed",
            "shutdown": "its process shut down (it reconnects as a new client)",
            "closed": "closed by the server without a terminal event",
        }[r.reason]
        return f"client {r.client}'s stream ends: {why}"
    if isinstance(r, Fault):
        if r.fault == "crash":
            return f"process {r.process} crashes"
        if r.fault == "shutdown":
            return f"process {r.process} begins a graceful shutdown: its coroutines are cancelled"
        return f"process {r.process} starts over the same database (replaces {r.replaces})"
    if isinstance(r, Snapshot):
        held = ", ".join(f"{k}={v}" for k, v in sorted(r.resources.items()) if v) or "nothing held"
        rows = ", ".join(
            f"{t}: {p.status}"
            + (f" (error {p.error})" if p.error else "")
            + (f", last event {p.last_event_seq}" if p.last_event_seq is not None else "")
            for t, p in sorted(r.persisted.items())
        )
        return f"snapshot of {r.process}: {held}" + (f"; stored rows {rows}" if rows else "")
    if isinstance(r, RunEnd):
        waiting = f" (still waiting: {', '.join(r.waiting)})" if r.waiting else ""
        return {
            "done": "the run ends",
            "bound": "the run is cut short by its step bound",
            "hang": "the run hangs",
        }[r.reason] + waiting
    kind = getattr(r, "kind", "record")
    fields = {k: v for k, v in r.to_dict().items() if k not in ("index", "time", "process", "kind")}
    return f"{kind} " + ", ".join(f"{k}={v}" for k, v in fields.items())


# -- programs -----------------------------------------------------------------------------------


def program_steps(program: list[dict[str, Any]]) -> list[str]:
    """The program as numbered prose. Entities are named by the slot the program gives them, 1-based
    like the history's tokens (task T1, object obj1, client c1; processes p0, p1...): the generated
    reproduction script uses the same names for its variables. (The history names *distinct*
    Python objects, so a lookup that correctly returned the running object obj1 fills slot obj2
    there but is still called obj1 in the history.)"""
    counters = {"task": 0, "obj": 0, "client": 0}
    task_of_obj: dict[int, int] = {}
    procs = ["p0"]
    lines: list[str] = []

    def proc(step: dict[str, Any]) -> str:
        i = step.get("process", 0)
        return procs[i] if 0 <= i < len(procs) else f"process #{i}"

    def task_of(obj: int) -> str:
        return f"T{task_of_obj[obj] + 1}" if obj in task_of_obj else "its task"

    def one(step: dict[str, Any]) -> str:
        op = step["op"]
        if op == "create":
            counters["obj"] += 1
            counters["task"] += 1
            task_of_obj[counters["obj"] - 1] = counters["task"] - 1
            return f"create task row T{counters['task']} in {proc(step)}: object obj{counters['obj']}"
        if op == "start":
            return (
                f"start {task_of(step['obj'])} through obj{step['obj'] + 1} with {proc(step)}'s coordinator"
            )
        if op == "lookup":
            counters["obj"] += 1
            task_of_obj[counters["obj"] - 1] = step["task"]
            spelled = " (the URL spelling the row another way it accepts)" if step.get("spelling") else ""
            return (
                f"look T{step['task'] + 1} up with {proc(step)}'s coordinator, as a new client's "
                f"request does{spelled}: object obj{counters['obj']}"
            )
        if op == "reload":
            counters["obj"] += 1
            task_of_obj[counters["obj"] - 1] = step["task"]
            return (
                f"load T{step['task'] + 1}'s row from the database again in {proc(step)}: "
                f"object obj{counters['obj']}"
            )
        if op == "attach":
            counters["client"] += 1
            return f"attach client c{counters['client']} through obj{step['obj'] + 1} in {proc(step)}"
        if op == "detach":
            return f"detach client c{step['client'] + 1}"
        if op == "stall":
            return f"client c{step['client'] + 1} stops reading (stays connected; reads again at the end)"
        if op == "release":
            if step.get("count", 1) > 1:
                return f"let T{step['task'] + 1} send its next {step['count']} events at once"
            return f"let T{step['task'] + 1} send its next event"
        if op == "finish_ok":
            return f"let T{step['task'] + 1} " + FINISH_PROSE[step.get("how", "complete")]
        if op == "finish_fail":
            return f"make T{step['task'] + 1}'s process() " + FAIL_PROSE[step.get("how", "exception")]
        if op == "crash":
            return f"crash {proc(step)} (like kill -9: nothing of it runs again)"
        if op == "shutdown":
            return (f"shut {proc(step)} down gracefully (SIGTERM: its coroutines are cancelled and may "
                    "clean up for a few seconds; then it is gone)")
        if op == "wait":
            return f"let {step['seconds']:g} seconds of quiet pass (leases run out, heartbeats fire)"
        if op == "restart":
            old = proc(step)
            procs.append(f"p{len(procs)}")
            return f"crash {old} and start {procs[-1]} over the same database"
        if op == "spawn":
            procs.append(f"p{len(procs)}")
            return f"start another process, {procs[-1]}, over the same database"
        return op

    for n, step in enumerate(program, 1):
        if step["op"] == "concurrently":
            parts = [one(s) for s in step["steps"]]
            lines.append(
                f"{n}. At the same time (the interleaving is part of the reproduction):\n"
                + "\n".join(f"   - {p};" for p in parts)
            )
        else:
            text = one(step)
            lines.append(f"{n}. {text[0].upper()}{text[1:]}.")
    return lines
