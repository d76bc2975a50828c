"""Test-session setup: the streamspec plugin configures Django for the implementation under test.

The database is SQLite in a temporary folder unless DATABASE_URL names another one. Server processes
started by tests inherit the same DATABASE_URL, so a test and its server see the same rows.
"""

import os

import pytest

# The streamspec plugin comes with the installed package (entry point pytest11); pyproject.toml's
# ini option streamspec_sut turns it on for this repository's tests.
pytest_plugins = ["pytester"]

SUT_TESTS_ONLY = "STREAMSPEC_SUT_TESTS_ONLY"
"""Set (the upstream tox env): run only the tests that drive the implementation under test."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under STREAMSPEC_SUT_TESTS_ONLY=1, keep the tests that ask for the implementation under test
    (`sut_adapter`, `scenario_runner`): the others do not depend on it, and the per-push test env
    ran them already against the same code."""
    if os.environ.get(SUT_TESTS_ONLY, "").strip() not in ("1", "true", "yes"):
        return
    kept, dropped = [], []
    for item in items:
        uses = set(getattr(item, "fixturenames", ()))
        (kept if uses & {"sut_adapter", "scenario_runner"} else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
