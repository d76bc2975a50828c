"""The Django settings module of a server process in the HTTP mode (DJANGO_SETTINGS_MODULE).

The harness starts each server with ``STREAMSPEC_SUT`` (the adapter, as ``--sut`` names it) and
``DATABASE_URL`` (the database the harness itself uses, so both see the same rows); the settings
are the in-process run's (`harness.django_setup.harness_settings`): the implementation's apps
beside the probe app, and the adapter's own settings. Server logs go to stderr, which the harness
keeps in a file per server for the reports.
"""

import os

from harness.adapters import load_adapter
from harness.django_setup import harness_settings

_adapter = load_adapter(os.environ["STREAMSPEC_SUT"])
globals().update(harness_settings(_adapter, os.environ.get("DATABASE_URL")))
globals().update(getattr(_adapter, "http_settings", None) or {})

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}
