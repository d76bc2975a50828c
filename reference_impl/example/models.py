"""Example tasks for demos and tests: the seed's `ExampleTask`, one that fails, one that waits."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from django.db import models

from reference_impl.streaming.models import StreamTask


class ExampleTask(StreamTask):
    """The seed's example: events ``start``, ``progress`` x3 about 10 ms apart, ``complete``."""

    message = models.CharField(max_length=255)

    async def process(self) -> dict[str, Any]:
        await self.send_event("start", {"message": self.message})
        for step in range(1, 4):
            await asyncio.sleep(0.01)
            await self.send_event("progress", {"step": step, "total": 3})
        result = {"status": "completed", "message": self.message}
        await self.send_event("complete", result)
        return result

    def can_stream(self, request: Any) -> bool:
        # The demo's rule for its Django view: any signed-in user (request.user is set by Django's
        # auth middleware). Without a signed URL, nobody else gets in.
        user = getattr(request, "user", None)
        return bool(user is not None and user.is_authenticated)


class FailingTask(StreamTask):
    """Sends ``start`` and then raises: the failure path (S6)."""

    message = models.CharField(max_length=255, default="boom")

    async def process(self) -> None:
        await self.send_event("start", {"message": self.message})
        await asyncio.sleep(0.01)
        raise RuntimeError(self.message)


class SignalTask(StreamTask):
    """Sends ``start``, then waits until released from outside, then completes.

    Released in-process by `release()`, or from another process by setting `released` in the
    database (the task polls it), so a test decides exactly when the task ends.
    """

    released = models.BooleanField(default=False)
    payload = models.JSONField(null=True, blank=True)
    poll_seconds: ClassVar[float] = 0.05
    _signals: ClassVar[dict[int, asyncio.Event]] = {}

    async def process(self) -> Any:
        await self.send_event("start", {"waiting": True})
        signal = self._signals.setdefault(self.pk, asyncio.Event())
        try:
            while not signal.is_set():
                try:
                    await asyncio.wait_for(signal.wait(), self.poll_seconds)
                except TimeoutError:
                    row = await type(self).objects.filter(pk=self.pk).values("released", "payload").afirst()
                    if row and row["released"]:
                        self.payload = row["payload"]
                        break
        finally:
            self._signals.pop(self.pk, None)
        await self.send_event("released", {"payload": self.payload})
        return self.payload

    @classmethod
    async def release(cls, pk: int, payload: Any = None) -> None:
        await cls.objects.filter(pk=pk).aupdate(released=True, payload=payload)
        signal = cls._signals.get(pk)
        if signal is not None:
            signal.set()
