"""Settings to run the reference implementation on its own (`python reference_impl/manage.py ...`).

SQLite next to the working directory by default; DATABASE_URL (e.g. postgres://user@host/db or
sqlite:///path/to/db.sqlite3) overrides it.
"""

import os

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

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


def _database(url: str | None) -> dict:
    if not url:
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": "streamspec-reference.sqlite3",
                "OPTIONS": {"timeout": 20}}
    try:
        config = dj_database_url.parse(url)
    except Exception as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a database URL we can use: {exc}") from exc
    if not config.get("ENGINE"):
        raise ImproperlyConfigured(f"DATABASE_URL names no known database engine: {url!r}")
    if config["ENGINE"].endswith("sqlite3"):
        config.setdefault("OPTIONS", {})["timeout"] = 20
    return config


DATABASES = {"default": _database(os.environ.get("DATABASE_URL"))}
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
