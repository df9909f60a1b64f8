"""The ASGI/WSGI proxy: the engine's REST API and dashboard mounted under the web app.

Each request is read (bounded by the engine's own body limit: past it the engine answers
413), checked by the dev-mode guard, and forwarded in-process to the engine's loop.
"""

from __future__ import annotations

import dataclasses
import http
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from stepline import _errors
from stepline._serving import asgi_scope, bodies
from stepline._transport import effects
from stepline.embedded import _routing

if TYPE_CHECKING:
    from stepline._client import Client

__all__ = ["HOP", "Mounts", "forward"]

#: Hop-by-hop headers: never forwarded either way.
HOP = frozenset({"content-length", "transfer-encoding", "connection"})
_LIMIT = "max_body_bytes"  # the engine setting bounding a request body
_Refusal = tuple[int, list[tuple[bytes, bytes]], bytes]


class Mounts:
    """The engine's REST API and dashboard as apps to mount: ``asgi_app``, ``wsgi_app``.

    Args:
        requests: forwards the mounts' requests to the engine.
        client: the app's client; a production one needs an event key to be exposed.
        expose_api: the mounts may be built for a production client.
        engine_settings: the settings the engine starts with (its body limit, its mode
            and ``allow_public_bind`` for the dev-mode guard), read at each use.
    """

    def __init__(
        self,
        requests: _routing.Requests,
        client: Client,
        *,
        expose_api: bool,
        engine_settings: Callable[[], Mapping[str, Any]],
    ) -> None:
        self.requests = requests
        self.client = client
        self.expose_api = expose_api
        self._engine_settings = engine_settings

    def asgi_app(self) -> Callable[..., Awaitable[None]]:
        """The engine's REST API and dashboard as an ASGI app to mount (request/response)."""
        self._check_exposed()

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            refused = self._guard(scope["method"], scope.get("path", "/"), headers)
            if refused is None:
                body = await asgi_scope.read_body(receive, self._body_limit())
                path = asgi_scope.relative_path(scope) or "/"
                query = scope.get("query_string", b"").decode("latin-1")
                forwarded = forward(scope["method"], path, query, headers, body)
                refused = _answer(await self.requests.request_async(forwarded))
            status, out, content = refused
            await send({"type": "http.response.start", "status": status, "headers": out})
            await send({"type": "http.response.body", "body": content})

        return app

    def wsgi_app(self) -> Callable[[dict[str, Any], Any], Iterable[bytes]]:
        """The engine's REST API and dashboard as a WSGI app to mount."""
        self._check_exposed()

        def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            headers = {
                key[5:].replace("_", "-").lower(): value
                for key, value in environ.items()
                if key.startswith("HTTP_")
            }
            if environ.get("CONTENT_TYPE"):
                headers["content-type"] = environ["CONTENT_TYPE"]
            path = environ.get("PATH_INFO") or "/"
            answer = self._guard(environ["REQUEST_METHOD"], path, headers)
            if answer is None:
                body = _wsgi_body(environ, self._body_limit())
                query = environ.get("QUERY_STRING", "")
                forwarded = forward(environ["REQUEST_METHOD"], path, query, headers, body)
                answer = _answer(self.requests.request_sync(forwarded))
            status, out, content = answer
            start_response(_status_line(status), [(k.decode(), v.decode()) for k, v in out])
            return [content]

        return app

    def _body_limit(self) -> int:
        from stepline.engine import EngineSettings

        default = next(f.default for f in dataclasses.fields(EngineSettings) if f.name == _LIMIT)
        return int(self._engine_settings().get(_LIMIT, default))

    def _guard(
        self, method: str, path: str, headers: dict[str, str]
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
        """A dev-mode mount's answer to what a web page could forge (see ``engine._guard``)."""
        from stepline.engine._http import guard as _guard

        options = self._engine_settings()
        if options.get("mode", "dev") != "dev":
            return None  # production: the engine's own authentication applies
        allow_public = bool(options.get("allow_public_bind", False))
        return _guard.answer(method, path, headers, allow_public=allow_public)

    def _check_exposed(self) -> None:
        if not self.expose_api:
            raise _errors.ConfigError(
                "the embedded engine's API and dashboard are open to anyone who reaches them; "
                "they are mounted for a dev-mode client only, or with expose_api=True "
                "(put your own authentication in front)"
            )
        if not self.client.settings.is_dev and not self.client.settings.event_key:
            # with no event key the engine takes events under any key: open to the world
            raise _errors.ConfigError(
                "exposing a production embedded engine needs an event key on the client "
                "(event_key= or STEPLINE_EVENT_KEY), or anyone could send it events"
            )


def forward(
    method: str, path: str, query: str, headers: dict[str, str], body: bytes
) -> effects.HttpRequest:
    """A request from a mount (or an adapter's handler) addressed to the engine."""
    url = f"{_routing.ORIGIN}{path}" + (f"?{query}" if query else "")
    kept = {k: v for k, v in headers.items() if k not in HOP and k != "host"}
    return effects.HttpRequest(method, url, kept, body or None, timeout=90.0)


def _answer(response: effects.HttpResponse) -> _Refusal:
    pairs = [(k.encode(), v.encode()) for k, v in response.headers.items() if k not in HOP]
    pairs.append((b"content-length", str(len(response.body)).encode()))
    return response.status or 502, pairs, response.body


def _wsgi_body(environ: dict[str, Any], limit: int) -> bytes:
    # never past CONTENT_LENGTH (a WSGI server may not end the stream there), nor the limit
    text = str(environ.get("CONTENT_LENGTH") or "").strip()
    left = 0
    if text.isascii() and text.isdigit():  # no 5,000-digit int(): past 18 digits it is huge
        left = limit + 1 if len(text) > 18 else min(int(text), limit + 1)
    stream = environ["wsgi.input"]

    def read(size: int) -> bytes:
        nonlocal left
        chunk: bytes = stream.read(min(size, left)) if left > 0 else b""
        left -= len(chunk)
        return chunk

    return bodies.read_sync(read, limit)


def _status_line(status: int) -> str:
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:  # a status the standard library does not name
        return f"{status} Status"
