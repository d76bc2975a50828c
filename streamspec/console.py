"""What every command shares: exit codes, progress lines, how paths are shown, and turning an
adapter name or a clause list into objects, with bad input reported as a `UsageError`."""

from __future__ import annotations

import os
import platform
import sys
import time
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any

from harness import spec
from harness.errors import StreamspecError, UsageError

__all__ = ["EXIT_OK", "EXIT_USAGE", "EXIT_VIOLATED", "Progress", "UsageError", "configure", "display", "load",
           "parse_clauses", "versions"]

EXIT_OK, EXIT_VIOLATED, EXIT_USAGE = 0, 1, 2


def parse_clauses(text: str | None) -> list[str] | None:
    """The clauses a ``--clauses S1,s3`` option names (any case), in order, once each."""
    if text is None:
        return None
    by_upper = {c.upper(): c for c in spec.BY_ID}
    wanted = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part.upper() not in by_upper:
            raise UsageError(f"unknown clause {part!r}: use some of {', '.join(spec.BY_ID)}")
        wanted.append(by_upper[part.upper()])
    if not wanted:
        raise UsageError("--clauses names no clause")
    return list(dict.fromkeys(wanted))


def versions(adapter: Any) -> dict[str, str]:
    """The versions a report names: the implementation's, Django's, Python's, streamspec's."""
    import django
    import hypothesis

    try:
        own = dist_version("streamspec")
    except PackageNotFoundError:
        own = "source"
    av = adapter.versions()
    return {
        "implementation": str(av.get("implementation", adapter.name)),
        "implementation_version": str(av.get("version", "")),
        "django": django.get_version(),
        "python": platform.python_version(),
        "streamspec": own,
        "hypothesis": hypothesis.__version__,
    }


def display(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return str(path)


class Progress:
    """Progress lines on stderr: by default only when it is a terminal (dimmed there)."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.tty = sys.stderr.isatty()
        self.enabled = self.tty if enabled is None else enabled
        self.started = time.monotonic()

    def __call__(self, line: str) -> None:
        if self.enabled:
            elapsed = time.monotonic() - self.started
            text = f"[{elapsed:6.1f}s] {line.strip()}"
            sys.stderr.write(f"\033[2m{text}\033[0m\n" if self.tty else text + "\n")
            sys.stderr.flush()


def load(sut: str) -> Any:
    """The adapter `sut` names (a built-in name, an entry point or ``module:Class``)."""
    from harness.adapters import load_adapter

    try:
        return load_adapter(sut)
    except StreamspecError as exc:
        raise UsageError(str(exc)) from None


def configure(adapter: Any) -> None:
    """Set Django up for `adapter` on DATABASE_URL (a temporary SQLite file when unset)."""
    from harness.django_setup import configure as configure_django

    try:
        configure_django(adapter, os.environ.get("DATABASE_URL"))
    except StreamspecError as exc:
        raise UsageError(str(exc)) from None
    except Exception as exc:  # the implementation's app failed to load: a configuration error too
        raise UsageError(f"cannot set Django up for {adapter.name!r}: {type(exc).__name__}: {exc}") from None
