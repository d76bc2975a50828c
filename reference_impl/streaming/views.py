"""The stream as a Django async view, to mount in a project's own `urls.py` under Django's ASGI app:

    path("", include("reference_impl.streaming.urls"))
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, StreamingHttpResponse

from .streams import Response, StreamError, StreamLimiter, open_stream

limiter = StreamLimiter()


# Methods are checked by hand: Django's require_http_methods only wraps async views from 5.0 on.


async def stream_view(request: HttpRequest, app_name: str, model_name: str, task_id: str) -> HttpResponse:
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    try:
        response = await open_stream(
            app_name, model_name, task_id, request.headers.get("Last-Event-ID"), limiter=limiter,
            accept=request.headers.get("Accept"), token=request.GET.get("token"), request=request,
        )
    except StreamError as exc:
        return HttpResponse(exc.message, status=exc.status, headers=exc.headers,
                            content_type="text/plain; charset=utf-8")
    if response.stream is None:
        return HttpResponse(response.body, status=response.status, headers=response.headers)
    return StreamingHttpResponse(_closing(response), status=response.status, headers=response.headers)


async def _closing(response: Response) -> AsyncIterator[bytes]:
    try:
        assert response.stream is not None
        async for chunk in response.stream:
            yield chunk
    finally:
        await response.aclose()


async def health_view(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    return HttpResponse("OK", content_type="text/plain")
