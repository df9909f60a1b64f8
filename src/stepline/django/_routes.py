"""``runs_urls()``: the web-app kit's routes (start, status, cancel, result, events) in Django."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from asgiref.sync import sync_to_async
from django import http, urls
from django.views.decorators.csrf import csrf_exempt
from typing_extensions import Unpack

from stepline import _errors
from stepline._serving import bodies
from stepline._webkit import kit
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
    async_mode: bool | None = None,
    **options: Unpack[kit.KitOptions],
) -> list[urls.URLPattern]:
    """Nine csrf-exempt URL patterns, under ``prefix`` and wherever they are ``include()``d::

        POST runs                   start {"function", "data", "idempotency_key"?}
        GET  runs/<run_id>          the run (names: stepline-runs, stepline-run...)
        POST runs/<run_id>/cancel
        GET  runs/<run_id>/result   ?wait=<s>
        GET  runs/<run_id>/events   Server-Sent Events until the run ends
        GET  approvals              pending approvals (durable agents' tool calls)
        GET  approvals/<id>         one (names: stepline-approvals, stepline-approval...)
        POST approvals/<id>/approve {"args"?}; approvals/<id>/reject {"reason"?}

    Args:
        client: the app's client (``stepline.django.get_client()`` with settings).
        functions: the functions these routes may start and show.
        authorize: decides each request from an ``AccessRequest`` whose ``request`` is
            the ``HttpRequest`` (``request.user``...). Required; ``stepline.web.allow_all``
            makes the routes public. Under the async views a plain ``def`` hook runs in
            a worker thread, so it may use the ORM.
        async_mode: ``async def`` views; None picks them when ``ASGI_APPLICATION`` is
            set (or from ``STEPLINE_ASYNC_MODE``), as ``serve`` does.
        **options: the kit's ``KitOptions``, the same for every framework (``inputs``,
            ``prefix``, ``poll_interval``, ``keepalive``, ``result_wait``,
            ``max_readers_per_run``, ``max_readers_per_caller``).

    Raises:
        ConfigError: Django older than 5.2, an ``async`` authorize hook with sync
            views, no functions, or a ``prefix`` not starting with ``/``.
    """
    _serve.check_version()
    use_async = _serve.choose_async(async_mode)
    if is_async_callable(authorize) and not use_async:
        raise _errors.ConfigError("authorize is async: it needs the async views (async_mode=True)")
    hook = authorize
    if use_async and callable(authorize) and not is_async_callable(authorize):
        # a sync hook typically reads request.user: the ORM refuses the event loop's thread
        hook = sync_to_async(cast("Callable[[_webkit.AccessRequest], bool]", authorize))
    routes, prefix = kit.run_routes("runs_urls", client, functions, hook, options)
    limit = _webkit.MAX_BODY

    if use_async:

        async def async_view(
            request: http.HttpRequest,
            run_id: str | None = None,
            suffix: str = "",
            under: str = "/runs",
        ) -> http.HttpResponseBase:
            web = _web_request(request, run_id, suffix, limit, under)
            response = await routes.handle_async(web)
            stream = routes.chunks_async(response) if response.stream is not None else None
            return _to_django(response, stream)

        return _patterns(async_view, prefix)

    def view(
        request: http.HttpRequest, run_id: str | None = None, suffix: str = "", under: str = "/runs"
    ) -> http.HttpResponseBase:
        response = routes.handle_sync(_web_request(request, run_id, suffix, limit, under))
        stream = routes.chunks_sync(response) if response.stream is not None else None
        return _to_django(response, stream)

    return _patterns(view, prefix)


def is_async_callable(authorize: _webkit.Authorize) -> bool:
    """Whether ``authorize`` (a function, or an object with ``__call__``) is async: an async
    hook needs an async view, and a sync hook a sync one."""
    call = getattr(authorize, "__call__", None)  # noqa: B004 (an object's async __call__)
    return inspect.iscoroutinefunction(authorize) or inspect.iscoroutinefunction(call)


def _patterns(view: Callable[..., Any], prefix: str) -> list[urls.URLPattern]:
    exempt = csrf_exempt(view)
    runs = f"{prefix.lstrip('/')}/runs" if prefix else "runs"

    def run(suffix: str, name: str) -> urls.URLPattern:
        return urls.path(f"{runs}/<str:run_id>{suffix}", exempt, {"suffix": suffix}, name=name)

    approvals = f"{prefix.lstrip('/')}/approvals" if prefix else "approvals"

    def approval(suffix: str, name: str) -> urls.URLPattern:
        kwargs = {"suffix": suffix, "under": "/approvals"}
        return urls.path(f"{approvals}/<str:run_id>{suffix}", exempt, kwargs, name=name)

    return [
        urls.path(runs, exempt, name="stepline-runs"),
        run("", "stepline-run"),
        run("/cancel", "stepline-run-cancel"),
        run("/result", "stepline-run-result"),
        run("/events", "stepline-run-events"),
        urls.path(approvals, exempt, {"under": "/approvals"}, name="stepline-approvals"),
        approval("", "stepline-approval"),
        approval("/approve", "stepline-approval-approve"),
        approval("/reject", "stepline-approval-reject"),
    ]


def _web_request(
    request: http.HttpRequest, run_id: str | None, suffix: str, limit: int, under: str
) -> _webkit.WebRequest:
    # under "/approvals", ``run_id`` is the approval's id
    path = under if run_id is None else f"{under}/{run_id}{suffix}"
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
