"""Test-session setup: the streamspec plugin configures Django for the implementation under test.

The database is SQLite in a temporary folder unless DATABASE_URL names another one. Server processes
started by tests inherit the same DATABASE_URL, so a test and its server see the same rows.
"""

# The streamspec plugin comes with the installed package (entry point pytest11); pyproject.toml's
# ini option streamspec_sut turns it on for this repository's tests.
pytest_plugins = ["pytester"]
