"""Settings to run the reference implementation on its own (`python reference_impl/manage.py ...`).

SQLite next to the working directory by default; DATABASE_URL (e.g. postgres://user@host/db or
sqlite:///path/to/db.sqlite3) overrides it. The streaming app's settings (see streaming/conf.py)
may be given as environment variables of the same names, e.g. STREAMING_MAX_STREAMS=100.
"""

import math
import os

import dj_database_url
import django
from django.core.exceptions import ImproperlyConfigured

from reference_impl.streaming.conf import DEFAULTS as STREAMING_DEFAULTS

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "streamspec-reference-insecure-dev-key")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",")

INSTALLED_APPS = [
    "reference_impl.streaming",
    "reference_impl.example",
]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "reference_impl.urls"
ASGI_APPLICATION = "reference_impl.asgi.application"


def _sqlite_options() -> dict:
    options: dict = {"timeout": 20}
    if django.VERSION >= (5, 1):
        # WAL: readers (other workers relaying a task) never block the writer, and a commit needs
        # no fsync with synchronous=NORMAL, so the event log appends on the loop's thread
        # (STREAMING_LOG_ON_LOOP). Django 4.2 has no init_command for SQLite: run these PRAGMAs once
        # on the file yourself (journal_mode=WAL stays set on the file).
        options["init_command"] = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL"
    return options


def _database(url: str | None) -> dict:
    if not url:
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": "streamspec-reference.sqlite3",
                "OPTIONS": _sqlite_options()}
    try:
        config = dj_database_url.parse(url)
    except Exception as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a database URL we can use: {exc}") from exc
    if not config.get("ENGINE"):
        raise ImproperlyConfigured(f"DATABASE_URL names no known database engine: {url!r}")
    if config["ENGINE"].endswith("sqlite3"):
        config.setdefault("OPTIONS", {}).update(_sqlite_options())
    return config


DATABASES = {"default": _database(os.environ.get("DATABASE_URL"))}


def _env_number(name: str, kind: type) -> int | float:
    """A STREAMING_* setting from the environment: a number of `kind`; whether it is in range is
    checked by streaming/conf.py like any other value of the setting."""
    raw = os.environ[name].strip()
    try:
        value = kind(raw)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise ImproperlyConfigured(f"{name} (environment) must be {noun}, got {raw!r}") from None
    if not math.isfinite(value):
        raise ImproperlyConfigured(f"{name} (environment) must be a finite number, got {raw!r}")
    return value


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _env_flag(name: str) -> bool:
    raw = os.environ[name].strip().lower()
    if raw in _TRUE or raw in _FALSE:
        return raw in _TRUE
    raise ImproperlyConfigured(f"{name} (environment) must be one of {', '.join(_TRUE + _FALSE)}, "
                               f"got {os.environ[name]!r}")


def _env_value(name: str, default: object) -> object:
    """A STREAMING_* setting from the environment, read as the kind of its default."""
    if isinstance(default, bool):
        return _env_flag(name)
    if isinstance(default, int | float):
        return _env_number(name, type(default))
    return os.environ[name].strip()  # a choice: streaming/conf.py says which values it takes


# Every STREAMING_* setting may come from the environment; only the variables that are set
# override the defaults of streaming/conf.py, which validates every value alike.
for _name, _default in STREAMING_DEFAULTS.items():
    if _name in os.environ:
        globals()[_name] = _env_value(_name, _default)


DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "streaming": {"handlers": ["console"], "level": os.environ.get("STREAMING_LOG_LEVEL", "WARNING")},
    },
}
