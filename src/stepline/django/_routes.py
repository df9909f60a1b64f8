"""``runs_urls()``: the web-app kit's routes (start, status, cancel, result, events) in Django."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from asgiref.sync import sync_to_async
from django import http, urls
from django.views.decorators.csrf import csrf_exempt

from stepline import _errors
from stepline._serving import bodies
from stepline._webkit import routes as _webkit
from stepline.django import _serve

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._definition.function import Function

__all__ = ["runs_urls"]


def runs_urls(
    client: Client,
    functions: Sequence[Function],
    *,
    authorize: _webkit.Authorize,
    inputs: Mapping[Function, Any] | None = None,
    async_mode: bool | None = None,
    poll_interval: float = 0.5,
    keepalive: float = 15.0,
    result_wait: float = 60.0,
) -> list[urls.URLPattern]:
    """Five csrf-exempt URL patterns to ``include()`` under any prefix::

        POST runs                   start {"function", "data", "idempotency_key"?}
        GET  runs/<run_id>          the run (names: stepline-runs, stepline-run...)
        POST runs/<run_id>/cancel
        GET  runs/<run_id>/result   ?wait=<s>
        GET  runs/<run_id>/events   Server-Sent Events until the run ends

    Args:
        client: the app's client (``stepline.django.get_client()`` with settings).
        functions: the functions these routes may start and show.
        authorize: decides each request from an ``AccessRequest`` whose ``request`` is
            the ``HttpRequest`` (``request.user``...). Required; ``stepline.web.allow_all``
            makes the routes public. Under the async views a plain ``def`` hook runs in
            a worker thread, so it may use the ORM.
        inputs: per function, a pydantic model the start's ``data`` must satisfy (422).
        async_mode: ``async def`` views; None picks them on Django 5+ when
            ``ASGI_APPLICATION`` is set (or from ``STEPLINE_ASYNC_MODE``), as ``serve`` does.
        poll_interval: seconds between progress checks of an events stream.
        keepalive: seconds between SSE keep-alive comments.
        result_wait: the longest ``?wait=`` a result request may hold.

    Raises:
        ConfigError: Django older than 4.2, async views asked for on Django 4.2, an
            ``async`` authorize hook with sync views, or no functions.
    """
    _serve.check_version()
    use_async = _serve.choose_async(async_mode)
    if _is_async(authorize) and not use_async:
        raise _errors.ConfigError(
            "authorize is async: it needs the async views (async_mode=True, Django 5+)"
        )
    hook = authorize
    if use_async and callable(authorize) and not _is_async(authorize):
        # a sync hook typically reads request.user: the ORM refuses the event loop's thread
        hook = sync_to_async(cast("Callable[[_webkit.AccessRequest], bool]", authorize))
    routes = _webkit.RunRoutes(
        client,
        functions,
        authorize=hook,
        inputs=inputs,
        poll_interval=poll_interval,
        keepalive=keepalive,
        result_wait=result_wait,
    )
    limit = _webkit.MAX_BODY

    if use_async:

        async def async_view(
            request: http.HttpRequest, run_id: str | None = None, suffix: str = ""
        ) -> http.HttpResponseBase:
            response = await routes.handle_async(_web_request(request, run_id, suffix, limit))
            stream = routes.chunks_async(response) if response.stream is not None else None
            return _to_django(response, stream)

        return _patterns(async_view)

    def view(
        request: http.HttpRequest, run_id: str | None = None, suffix: str = ""
    ) -> http.HttpResponseBase:
        response = routes.handle_sync(_web_request(request, run_id, suffix, limit))
        stream = routes.chunks_sync(response) if response.stream is not None else None
        return _to_django(response, stream)

    return _patterns(view)


def _is_async(authorize: _webkit.Authorize) -> bool:
    call = getattr(authorize, "__call__", None)  # noqa: B004 (an object's async __call__)
    return inspect.iscoroutinefunction(authorize) or inspect.iscoroutinefunction(call)


def _patterns(view: Callable[..., Any]) -> list[urls.URLPattern]:
    exempt = csrf_exempt(view)

    def run(suffix: str, name: str) -> urls.URLPattern:
        return urls.path(f"runs/<str:run_id>{suffix}", exempt, {"suffix": suffix}, name=name)

    return [
        urls.path("runs", exempt, name="stepline-runs"),
        run("", "stepline-run"),
        run("/cancel", "stepline-run-cancel"),
        run("/result", "stepline-run-result"),
        run("/events", "stepline-run-events"),
    ]


def _web_request(
    request: http.HttpRequest, run_id: str | None, suffix: str, limit: int
) -> _webkit.WebRequest:
    path = "/runs" if run_id is None else f"/runs/{run_id}{suffix}"
    full = request.path  # with SCRIPT_NAME and the include() prefixes: links point there
    return _webkit.WebRequest(
        method=request.method or "GET",
        path=path,
        query=request.GET.dict(),
        body=bodies.read_sync(request.read, limit),  # past the limit: the kit answers 413
        native=request,
        mount=full[: -len(path)] if full.endswith(path) else "",
        headers={name.lower(): value for name, value in request.headers.items()},
    )


def _to_django(response: _webkit.WebResponse, stream: Any) -> http.HttpResponseBase:
    if stream is not None:
        return http.StreamingHttpResponse(stream, status=response.status, headers=response.headers)
    return http.HttpResponse(response.body, status=response.status, headers=response.headers)
