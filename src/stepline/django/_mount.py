"""The embedded engine's REST API and dashboard under a Django prefix, and the settings' URLs."""

from __future__ import annotations

import io
import weakref
from collections.abc import Callable
from typing import Any

from django import http, urls
from django.core.signals import request_started
from django.views.decorators.csrf import csrf_exempt

from stepline.django import _mounts, _runtime, _serve
from stepline.embedded import EmbeddedEngine, _announce

__all__ = ["default_urls", "engine_urls"]

_HOP = frozenset({"connection", "transfer-encoding", "content-length"})


def engine_urls(
    engine: EmbeddedEngine | None = None, *, async_mode: bool | None = None
) -> list[urls.URLPattern]:
    """The embedded engine's REST API and dashboard, to ``include()`` under a prefix.

    Example:
        >>> path("stepline/", include(stepline.django.engine_urls()))

    Args:
        engine: the engine; default ``get_engine()`` (settings ``ENGINE = "embedded"``).
        async_mode: as for ``serve``.

    The dashboard's URL is logged once, at the first request after they are mounted.

    Raises:
        ConfigError: a production client without ``expose_api`` (``EXPOSE_API``): anyone
            reaching these URLs can start and cancel runs.
    """
    engine = engine or _runtime.get_engine()
    if _serve.choose_async(async_mode):
        app = engine.asgi_app()  # refuses an unexposed engine here, not per request

        async def async_view(request: http.HttpRequest, path: str) -> http.HttpResponse:
            sent: list[dict[str, Any]] = []
            body = request.body

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)

            await app(_scope(request, path), receive, send)
            start = sent[0]
            headers = [(k.decode(), v.decode()) for k, v in start["headers"]]
            content = b"".join(m.get("body", b"") for m in sent[1:])
            return _response(start["status"], headers, content)

        return _announced(engine, csrf_exempt(async_view))

    wsgi = engine.wsgi_app()

    def view(request: http.HttpRequest, path: str) -> http.HttpResponse:
        answer: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]]) -> None:
            answer.update(status=int(status.split(maxsplit=1)[0]), headers=headers)

        content = b"".join(wsgi(_environ(request, path), start_response))
        return _response(answer["status"], answer["headers"], content)

    return _announced(engine, csrf_exempt(view))


def default_urls() -> list[urls.URLPattern]:
    """The URLs ``settings.STEPLINE`` calls for (``include("stepline.django.urls")``).

    With a separate engine: ``serve()`` for the settings' client and functions. With
    ``"ENGINE": "embedded"``: the engine's API and dashboard when they may be exposed
    (a dev client, or ``EXPOSE_API``), else nothing (the engine runs in-process anyway).
    """
    runtime = _runtime.current()
    if runtime.config.embedded:
        engine = runtime.engine()
        return engine_urls(engine) if engine.expose_api else []
    return [_serve.serve(runtime.client(), runtime.functions())]


def _announced(engine: EmbeddedEngine, view: Callable[..., Any]) -> list[urls.URLPattern]:
    """``view``'s catch-all pattern; the first request after it is mounted logs its URL.

    Where it is mounted shows only in the project's URL conf, which Django loads at the
    first request, not by the time apps are ready: so even with ``serve_origin`` known,
    the first request says it. The receiver holds the view and the engine weakly and
    disconnects once the URL is logged (or they are gone: a URL conf reloaded).
    """
    views, engines = weakref.ref(view), weakref.ref(engine)
    configured = engine.client.settings.serve_origin

    def receive(sender: object, environ: Any = None, scope: Any = None, **_: Any) -> None:
        mounted, own = views(), engines()
        if mounted is None or own is None or own.announced:
            request_started.disconnect(receive)
            return
        if configured:
            origin: str | None = configured
        elif environ is not None:
            origin = _wsgi_origin(environ)
        elif scope is not None:  # the script prefix (root_path) is in the located path
            origin = _announce.asgi_origin(scope, root_path=False)
        else:
            return
        path = _mounts.locate(mounted, catch_all=True)
        if path is not None and own.announce(origin, path):
            request_started.disconnect(receive)

    request_started.connect(receive, weak=False)
    return [urls.re_path(r"^(?P<path>.*)$", view, name="stepline-engine")]


def _wsgi_origin(environ: dict[str, Any]) -> str:
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST")
    if not host:
        port = str(environ.get("SERVER_PORT", ""))
        default = port in ("", "443" if scheme == "https" else "80")
        host = str(environ.get("SERVER_NAME", "localhost")) + ("" if default else f":{port}")
    return f"{scheme}://{host}"


def _environ(request: http.HttpRequest, path: str) -> dict[str, Any]:
    body = request.body
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method or "GET",
        "PATH_INFO": f"/{path}",
        "QUERY_STRING": request.META.get("QUERY_STRING", ""),
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    for name, value in request.headers.items():
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            environ[key] = value
        elif key != "CONTENT_LENGTH":
            environ[f"HTTP_{key}"] = value
    return environ


def _scope(request: http.HttpRequest, path: str) -> dict[str, Any]:
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in request.headers.items()
    ]
    return {
        "type": "http",
        "method": request.method or "GET",
        "path": f"/{path}",
        "root_path": "",
        "query_string": request.META.get("QUERY_STRING", "").encode("latin-1"),
        "headers": headers,
    }


def _response(status: int, headers: list[tuple[str, str]], content: bytes) -> http.HttpResponse:
    response = http.HttpResponse(content, status=status)
    for name, value in headers:
        if name.lower() == "set-cookie":  # may repeat: Django keeps cookies apart
            response.cookies.load(value)
        elif name.lower() not in _HOP:
            response[name] = value
    return response
