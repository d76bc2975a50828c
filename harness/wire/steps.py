"""A wire program's steps as `WireRun` calls: performed by the search, written out as code by the
standalone reproduction scripts (`streamspec.wire_repro`), from the one table `CALLS`, so the two
cannot drift apart.

A program is a list of JSON steps; its first says how many servers run (``{"op": "servers",
"count": 2}``), every example has one task, created first (``task``), and a step's ``process`` names
a server and its ``client`` a client by position: see `scenarios.wire` for the vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.errors import UsageError

__all__ = ["CALLS", "HOSTILE_HEADERS", "call_of", "describe", "hostile_paths", "perform", "statements_of"]


def hostile_paths(app_label: str, model_name: str, pk: Any) -> list[tuple[str, str]]:
    """Malformed and hostile requests (method, path) for a server whose valid stream path is
    ``/stream/<app>/<model>/<pk>``: W4 wants a 4xx for each, never a 5xx, a 2xx or a hang."""
    base = f"/stream/{app_label}/{model_name}"
    return [
        ("GET", f"{base}/abc"),
        ("GET", f"{base}/-1"),
        ("GET", f"{base}/{10 ** 30}"),
        ("GET", f"{base}/999999999"),
        ("GET", f"/stream/no_such_app/{model_name}/{pk}"),
        ("GET", f"/stream/{app_label}/NoSuchModel/{pk}"),
        ("GET", f"/stream/contenttypes/ContentType/{pk}"),
        ("GET", f"/stream/{app_label}/{model_name}/{pk}/extra"),
        # Percent-encoded: a client normalises a literal ".." away before sending it.
        ("GET", f"/stream/{app_label}/%2e%2e/{app_label}/{model_name}/{pk}"),
        ("GET", f"{base}/{pk}%00"),
        ("POST", f"{base}/{pk}"),
        ("DELETE", f"{base}/{pk}"),
    ]


HOSTILE_HEADERS: list[dict[str, str]] = [
    {"Last-Event-ID": "abc"},
    {"Last-Event-ID": "-5"},
    {"Last-Event-ID": "9" * 40},
    {"Last-Event-ID": ""},
]
"""Bad headers sent with a valid stream request: refused with a 4xx, or ignored (the header is a
hint), never a 5xx nor a hang (W4)."""


def _request(step: dict[str, Any]) -> str:
    return f"await run.hostile_request({step['process']}, task, {step['which']})"


CALLS: dict[str, Callable[[dict[str, Any]], str]] = {
    "attach": lambda s: (f"await run.attach(task, {s['process']}, spelling={s['spelling']})"
                         if s.get("spelling") else f"await run.attach(task, {s['process']})"),
    "release": lambda s: f"run.release(task, {s.get('count', 1)})",
    "finish_ok": lambda s: f"run.finish_task(task, True, {s.get('how')!r})",
    "finish_fail": lambda s: f"run.finish_task(task, False, {s.get('how')!r})",
    "wait": lambda s: f"await run.wait({s['seconds']})",
    "request": _request,
    "intrude": lambda s: f"await run.intrude(task, {s['process']}, {s['which']})",
    # A kill -9 and a new server in its place; a SIGTERM and a new server in its place.
    "crash": lambda s: f"await run.restart({s['process']})",
    "shutdown": lambda s: f"await run.shutdown({s['process']}); await run.replace({s['process']})",
    "detach": lambda s: f"await run.detach({s['client']})",
    "stall": lambda s: f"run.stall({s['client']})",
    "reconnect": lambda s: f"await run.reconnect({s['client']}, {s['process']})",
    "crowd": lambda s: f"await run.crowd(task, {s['process']}, {s['count']})",
}
"""Step op -> the Python statement(s) that perform it, on a `WireRun` named ``run``."""


_PROSE: dict[str, Callable[[dict[str, Any]], str]] = {
    "attach": lambda s: f"a client joins on server {s['process']}" + (
        f", naming the task another way (spelling {s['spelling']})" if s.get("spelling") else ""),
    "release": lambda s: f"the task sends {s.get('count', 1)} event(s)",
    "finish_ok": lambda s: f"the task finishes ({s.get('how') or 'returns'})",
    "finish_fail": lambda s: f"the task fails ({s.get('how') or 'raises'})",
    "wait": lambda s: f"wait {s['seconds']} s",
    "request": lambda s: f"a malformed or hostile request (number {s['which']}) to server {s['process']}",
    "intrude": lambda s: (f"requests the implementation must refuse (way {s['which']}) "
                          f"to server {s['process']}"),
    "crash": lambda s: f"kill -9 of server {s['process']}, and a new one in its place",
    "shutdown": lambda s: f"SIGTERM to server {s['process']}, and a new one in its place",
    "detach": lambda s: f"client {s['client']} leaves",
    "stall": lambda s: f"client {s['client']} stops reading",
    "reconnect": lambda s: (f"client {s['client']} drops and reconnects with Last-Event-ID "
                            f"on server {s['process']}"),
    "crowd": lambda s: f"{s['count']} clients join at once on server {s['process']}",
}


def describe(step: dict[str, Any]) -> str:
    """`step` in words (clients and servers counted from 0, as the calls count them)."""
    call_of(step)  # an unknown step is refused alike
    return _PROSE[step["op"]](step)


def call_of(step: dict[str, Any]) -> str:
    """The statement(s) that perform `step`."""
    make = CALLS.get(step.get("op", ""))
    if make is None:
        raise UsageError(f"unknown wire step {step!r}: the ops are {', '.join(CALLS)}")
    return make(step)


def statements_of(step: dict[str, Any]) -> list[str]:
    """`call_of(step)`, one statement a line (as a script shows them and `perform` runs them)."""
    return [statement.strip() for statement in call_of(step).split(";")]


async def perform(run: Any, task: str, step: dict[str, Any]) -> None:
    """Perform `step` on `run`: the very statements `call_of` writes, executed."""
    code = "async def _step(run, task):\n" + "".join(f"    {s}\n" for s in statements_of(step))
    namespace: dict[str, Any] = {}
    exec(compile(code, f"<wire step {step['op']}>", "exec"), namespace)
    await namespace["_step"](run, task)
