"""Serve Stepline functions as a bare ASGI 3 app (framework ``asgi``), mountable anywhere.

Run it alone (``uvicorn module:app``), add it as a Starlette/FastAPI route
(``Route(path, app)``; a ``Mount`` would redirect the bare path to ``path/``), a
Litestar mount (``asgi(path, is_mount=True)``) or a Hypercorn ``DispatcherMiddleware``
entry (Quart). It answers at its route path (relative to ``root_path``) and at the root
of its mount point; anything else gets 404. ``stepline.fastapi`` and
``stepline.starlette`` share its ASGI conversions.

``runs_app`` is the web-app kit (``stepline.web``) as a bare ASGI app: mount it where the
run routes should live (``Mount("/api", runs_app(...))`` answers ``/api/runs...``).
``durable`` makes a handler a durable endpoint as a bare ASGI app (``DurableApp``).

Example:
    >>> app = stepline.asgi.serve(client, [welcome])
    >>> runs = stepline.asgi.runs_app(client, [welcome], authorize=check)
    >>> pay = stepline.asgi.durable(client)(pay_order)  # Route("/pay/{id}", pay, ...)
"""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio
from typing_extensions import Unpack

from stepline._comm import CommHandler, CommRequest, CommResponse
from stepline._endpoints.endpoint import Endpoint, EndpointArgs
from stepline._serving import asgi_scope
from stepline._serving import options as _serve_options
from stepline._serving import serve as _serve
from stepline._webkit import kit as _kit
from stepline._webkit import routes as _webkit
from stepline._webkit.kit import KitOptions
from stepline._webkit.routes import Authorize, RunRoutes, WebRequest, WebResponse

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._definition.function import Function

FRAMEWORK = "asgi"
ADAPTER = _serve.Adapter("stepline.asgi", FRAMEWORK)

Scope = asgi_scope.Scope
Message = asgi_scope.Message
Receive = asgi_scope.Receive
Send = asgi_scope.Send
read_body = asgi_scope.read_body


class ASGIApp:
    """An ASGI 3 application serving one ``CommHandler`` (``http`` and ``lifespan``)."""

    def __init__(self, handler: CommHandler) -> None:
        self.handler = handler
        self._serving = _serve.Serving(handler)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one ASGI connection."""
        if scope["type"] == "lifespan":
            self._serving.autosync(None)  # dev mode, with serve_origin: register
            await _lifespan(self.handler.close, receive, send, self.handler.client)
        elif scope["type"] != "http":
            raise ValueError(f"stepline serves http, not {scope['type']!r}")
        elif not _serves(scope, self.handler.route_path):
            await send_response(CommResponse(404, {"content-type": "text/plain"}, b""), send)
        else:
            length = dict(scope["headers"]).get(b"content-length", b"").decode("latin-1")

            async def read(limit: int) -> CommRequest:
                return to_comm_request(scope, await read_body(receive, limit))

            await send_response(await self._serving.answer_async(length, read), send)


def serve(
    client: Client,
    functions: Sequence[Function],
    **options: Unpack[_serve_options.ServeOptions],
) -> ASGIApp:
    """Build an ASGI app serving GET, PUT and POST (its ``handler`` is the ``CommHandler``).

    Sync functions run on the handler's thread pool, async ones on the server's loop;
    ``streaming="force"`` answers POST with a 201 keepalive stream. Lifespan shutdown
    closes the handler.
    """
    return _serve.serve(
        ADAPTER, client, functions, options, mount=lambda serving: ASGIApp(serving.handler)
    )


class RunsApp:
    """The web-app kit's run routes as an ASGI 3 app; ``authorize`` gets the ASGI scope.

    The routes answer under the mount point (``root_path``) and ``prefix``; wrap the
    scope for headers and the like, e.g. ``starlette.requests.Request(access.request).headers``.
    """

    def __init__(self, routes: RunRoutes, prefix: str = "") -> None:
        self.routes, self.prefix = routes, prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one ASGI connection."""
        if scope["type"] == "lifespan":
            await _lifespan(None, receive, send)
            return
        if scope["type"] != "http":
            raise ValueError(f"stepline serves http, not {scope['type']!r}")
        body = await read_body(receive, _webkit.MAX_BODY)
        query = urllib.parse.parse_qsl(scope.get("query_string", b"").decode("latin-1"), True)
        path, mount = asgi_scope.relative_path(scope) or "/", scope.get("root_path", "")
        if self.prefix:
            under = path == self.prefix or path.startswith(self.prefix + "/")
            # outside the prefix: a path the routes answer 404 to
            path, mount = (path[len(self.prefix) :], mount + self.prefix) if under else ("/", mount)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request = WebRequest(
            scope["method"], path, dict(query), body, native=scope, mount=mount, headers=headers
        )
        await send_web(self.routes, await self.routes.handle_async(request), receive, send)


def runs_app(
    client: Client,
    functions: Sequence[Function],
    *,
    authorize: Authorize,
    **options: Unpack[KitOptions],
) -> RunsApp:
    """Build the kit's ASGI app: start, status, cancel, result and events of ``functions``.

    ``authorize`` (sync or async) decides every request. ``options`` are the kit's
    ``KitOptions``, the same for every framework (``inputs``, ``prefix``,
    ``poll_interval``, ``keepalive``, ``result_wait``, ``max_readers_per_run``,
    ``max_readers_per_caller``).

    Raises:
        ConfigError: no ``authorize``, no functions, or a ``prefix`` not starting with ``/``.
    """
    routes, prefix = _kit.run_routes("runs_app", client, functions, authorize, options)
    return RunsApp(routes, prefix)


class DurableApp:
    """A durable endpoint as an ASGI 3 app (``http`` and ``lifespan``); see ``durable``."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one ASGI connection."""
        if scope["type"] == "lifespan":
            await _lifespan(None, receive, send)
            return
        if scope["type"] != "http":
            raise ValueError(f"stepline serves http, not {scope['type']!r}")
        body = await read_body(receive, self.endpoint.max_body)  # past it, the endpoint: 413
        query = urllib.parse.parse_qsl(scope.get("query_string", b"").decode("latin-1"), True)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path = asgi_scope.full_path(scope)
        web = WebRequest(scope["method"], path, dict(query), body, native=scope, headers=headers)
        reply = await self.endpoint.handle_async(web, dict(scope.get("path_params") or {}))
        await _send(reply.status, reply.headers, reply.body, None, send)


def durable(
    client: Client, **options: Unpack[EndpointArgs]
) -> Callable[[Callable[..., Any]], DurableApp]:
    """Make the decorated handler a durable endpoint: an ASGI app to route or mount.

    The handler takes an ``EndpointContext`` (``async def``, run on the server's loop) or
    a ``SyncEndpointContext`` (``def``, run in a thread) and returns a JSON-able value or
    an ``EndpointResponse``. Steps run in the request, each recorded before the next; a
    sleep, a wait or a retry answers 202 with ``Location`` (the kit's result route,
    ``runs_app`` mounted at ``run_routes``) and the engine finishes the run.

    The app answers every method at every path it is given: restrict it with the router
    (Starlette ``Route(path, app, methods=["POST"])``). The router's path parameters
    (``scope["path_params"]``, as Starlette sets them) reach the handler as
    ``ctx.request.path_params``; ``ctx.request.path`` is the full path, mount included.
    Its ``authorize`` and ``caller`` get the ASGI scope. The app keeps the ``Endpoint``
    as ``endpoint`` (its function: ``app.endpoint.function``, for ``runs_app``).

    Example:
        >>> @stepline.asgi.durable(client, retries=3)
        ... async def pay(ctx: stepline.EndpointContext) -> dict[str, str]:
        ...     order_id = ctx.request.path_params["order_id"]
        ...     return {"charge": await ctx.step.run("charge", charge_card, order_id)}
        >>> routes = [Route("/orders/{order_id}/pay", pay, methods=["POST"])]

    Args:
        client: the app's client (its serve endpoint or embedded engine runs the function).
        **options: ``Endpoint``'s options (``id``, ``authorize``, ``budget``,
            ``run_routes``, ``keep_headers``, ``keep_query``, ``max_body``, ``caller``,
            ``cross_site``) and the function's
            (``retries``, ``concurrency``, ``throttle``...).

    Raises:
        ConfigError: an invalid option.
    """

    def decorate(handler: Callable[..., Any]) -> DurableApp:
        return DurableApp(Endpoint(client, handler, **options))

    return decorate


async def send_web(routes: RunRoutes, response: WebResponse, receive: Receive, send: Send) -> None:
    """Send a kit answer; a stream stops polling the engine as soon as the client leaves."""
    chunks = None if response.stream is None else routes.chunks_async(response)
    await _send(response.status, response.headers, response.body, chunks, send, receive=receive)


def to_comm_request(scope: Scope, body: bytes) -> CommRequest:
    """An ``http`` scope and its body as a ``CommRequest`` (the URL as the client saw it)."""
    pairs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
    host = dict(pairs).get("host") or _server_netloc(scope)
    path = urllib.parse.quote(asgi_scope.full_path(scope))
    query = scope.get("query_string", b"").decode("latin-1")
    url = urllib.parse.urlunsplit((scope.get("scheme", "http"), host, path, query, ""))
    return CommRequest.build(method=scope["method"], url=url, headers=pairs, body=body)


async def send_response(response: CommResponse, send: Send) -> None:
    """Send a ``CommResponse``: one body, or the stream's chunks as they come."""
    await _send(response.status, response.headers, response.body, response.stream, send)


async def _send(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    chunks: AsyncIterable[bytes] | None,
    send: Send,
    *,
    receive: Receive | None = None,
) -> None:
    """The one response writer: ``body`` whole, or ``chunks`` as they come.

    With ``receive``, a stream stops as soon as the client disconnects.
    """
    pairs = [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()]
    if chunks is None:
        pairs.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": pairs})
    if chunks is None:
        await send({"type": "http.response.body", "body": body})
        return
    if receive is None:
        await _send_chunks(chunks, send)
        return
    async with anyio.create_task_group() as group:

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            group.cancel_scope.cancel()

        group.start_soon(watch)
        await _send_chunks(chunks, send)
        group.cancel_scope.cancel()


async def _send_chunks(chunks: AsyncIterable[bytes], send: Send) -> None:
    async for chunk in chunks:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _lifespan(
    close: Callable[[], None] | None, receive: Receive, send: Send, client: Client | None = None
) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if client is not None:  # this process serves: an embedded engine of yours starts
                from stepline._serving import engine_option

                await anyio.to_thread.run_sync(engine_option.start_for, client)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if close is not None:
                close()
            await send({"type": "lifespan.shutdown.complete"})
            return


def _serves(scope: Scope, route_path: str) -> bool:
    # the route path (relative to root_path) and the root of the mount point
    return asgi_scope.relative_path(scope).rstrip("/") in ("", route_path.rstrip("/"))


def _server_netloc(scope: Scope) -> str:
    host, port = scope.get("server") or ("localhost", None)
    host = f"[{host}]" if ":" in host else host
    default = {"http": 80, "https": 443}.get(scope.get("scheme", "http"))
    return host if port in (None, default) else f"{host}:{port}"
