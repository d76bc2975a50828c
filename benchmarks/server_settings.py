"""Django settings of the HTTP benchmarks' server processes (``runserver_stream``).

The implementation comes from STREAMSPEC_SUT (a harness adapter name: its apps and StreamTask
base), the database from DATABASE_URL (the benchmark process's, so both see the same rows), and
the benchmark task app serves the tasks. BENCH_DJANGO_SETTINGS (a JSON object) adds settings for
a variant run; STREAMING_KEEPALIVE_SECONDS may come from the environment.
"""

import json
import os

from harness.adapters import load_adapter
from harness.django_setup import database_settings

_adapter = load_adapter(os.environ.get("STREAMSPEC_SUT", "reference"))

# The benchmark process's key: it signs the stream URLs the reference checks (access control).
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "streamspec-bench-server")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
INSTALLED_APPS = [*_adapter.installed_apps, "benchmarks.benchapp"]
STREAMSPEC_TASK_BASE = _adapter.task_base
MIDDLEWARE: list[str] = []
DATABASES = {"default": database_settings(os.environ.get("DATABASE_URL"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"streaming": {"level": "CRITICAL", "propagate": False}},
}
if os.environ.get("STREAMING_KEEPALIVE_SECONDS"):
    STREAMING_KEEPALIVE_SECONDS = float(os.environ["STREAMING_KEEPALIVE_SECONDS"])
STREAMING_MAX_STREAMS = 5_000

globals().update(json.loads(os.environ.get("BENCH_DJANGO_SETTINGS") or "{}"))
