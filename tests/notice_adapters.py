"""The reference telling a dropped client another way (`STREAMING_OVERFLOW_NOTICE`), read as it says.

The reference is correct whichever notice it sends; only the harness's reading of the notice
changes. Each adapter here runs it with one notice (its `django_settings`, applied when Django is
configured for it, as under ``streamspec verify --sut tests.notice_adapters:ErrorNoticeAdapter``;
in-process tests override the setting instead) and reads the notice with a `classify` hook of its
own, falling back to the reference's conventions for everything else. The standalone scripts of
such an adapter import this module for the hook (`streamspec.repro.adapter_ref`).
"""

from __future__ import annotations

from typing import Any

from harness.adapters.reference import ReferenceAdapter
from harness.conventions import classify as reference_classify


class ErrorNoticeAdapter(ReferenceAdapter):
    """A dropped client reads ``{"type": "error", "data": {"reason": "overflow", ...}}``."""

    name = "reference-error-notice"
    notice = "error"
    django_settings = {**ReferenceAdapter.django_settings, "STREAMING_OVERFLOW_NOTICE": notice}

    def classify(self, event: Any) -> str:
        kind, data = (event.get("type"), event.get("data")) if isinstance(event, dict) else (None, None)
        if kind == "error" and isinstance(data, dict) and data.get("reason") == "overflow":
            return "overflow"  # not the task's failure: the client was dropped
        return reference_classify(event)


class CloseNoticeAdapter(ReferenceAdapter):
    """A dropped client's queue gets a None, which ends its stream."""

    name = "reference-close-notice"
    notice = "close"
    django_settings = {**ReferenceAdapter.django_settings, "STREAMING_OVERFLOW_NOTICE": notice}

    def classify(self, event: Any) -> str:
        return "overflow" if event is None else reference_classify(event)
