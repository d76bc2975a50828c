"""Access control of the reference's streams: signed, expiring URLs for the standalone server, the
model's ``can_stream`` hook for the Django view, open access only when set. A refused client gets
the answer a missing task gets, and nothing of the task."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from django.core.signing import TimestampSigner, b62_encode
from django.test import RequestFactory, override_settings

from reference_impl.example.models import ExampleTask, SignalTask
from reference_impl.streaming.access import SALT, sign, stream_path
from reference_impl.streaming.conf import streaming_settings

pytestmark = pytest.mark.clause("W7")
http = pytest.mark.http
MISSING = 10**12


class _Expired(TimestampSigner):
    """Signs as if it were STREAMING_URL_MAX_AGE and a minute ago."""

    def timestamp(self) -> str:
        return b62_encode(int(time.time() - streaming_settings().url_max_age - 60))


def refused(task: Any, pk: Any) -> dict[str, str]:
    """Every way of asking for row `pk` of `task`'s model that the server must refuse."""
    label, name = task._meta.label_lower, type(task).__name__
    token = sign(label, pk)
    return {
        "no token": stream_path(label, name, pk, None),
        "a tampered token": stream_path(label, name, pk, token[:-2] + ("AA" if token[-2:] != "AA" else "BB")),
        "an expired token": stream_path(label, name, pk, sign(label, pk, _Expired(salt=SALT))),
        "another task's token": stream_path(label, name, pk, sign(label, int(pk) + 1)),
        "another key's token": stream_path(label, name, pk, TimestampSigner(key="not the key", salt=SALT)
                                           .sign(f"{label}:{pk}")),
        "a token for another model": stream_path(label, name, pk, sign("example.failingtask", pk)),
    }


@http
async def test_the_server_refuses_every_unsigned_or_bad_url_as_if_the_task_did_not_exist(
    client: httpx.AsyncClient,
) -> None:
    task = await SignalTask.objects.acreate()
    try:
        for how, path in refused(task, task.pk).items():
            answer = await client.get(path, headers={"Accept": "text/event-stream"})
            twin = await client.get(refused(task, MISSING)[how], headers={"Accept": "text/event-stream"})
            assert (answer.status_code, answer.text) == (404, "Task not found"), how
            assert (twin.status_code, twin.text) == (answer.status_code, answer.text), how
            assert "event-stream" not in answer.headers["content-type"], how
        # The signed URL, made by the application, lets its holder in.
        async with asyncio.timeout(5.0), client.stream("GET", task.stream_url()) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            first = await anext(response.aiter_lines())
            assert first.startswith(("id:", "event:", ":")), first
    finally:
        await SignalTask.release(task.pk)


def test_a_signed_url_names_its_task() -> None:
    task = ExampleTask(pk=41, message="x")
    url = task.stream_url("http://example.org")
    assert url.startswith("http://example.org/stream/example/ExampleTask/41?token=")
    assert "example.exampletask%3A41%3A" in url


async def _view(path: str, user: Any = None) -> Any:
    from reference_impl.streaming.views import stream_view

    request = RequestFactory().get(path, HTTP_ACCEPT="application/json")
    if user is not None:
        request.user = user
    _, _, app_name, model_name, task_id = request.path.split("/")
    return await stream_view(request, app_name, model_name, task_id)


async def test_the_django_view_asks_the_models_can_stream_with_the_requests_user(fresh_coordinator) -> None:
    task = await ExampleTask.objects.acreate(message="view")
    await task.mark_completed({"done": True})  # finished: the view answers at once, no stream to read
    plain = f"/stream/example/ExampleTask/{task.pk}"
    signed_in = SimpleNamespace(is_authenticated=True)
    anonymous = SimpleNamespace(is_authenticated=False)
    allowed = await _view(plain, signed_in)
    assert allowed.status_code == 200, allowed.content
    for user in (anonymous, None):  # None: no auth middleware, no request.user at all
        response = await _view(plain, user)
        missing = await _view(f"/stream/example/ExampleTask/{MISSING}", user)
        assert (response.status_code, response.content) == (404, b"Task not found")
        assert (missing.status_code, missing.content) == (404, b"Task not found")
    # A model that keeps the default hook lets nobody in without a signed URL, signed in or not.
    signal = await SignalTask.objects.acreate()
    assert (await _view(f"/stream/example/SignalTask/{signal.pk}", signed_in)).status_code == 404


async def test_open_access_is_an_explicit_setting(fresh_coordinator) -> None:
    task = await ExampleTask.objects.acreate(message="open")
    await task.mark_completed({"done": True})
    plain = f"/stream/example/ExampleTask/{task.pk}"
    assert (await _view(plain)).status_code == 404
    with override_settings(STREAMING_ACCESS="open"):
        assert (await _view(plain)).status_code == 200
    assert (await _view(plain)).status_code == 404
