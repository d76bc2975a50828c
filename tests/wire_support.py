"""Helpers of the HTTP-mode tests: programs from short tuples, and one program run on fresh servers."""

from __future__ import annotations

import os
import tempfile
from typing import Any

from harness.history import History
from scenarios.wire import run_wire_program


def steps(*pairs: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Program steps from (op, fields) pairs: ("attach", {"process": 1})."""
    return [{"op": op, **fields} for op, fields in pairs]


def database_url() -> str:
    """The test session's database (the streamspec plugin exports it for server processes)."""
    return os.environ["DATABASE_URL"]


def run(sut_adapter: Any, program: list[dict[str, Any]]) -> tuple[History, dict[str, Any], dict[str, str]]:
    """`program` on fresh servers: its history, each clause's result by id, each server's log tail."""
    with tempfile.TemporaryDirectory(prefix="streamspec-wire-") as logs_dir:
        history, results, logs = run_wire_program(sut_adapter, sut_adapter.name, database_url(), logs_dir,
                                                  program)
    return history, {r.clause: r for r in results}, logs
