"""Who may read a task's stream (W7): signed, expiring stream URLs, and the model's ``can_stream`` hook.

Task ids are sequential integers and events carry application data, so a stream is not open to
whoever can count. A client is let in when

- its URL carries a token the application signed for this very task (`StreamTask.stream_url`,
  Django's signing with the project's SECRET_KEY) that has not expired (STREAMING_URL_MAX_AGE);
- or, in the Django view (which has the request, its user set by the auth middleware), the task's
  ``can_stream(request)`` says yes;
- or access is open (STREAMING_ACCESS = "open"): an explicit choice, for demos and trusted networks.

A refused client gets the very answer a missing task gets (`streams.open_stream` raises the same
404), so it cannot tell whether the task exists, and nothing of the task's data.
"""

from __future__ import annotations

import inspect
from typing import Any
from urllib.parse import quote

from asgiref.sync import sync_to_async
from django.core.signing import BadSignature, TimestampSigner

from .conf import streaming_settings

SALT = "streaming.stream-url"
"""Keeps stream tokens apart from anything else the project signs with the same SECRET_KEY."""


def _subject(label_lower: str, pk: Any) -> str:
    return f"{label_lower}:{pk}"


def sign(label_lower: str, pk: Any, signer: TimestampSigner | None = None) -> str:
    """A token that grants the stream of task `pk` of model `label_lower` ("app.model")."""
    return (signer or TimestampSigner(salt=SALT)).sign(_subject(label_lower, pk))


def stream_path(label_lower: str, object_name: str, pk: Any, token: str | None) -> str:
    app_label = label_lower.split(".", 1)[0]
    path = f"/stream/{app_label}/{object_name}/{pk}"
    return f"{path}?token={quote(token, safe='')}" if token is not None else path


def token_grants(token: str | None, label_lower: str, pk: Any) -> bool:
    """Whether `token` was signed for this task and is younger than STREAMING_URL_MAX_AGE."""
    if not token:
        return False
    try:
        subject = TimestampSigner(salt=SALT).unsign(token, max_age=streaming_settings().url_max_age)
    except BadSignature:  # tampered, made with another key, or expired (SignatureExpired)
        return False
    return subject == _subject(label_lower, pk)


async def permits(model: type, pk: int, token: str | None, request: Any = None) -> bool:
    """Whether the client asking for task `pk` of `model` may read its stream."""
    if streaming_settings().access == "open" or token_grants(token, model._meta.label_lower, pk):
        return True
    if request is None:  # the standalone server: a signed URL is the only way in
        return False
    row = await model._default_manager.filter(pk=pk).afirst()
    if row is None:
        return False
    hook = row.can_stream
    # A sync hook may touch the database (request.user.has_perm does): run it off the event loop.
    allowed = await hook(request) if inspect.iscoroutinefunction(hook) else await sync_to_async(hook)(request)
    return bool(allowed)
