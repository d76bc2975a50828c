"""Benchmark session setup: Django for the implementation under test, plus the benchmark task app.

The implementation is chosen like in the test suite (``--sut``, else STREAMSPEC_SUT, else the
reference); the harness's plugin (loaded by the top-level conftest) then finds Django configured
for it. This conftest configures Django first, with one more app than the plugin would: the
benchmark task app (`benchmarks.benchapp`), whose model the in-process and HTTP benchmarks run.

Also here: the raw-asyncio baseline switch (``--bench-raw``), a fresh event loop per benchmark,
and the session's metadata (implementation, versions, sizes) written into the benchmark JSON.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import inspect
import json
import os
import shutil
import tempfile
from importlib.metadata import PackageNotFoundError, version

import pytest

from benchmarks.config import as_dict

BENCH_APP = "benchmarks.benchapp"
PROBE_APP = "harness.probe"
_TMPDIR = pytest.StashKey[str | None]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("streamspec benchmarks")
    group.addoption(
        "--bench-raw", choices=("auto", "yes", "no"), default="auto",
        help="run the raw-asyncio baselines too (auto: only in the reference's process)",
    )


def _sut_spec(config: pytest.Config) -> str:
    """The implementation under test, chosen as streamspec.pytest_plugin chooses it."""
    return (config.getoption("--sut", None) or os.environ.get("STREAMSPEC_SUT")
            or config.getini("streamspec_sut") or "reference")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    import django
    from django.conf import settings

    from harness.adapters import load_adapter
    from harness.django_setup import database_settings
    from harness.errors import StreamspecError

    if settings.configured:
        return
    try:
        adapter = load_adapter(_sut_spec(config))
    except StreamspecError as exc:
        raise pytest.UsageError(f"streamspec benchmarks: {exc}") from None
    tmpdir = None
    if "DATABASE_URL" not in os.environ:
        # Exported: the HTTP benchmarks' server processes open the same database.
        tmpdir = tempfile.mkdtemp(prefix="streamspec-bench-")
        os.environ["DATABASE_URL"] = f"sqlite:///{os.path.join(tmpdir, 'db.sqlite3')}"
    config.stash[_TMPDIR] = tmpdir
    settings.configure(
        # The plugin accepts a configuration that starts with its own app list.
        INSTALLED_APPS=[*adapter.installed_apps, PROBE_APP, BENCH_APP],
        DATABASES={"default": database_settings(os.environ["DATABASE_URL"])},
        STREAMSPEC_TASK_BASE=adapter.task_base,
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        SECRET_KEY="streamspec-bench",
        ALLOWED_HOSTS=["127.0.0.1", "localhost", "[::1]"],
        LOGGING=quiet_logging(),
        **extra_settings(),
    )
    django.setup()
    tune_sqlite()
    from django.core.management import call_command

    call_command("migrate", run_syncdb=True, verbosity=0)


def extra_settings() -> dict:
    """Django settings for a variant run, as a JSON object in BENCH_DJANGO_SETTINGS
    (e.g. ``{"STREAMING_EVENT_LOG": false}``); the HTTP servers get them too."""
    raw = os.environ.get("BENCH_DJANGO_SETTINGS", "").strip()
    if not raw:
        return {}
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise pytest.UsageError("BENCH_DJANGO_SETTINGS must be a JSON object of Django settings")
    return value


def quiet_logging() -> dict:
    """Both implementations log under `streaming`; neither pays for handlers in a benchmark."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "loggers": {"streaming": {"level": "CRITICAL", "propagate": False}},
    }


def tune_sqlite() -> None:
    """WAL (a server process shares the file) and no fsync per commit, as the harness does."""
    from django.db.backends.signals import connection_created

    def pragmas(sender, connection, **kwargs) -> None:
        if connection.vendor == "sqlite":
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")

    connection_created.connect(pragmas, weak=False, dispatch_uid="streamspec-bench-sqlite")


def pytest_unconfigure(config: pytest.Config) -> None:
    tmpdir = config.stash.get(_TMPDIR, None)
    if tmpdir:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _dist_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "-"


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list, output_json: dict) -> None:
    from harness.adapters import load_adapter

    adapter = load_adapter(_sut_spec(config))
    output_json["streamspec"] = {
        "sut": os.environ.get("BENCH_LABEL") or adapter.name,
        "adapter": adapter.name,
        "settings": extra_settings(),
        "implementation": adapter.versions(),
        "raw_baseline": raw_enabled(config),
        "versions": {name: _dist_version(name) for name in ("django", "uvicorn", "h11", "asgiref")},
        "sizes": as_dict(),
    }


def raw_enabled(config: pytest.Config) -> bool:
    choice = config.getoption("--bench-raw")
    if choice == "auto":
        from harness.adapters import load_adapter

        return load_adapter(_sut_spec(config)).name == "reference"
    return choice == "yes"


@pytest.fixture(scope="session")
def bench_raw(pytestconfig: pytest.Config) -> bool:
    return raw_enabled(pytestconfig)


@pytest.fixture(scope="session")
def sut_label(sut_adapter) -> str:
    """The name figures are recorded under: the adapter's, or BENCH_LABEL for a variant run
    (e.g. the reference with other settings, see BENCH_DJANGO_SETTINGS)."""
    return os.environ.get("BENCH_LABEL") or sut_adapter.name


@pytest.fixture
def contender(request: pytest.FixtureRequest, sut_adapter, sut_label: str, bench_raw: bool) -> str:
    """``sut`` (the implementation under test, with asyncio.Queue clients), ``native`` (the same with
    the client type of its own, if it has one: recorded as "<label>-native") or ``raw`` (the
    asyncio baseline), by parameter."""
    which = request.param
    if which == "raw" and not bench_raw:
        pytest.skip("raw-asyncio baselines run in the reference's process (--bench-raw=yes to force)")
    if which == "native":
        if getattr(sut_adapter, "native_client", None) is None:
            pytest.skip(f"{sut_adapter.name} has no in-process client type besides asyncio.Queue")
        return f"{sut_label}-native"
    return "raw" if which == "raw" else sut_label


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run each (synchronous) benchmark in a context of its own: the coordinator a benchmark
    activates (a context variable of the reference) does not leak into the next one."""
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    arguments = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    contextvars.copy_context().run(pyfuncitem.obj, **arguments)
    return True


@pytest.fixture
def aloop():
    """A fresh event loop for one benchmark (not set as the thread's current loop), on a heap
    without the previous benchmark's garbage."""
    gc.collect()
    loop = asyncio.new_event_loop()
    yield loop
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
