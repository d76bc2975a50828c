"""The pytest plugin, from the outside: how a user's test session picks and reports the SUT."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import harness

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def session(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    """Run a pytest session in a subprocess with the plugin and this source tree importable."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.delenv("STREAMSPEC_SUT", raising=False)

    def run(*args: str, test: str = "def test_nothing():\n    assert True\n") -> pytest.RunResult:
        pytester.makepyfile(test_user=test)
        return pytester.runpytest_subprocess("-p", "streamspec.pytest_plugin", "-p", "no:cacheprovider",
                                              *args)

    return run


def test_header_names_the_sut_and_where_the_choice_came_from(session, monkeypatch):
    monkeypatch.setenv("STREAMSPEC_SUT", "reference")
    result = session(test="def test_sut(sut_adapter):\n    assert sut_adapter.name == 'reference'\n")
    result.stdout.fnmatch_lines(
        ["streamspec: sut=reference (streamspec reference *), chosen by STREAMSPEC_SUT"]
    )
    assert result.ret == pytest.ExitCode.OK


def test_the_command_line_option_wins(session, monkeypatch):
    monkeypatch.setenv("STREAMSPEC_SUT", "no-such-thing")
    result = session("--sut", "reference")
    result.stdout.fnmatch_lines(["*chosen by --sut"])


def test_an_installed_plugin_stays_inactive_until_a_session_asks(pytester, monkeypatch):
    """Installed streamspec registers the plugin in every session (entry point pytest11): a session
    that names no implementation gets no header, no Django, and fixtures that say how to ask."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.delenv("STREAMSPEC_SUT", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    pytester.makepyfile(test_user="""
def test_unrelated():
    from django.conf import settings
    assert not settings.configured

def test_asks_for_the_sut(sut_adapter):
    pass
""")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    assert "streamspec: sut=" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*the streamspec plugin is inactive in this session: choose an*"])
    # The ini option turns it on, as this repository's pyproject.toml does.
    pytester.makeini("[pytest]\nstreamspec_sut = reference\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", "asks_for")
    result.stdout.fnmatch_lines(["streamspec: sut=reference *chosen by ini streamspec_sut"])
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope", "unknown implementation 'nope': use one of *"),
        ("no_such_module_xyz:Adapter", "cannot import adapter module 'no_such_module_xyz'*"),
        ("json:NoSuchClass", "module 'json' has no attribute 'NoSuchClass'"),
        ("json:JSONDecoder", "*is not a streamspec adapter: it lacks name, installed_apps*"),
    ],
)
def test_a_bad_sut_is_one_clear_usage_error(session, spec, message):
    result = session("--sut", spec)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*streamspec: {message}"])
    assert "Traceback" not in result.stderr.str()


def test_fixtures_run_scenarios_against_the_sut(scenario_runner):
    async def create_and_start(run):
        created = await run.create()
        await run.start(created)

    outcome = scenario_runner(create_and_start)
    assert [r.verdict for r in outcome.results if str(r.verdict) == "fail"] == []
    assert outcome.history.ops("start")


def test_the_public_api_is_importable_and_listed():
    missing = [name for name in harness.__all__ if not hasattr(harness, name)]
    assert missing == []
    assert issubclass(harness.HistoryError, harness.StreamspecError)
    assert issubclass(harness.AdapterError, harness.StreamspecError)


def test_a_hang_is_a_reported_result_with_the_waiting_stacks(scenario_runner):
    """A scenario that waits for something that never happens ends as a hang, not a stuck test."""

    async def wait_forever(run):
        created = await run.create()
        await run.attach(created)
        await asyncio.get_running_loop().create_future()  # nothing will ever resolve it

    outcome = scenario_runner(wait_forever)
    # A hang, or the virtual-time bound where the implementation keeps polling: never stuck.
    assert outcome.history.run_end.reason in ("hang", "bound")
    assert outcome.history.run_end.waiting == ["c1"]
    assert outcome.cut_short is not None and 'File "' in outcome.cut_short  # the waiting stacks


def test_an_adapter_may_not_override_the_harness_settings():
    from harness.adapters.reference import ReferenceAdapter
    from harness.django_setup import configure
    from harness.errors import ConfigError

    class Greedy(ReferenceAdapter):
        django_settings = {"STREAMING_CLIENT_BUFFER": 8, "DATABASES": {}, "INSTALLED_APPS": []}

    with pytest.raises(ConfigError, match="sets DATABASES, INSTALLED_APPS in django_settings"):
        configure(Greedy())
