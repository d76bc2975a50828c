"""Configure Django, once per process, for one implementation under test plus the probe app.

Implementations cannot share a process (the reference and the upstream package both use the app
label ``streaming``), so each verify run or test session configures Django for exactly one.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from typing import Any

from harness.adapters import Adapter
from harness.errors import ConfigError

PROBE_APP = "harness.probe"


def database_settings(url: str | None) -> dict[str, Any]:
    """DATABASES['default'] for a database URL; a temporary SQLite file when there is none."""
    import dj_database_url

    if not url:
        folder = tempfile.mkdtemp(prefix="streamspec-")
        # Nothing left behind: every run without a DATABASE_URL would otherwise leave a folder
        # (the database and its WAL files, megabytes after a long search) in the temp directory.
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        path = os.path.join(folder, "db.sqlite3")
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": path, "OPTIONS": {"timeout": 20}}
    try:
        config = dj_database_url.parse(url)
    except Exception as exc:
        raise ConfigError(f"DATABASE_URL {url!r} is not a usable database URL: {exc}") from exc
    if not config.get("ENGINE"):
        raise ConfigError(f"DATABASE_URL {url!r} names no known database engine")
    if config["ENGINE"].endswith("sqlite3"):
        config.setdefault("OPTIONS", {})["timeout"] = 20
    return config


_HARNESS_OWNED = frozenset({
    "INSTALLED_APPS", "DATABASES", "STREAMSPEC_TASK_BASE", "USE_TZ", "TIME_ZONE", "DEFAULT_AUTO_FIELD",
    "SECRET_KEY", "ALLOWED_HOSTS", "LOGGING",
})


def _adapter_settings(adapter: Adapter) -> dict[str, Any]:
    extra = dict(getattr(adapter, "django_settings", None) or {})
    owned = sorted(set(extra) & _HARNESS_OWNED)
    if owned:
        raise ConfigError(
            f"adapter {adapter.name!r} sets {', '.join(owned)} in django_settings: the harness sets "
            "those itself; give only your implementation's own settings"
        )
    return extra


def harness_settings(adapter: Adapter, database_url: str | None = None) -> dict[str, Any]:
    """The Django settings the harness runs `adapter`'s implementation under: its apps beside the
    probe app, on the database of `database_url` (a temporary SQLite file without one). The
    in-process run and the server processes of the HTTP mode (`harness.wire.server_settings`)
    both use these, so the probe table and the implementation's settings are the same in both."""
    extra = _adapter_settings(adapter)
    return dict(
        INSTALLED_APPS=[*adapter.installed_apps, PROBE_APP],
        DATABASES={"default": database_settings(database_url)},
        STREAMSPEC_TASK_BASE=adapter.task_base,
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        SECRET_KEY="streamspec-harness",
        ALLOWED_HOSTS=["127.0.0.1", "localhost", "[::1]"],
        # Settings the adapter asks for (e.g. a small client buffer, so overflow is reachable in a
        # few steps); the harness's own cannot be overridden (checked above).
        **extra,
        LOGGING={
            "version": 1,
            "disable_existing_loggers": False,
            # Implementations log every planted failure with a traceback; the history has it.
            "loggers": {"streaming": {"level": "CRITICAL", "propagate": False}},
        },
    )


def configure(adapter: Adapter, database_url: str | None = None) -> None:
    """Configure and set up Django for `adapter`, and create the tables (idempotent per process)."""
    import django
    from django.conf import settings

    _adapter_settings(adapter)
    if settings.configured:
        installed = list(getattr(settings, "INSTALLED_APPS", ()))
        wanted = [*adapter.installed_apps, PROBE_APP]
        if installed[: len(wanted)] != wanted:
            raise ConfigError(
                f"Django is already configured for {installed}, not for {adapter.name!r}: "
                f"each implementation is verified in a process of its own"
            )
        return
    settings.configure(**harness_settings(adapter, database_url))
    django.setup()
    _tune_sqlite()
    from django.core.management import call_command

    call_command("migrate", run_syncdb=True, verbosity=0)


def _tune_sqlite() -> None:
    """Scenario runs write a few rows per example: skip fsync on every commit (WAL keeps the file
    consistent, and a server process sharing it still sees committed rows)."""
    from django.db.backends.signals import connection_created

    def pragmas(sender: Any, connection: Any, **kwargs: Any) -> None:
        if connection.vendor == "sqlite":
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")

    connection_created.connect(pragmas, weak=False, dispatch_uid="streamspec-sqlite-pragmas")
