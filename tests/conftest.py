"""Fixtures for the HTTP tests: real `runserver_stream` processes (see `tests/http_server.py`).

The session setup (database, Django) is the top-level conftest.py's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.http_server import (
    KEEPALIVE_SECONDS,
    LIMITED_MAX_STREAMS,
    LIMITED_RETRY_AFTER,
    ServerProcess,
    start_server,
    stop_server,
)


@pytest.fixture
def reference_defaults() -> Iterator[None]:
    """The reference's own default client buffer, for its unit tests: under the harness its adapter
    sets a tiny one (so the search reaches overflows), which tests that read at their own pace would
    trip over."""
    from django.test import override_settings

    from reference_impl.streaming.conf import DEFAULTS

    with override_settings(STREAMING_CLIENT_BUFFER=DEFAULTS["STREAMING_CLIENT_BUFFER"]):
        yield


@pytest.fixture
def fresh_coordinator() -> Iterator[object]:
    """The reference's process-wide coordinator, empty when a test starts and after it ends."""
    from reference_impl.streaming.coordinator import coordinator

    coordinator.__init__()
    yield coordinator
    coordinator.__init__()


@pytest.fixture(scope="session")
def http_server() -> Iterator[ServerProcess]:
    """One server process for the session, on a free TCP port, with a short keep-alive."""
    server = start_server({"STREAMING_KEEPALIVE_SECONDS": str(KEEPALIVE_SECONDS)})
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def limited_server() -> Iterator[ServerProcess]:
    """A server of its own for the connection-limit tests, so no other test's streams count."""
    server = start_server({
        "STREAMING_MAX_STREAMS": str(LIMITED_MAX_STREAMS),
        "STREAMING_RETRY_AFTER_SECONDS": str(LIMITED_RETRY_AFTER),
    })
    yield server
    stop_server(server)


@pytest.fixture
async def client(http_server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with http_server.client() as client:
        yield client
