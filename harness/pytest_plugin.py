"""streamspec's pytest plugin: choose the implementation under test and set Django up for it.

Use it with ``-p harness.pytest_plugin`` (this repository's conftest loads it). The implementation is
chosen by ``--sut NAME|module:Class``, else the environment variable STREAMSPEC_SUT, else the ini
option ``streamspec_sut``, else ``reference``; the report header says which and from where.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.adapters import Adapter, load_adapter
from harness.choice import ChoiceSource, FifoChoices
from harness.errors import StreamspecError
from harness.runner import Outcome, Scenario, run_scenario
from harness.scheduler import RunResult, run

_STATE = pytest.StashKey[dict]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("streamspec")
    group.addoption("--sut", default=None,
                    help="implementation under test: reference, upstream, or package.module:Class")
    parser.addini("streamspec_sut", "implementation under test when --sut and STREAMSPEC_SUT are unset")


def _choose(config: pytest.Config) -> tuple[str, str]:
    if config.getoption("--sut"):
        return config.getoption("--sut"), "--sut"
    if os.environ.get("STREAMSPEC_SUT"):
        return os.environ["STREAMSPEC_SUT"], "STREAMSPEC_SUT"
    if config.getini("streamspec_sut"):
        return config.getini("streamspec_sut"), "ini streamspec_sut"
    return "reference", "default"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "clause(id): the spec clause (S1..S8) a test checks")
    spec, source = _choose(config)
    try:
        adapter = load_adapter(spec)
    except StreamspecError as exc:
        raise pytest.UsageError(f"streamspec: {exc}") from None
    tmpdir = None
    if "DATABASE_URL" not in os.environ:
        # Exported, so that server processes started by tests open the same database.
        tmpdir = tempfile.mkdtemp(prefix="streamspec-tests-")
        os.environ["DATABASE_URL"] = f"sqlite:///{os.path.join(tmpdir, 'db.sqlite3')}"
    from harness.django_setup import configure

    try:
        configure(adapter, os.environ["DATABASE_URL"])
    except StreamspecError as exc:
        raise pytest.UsageError(f"streamspec: {exc}") from None
    config.stash[_STATE] = {"adapter": adapter, "spec": spec, "source": source, "tmpdir": tmpdir}


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state and state["tmpdir"]:
        shutil.rmtree(state["tmpdir"], ignore_errors=True)


def pytest_report_header(config: pytest.Config) -> str:
    state = config.stash[_STATE]
    versions = state["adapter"].versions()
    return (f"streamspec: sut={state['spec']} ({versions['implementation']} {versions['version']}), "
            f"chosen by {state['source']}")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Tests of the reference implementation import its models: they belong to reference runs."""
    state = config.stash.get(_STATE, None)
    if state and state["adapter"].name != "reference" and collection_path.name.startswith("test_reference"):
        return True
    return None


@pytest.fixture(scope="session")
def sut_adapter(pytestconfig: pytest.Config) -> Adapter:
    """The adapter of the implementation under test."""
    return pytestconfig.stash[_STATE]["adapter"]


@pytest.fixture
def controlled_run() -> Callable[..., RunResult]:
    """`harness.scheduler.run`: run a coroutine function on a fresh deterministic loop."""
    return run


@pytest.fixture
def scenario_runner(sut_adapter: Adapter) -> Callable[..., Outcome]:
    """Run a scenario (a coroutine function taking a `harness.runner.Run`) against the SUT:
    ``scenario_runner(scenario, choices=None, **bounds) -> Outcome`` (FIFO when no choices)."""

    def run_one(scenario: Scenario, choices: ChoiceSource | None = None, **bounds: Any) -> Outcome:
        return run_scenario(sut_adapter, scenario, choices or FifoChoices(), **bounds)

    return run_one
