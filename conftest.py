"""Test-session setup: Django configured for the reference implementation on a throw-away database.

The database is SQLite in a temporary folder unless DATABASE_URL names another one (the multi-process
profile points it at PostgreSQL). Server processes started by tests inherit the same DATABASE_URL,
so a test and the server it talks to see the same rows.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

_tmpdir: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _tmpdir
    if "DATABASE_URL" not in os.environ:
        _tmpdir = tempfile.mkdtemp(prefix="streamspec-tests-")
        os.environ["DATABASE_URL"] = f"sqlite:///{os.path.join(_tmpdir, 'db.sqlite3')}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "reference_impl.settings"

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _tmpdir is not None:
        shutil.rmtree(_tmpdir, ignore_errors=True)
