"""streamspec's pytest plugin: choose the implementation under test and set Django up for it.

Installing streamspec registers it (entry point ``pytest11``), but it stays inactive, so that an
unrelated test session is untouched, until a session asks for an implementation: ``--sut
NAME|module:Class``, else the environment variable STREAMSPEC_SUT, else the ini option
``streamspec_sut`` (this repository's pyproject.toml sets ``reference``). The report header then
says which and from where, and the fixtures `sut_adapter` and `scenario_runner` work; while
inactive they fail with a message that says how to turn the plugin on (`controlled_run`, which
needs no implementation, always works).
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
from harness.driver import Outcome, Scenario, run_scenario
from harness.errors import StreamspecError
from harness.scheduler import RunResult, run

_STATE = pytest.StashKey[dict]()
_OWN_DB = "STREAMSPEC_TEST_DATABASE"
"""The database URL this plugin made for its session (not one the user gave)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("streamspec")
    group.addoption("--sut", default=None,
                    help="implementation under test: reference, upstream, or package.module:Class")
    parser.addini("streamspec_sut", "implementation under test when --sut and STREAMSPEC_SUT are unset")


INACTIVE = (
    "the streamspec plugin is inactive in this session: choose an implementation with --sut "
    "NAME|module:Class, the environment variable STREAMSPEC_SUT, or the ini option streamspec_sut"
)


def _choose(config: pytest.Config) -> tuple[str, str] | None:
    """The implementation asked for and who asked, or None: the plugin then stays inactive."""
    if config.getoption("--sut"):
        return config.getoption("--sut"), "--sut"
    if os.environ.get("STREAMSPEC_SUT"):
        return os.environ["STREAMSPEC_SUT"], "STREAMSPEC_SUT"
    if config.getini("streamspec_sut"):
        return config.getini("streamspec_sut"), "ini streamspec_sut"
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "clause(id): the spec clause (S1..S8) a test checks")
    chosen = _choose(config)
    if chosen is None:
        return
    spec, source = chosen
    try:
        adapter = load_adapter(spec)
    except StreamspecError as exc:
        raise pytest.UsageError(f"streamspec: {exc}") from None
    tmpdir = None
    inherited = os.environ.get("DATABASE_URL")
    # An xdist worker inherits the controller's environment: a database the controller made for
    # itself is not shared (each worker empties its tables before every run), so it makes its own.
    if inherited is None or (os.environ.get("PYTEST_XDIST_WORKER") and inherited == os.environ.get(_OWN_DB)):
        # Exported, so that server processes started by tests open the same database.
        tmpdir = tempfile.mkdtemp(prefix="streamspec-tests-")
        os.environ["DATABASE_URL"] = os.environ[_OWN_DB] = f"sqlite:///{os.path.join(tmpdir, 'db.sqlite3')}"
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


def pytest_report_header(config: pytest.Config) -> str | None:
    state = config.stash.get(_STATE, None)
    if state is None:
        return None
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
    state = pytestconfig.stash.get(_STATE, None)
    if state is None:
        raise pytest.UsageError(INACTIVE)
    return state["adapter"]


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
