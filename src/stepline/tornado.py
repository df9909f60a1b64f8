"""Serve Stepline functions, and the web-app kit's run routes, from a Tornado application.

Example:
    >>> app = tornado.web.Application()
    >>> stepline.tornado.serve(app, client, [welcome])
    >>> app.add_handlers(r".*", stepline.tornado.runs_handlers(
    ...     client, [welcome], authorize=stepline.web.allow_all, prefix="/api/runs"))

``serve`` records the client in ``app.settings["stepline_client"]`` (read it from a handler
with ``ClientMixin``); ``await shutdown(app)`` stops what ``serve`` started.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import tornado.iostream
import tornado.routing
import tornado.web

from stepline import _errors, _webkit, embedded
from stepline._comm import CommHandler, CommRequest, CommResponse

if TYPE_CHECKING:
    import tornado.httputil

    from stepline._client import Client
    from stepline._function import Function

__all__ = ["CLIENT_SETTING", "ENGINE_SETTING", "ClientMixin", "runs_handlers", "serve", "shutdown"]

FRAMEWORK = "tornado"
#: ``Application.settings`` keys ``serve`` fills: the shared client and the embedded engine.
CLIENT_SETTING = "stepline_client"
ENGINE_SETTING = "stepline_engine"
_SERVED = "stepline_served"  # what ``shutdown`` closes
_HOP = {"content-length", "transfer-encoding", "connection"}
logger = logging.getLogger("stepline.tornado")


def serve(
    app: tornado.web.Application,
    client: Client,
    functions: Sequence[Function],
    *,
    serve_origin: str | None = None,
    serve_path: str | None = None,
    streaming: Literal["disable", "force"] | None = None,
    thread_pool_max_workers: int | None = None,
    engine: Literal["embedded"] | embedded.EmbeddedEngine | None = None,
    database: str | None = None,
    engine_path: str | None = "/stepline",
) -> CommHandler:
    """Add one handler for GET, PUT and POST at the serve path (default ``/api/inngest``).

    Requests are handled on the IOLoop: async functions run on it, sync functions on the
    handler's thread pool (``thread_pool_max_workers=0`` runs them inline, blocking the
    loop). With ``streaming="force"`` a POST answers 201 at once and keeps the connection
    alive until the result is written.

    The client goes to ``app.settings["stepline_client"]`` (unless one is there) for
    handlers to share (``ClientMixin``); ``await shutdown(app)`` closes it.

    Args:
        engine: ``"embedded"`` (or your own ``EmbeddedEngine``) runs the engine on a
            background thread of this process, on SQLite, calling the functions
            in-process: the serve path is then not mounted (nothing calls it). The engine
            starts on first use, is ``app.settings["stepline_engine"]``, and stops in
            ``shutdown``.
        database: the embedded engine's database (default ``STEPLINE_DATABASE_URL`` or
            ``.stepline/embedded.db``).
        engine_path: where the embedded engine's REST API and dashboard are mounted, for
            a dev-mode client or an engine built with ``expose_api=True``; None: nowhere.

    Raises:
        ConfigError: an option is invalid or a function belongs to another app.
    """
    handler = CommHandler(
        client=client,
        functions=functions,
        framework=FRAMEWORK,
        serve_origin=serve_origin,
        serve_path=serve_path,
        streaming=streaming,
        thread_pool_max_workers=thread_pool_max_workers,
    )
    if engine_path is not None and not engine_path.startswith("/"):
        raise _errors.ConfigError(f"engine_path must start with '/', got {engine_path!r}")
    own = _embedded(client, functions, engine, database)
    rules: list[Any] = []
    if own is None:
        rules.append((re.escape(handler.route_path), _SteplineHandler, {"handler": handler}))
    elif engine_path is not None and own.expose_api:
        mount = engine_path.rstrip("/")
        rules.append(
            (re.escape(mount) + r"(?:/.*)?", _EngineHandler, {"engine": own, "mount": mount})
        )
    elif engine_path is not None:
        logger.info("embedded engine API not mounted: the client is not in dev mode")
    app.add_handlers(r".*", rules)
    app.settings.setdefault(CLIENT_SETTING, client)
    if own is not None:
        app.settings[ENGINE_SETTING] = own
    app.settings.setdefault(_SERVED, []).append(_Served(handler, client, own))
    return handler


def _embedded(
    client: Client, functions: Sequence[Function], engine: object, database: str | None
) -> embedded.EmbeddedEngine | None:
    if engine is None or isinstance(engine, embedded.EmbeddedEngine):
        if database is not None:
            raise _errors.ConfigError("database= goes with engine='embedded' only")
        if engine is not None and engine.client is not client:
            raise _errors.ConfigError("the EmbeddedEngine was built for another client")
        return engine
    if engine == "embedded":
        return embedded.EmbeddedEngine(client, functions, database=database)
    raise _errors.ConfigError(f"engine must be 'embedded' or an EmbeddedEngine, got {engine!r}")


async def shutdown(app: tornado.web.Application) -> None:
    """Undo ``serve``: stop embedded engines, release thread pools, close clients.

    Call it once the HTTP server has stopped (Tornado has no shutdown hook of its own).
    """
    for served in app.settings.pop(_SERVED, []):
        if served.engine is not None:
            await asyncio.to_thread(served.engine.stop)  # joins the engine thread
        served.handler.close()
        await served.client.aclose()


@dataclasses.dataclass(frozen=True)
class _Served:
    handler: CommHandler
    client: Client
    engine: embedded.EmbeddedEngine | None


class ClientMixin:
    """Mix into a ``RequestHandler``: ``self.stepline_client`` is the app's shared client."""

    application: tornado.web.Application

    @property
    def stepline_client(self) -> Client:
        """``self.application.settings["stepline_client"]``, as ``serve`` left it."""
        client: Client | None = self.application.settings.get(CLIENT_SETTING)
        if client is None:
            raise _errors.ConfigError(
                f"no {CLIENT_SETTING!r} in the Application settings: call "
                "stepline.tornado.serve(app, client, functions) or pass stepline_client="
            )
        return client


def runs_handlers(
    client: Client,
    functions: Sequence[Function],
    *,
    authorize: _webkit.Authorize,
    inputs: Mapping[Function, Any] | None = None,
    prefix: str = "/runs",
    **options: float,
) -> list[tornado.routing.Rule]:
    """The kit's run routes under ``prefix``, for ``Application(...)`` or ``add_handlers``.

    ``POST {prefix}`` starts one of ``functions``; ``GET {prefix}/{id}``, ``POST
    {prefix}/{id}/cancel``, ``GET {prefix}/{id}/result?wait=`` and ``GET
    {prefix}/{id}/events`` (Server-Sent Events) follow it. ``authorize`` (sync or async)
    receives an ``AccessRequest`` whose ``request`` is the ``RequestHandler``, so
    ``access.request.current_user`` works. An app with ``xsrf_cookies=True`` keeps checking
    its XSRF token on the POSTs. ``inputs`` (pydantic models per function) and ``options``
    (``poll_interval``, ``keepalive``, ``result_wait``) go to ``RunRoutes``.

    Raises:
        ConfigError: no ``authorize``, no functions, or ``prefix`` not ending in ``/runs``.
    """
    if not prefix.startswith("/") or not prefix.rstrip("/").endswith("/runs"):
        raise _errors.ConfigError(f"prefix must start with '/' and end with '/runs': {prefix!r}")
    routes = _webkit.RunRoutes(client, functions, authorize=authorize, inputs=inputs, **options)
    collection = prefix.rstrip("/")
    pattern = re.escape(collection) + r"(?:/.*)?"
    kwargs = {"routes": routes, "collection": collection}
    return [tornado.routing.Rule(tornado.routing.PathMatches(pattern), _RunsHandler, kwargs)]


class _RunsHandler(tornado.web.RequestHandler):
    def initialize(self, routes: _webkit.RunRoutes, collection: str) -> None:
        self.routes, self.collection = routes, collection
        self._pump: asyncio.Future[None] | None = None
        self._gone = False

    def compute_etag(self) -> str | None:
        return None  # a run's state must never be answered with 304

    def on_connection_close(self) -> None:
        self._gone = True
        if self._pump is not None:
            self._pump.cancel()  # stop polling the engine for a reader who left

    async def get(self) -> None:
        request = self.request
        response = await self.routes.handle_async(
            _webkit.WebRequest(
                method=request.method or "GET",
                path="/runs" + request.path[len(self.collection) :],
                query={name: self.get_query_argument(name) for name in request.query_arguments},
                body=request.body,
                native=self,
                mount=self.collection[: -len("/runs")],
            )
        )
        self.set_status(response.status)
        for name, value in response.headers.items():
            self.set_header(name, value)
        if response.stream is None:
            self.finish(response.body)
            return
        if self._gone:  # the reader left while the run was looked up
            return
        self._pump = asyncio.ensure_future(self._write_events(response))
        try:
            await self._pump
        except asyncio.CancelledError:
            if not self._gone:
                raise

    post = put = patch = delete = get  # RunRoutes answers a wrong method with a JSON 405

    async def _write_events(self, response: _webkit.WebResponse) -> None:
        chunks = self.routes.chunks_async(response)
        try:
            async for chunk in chunks:
                self.write(chunk)
                await self.flush()
        except tornado.iostream.StreamClosedError:
            pass  # the reader left between two events
        finally:
            aclose = getattr(chunks, "aclose", None)  # an async generator: stop its polling
            if aclose is not None:
                await aclose()


class _EngineHandler(tornado.web.RequestHandler):
    """The embedded engine's REST API and dashboard, forwarded in-process."""

    def initialize(self, engine: embedded.EmbeddedEngine, mount: str) -> None:
        self.engine, self.mount = engine, mount

    def check_xsrf_cookie(self) -> None:
        """The engine guards itself: bearer keys, and a CSRF header for dashboard sessions."""

    def compute_etag(self) -> str | None:
        return None  # the engine sets its own ETags (dashboard assets)

    async def get(self) -> None:
        request = self.request
        if request.path == self.mount:  # the dashboard's URLs are relative to "{mount}/"
            self.redirect(f"{self.mount}/" + (f"?{request.query}" if request.query else ""))
            return
        headers = {name.lower(): value for name, value in request.headers.get_all()}
        headers.setdefault("x-forwarded-proto", request.protocol)  # for Secure cookies
        path = request.path[len(self.mount) :]
        method = request.method or "GET"
        forwarded = embedded._proxy(method, path, request.query, headers, request.body)
        response = await self.engine.request_async(forwarded)
        self.set_status(response.status or 502)
        for name, value in response.headers.items():
            if name not in _HOP:
                self.set_header(name, value)
        body = response.body if response.status else (response.error or "").encode()
        if body:  # Tornado refuses even an empty write on a 304
            self.write(body)
        self.finish()

    post = put = delete = patch = get


class _SteplineHandler(tornado.web.RequestHandler):
    """One view for every method; other methods get Tornado's own 405."""

    def initialize(self, handler: CommHandler) -> None:
        self.comm = handler

    def check_xsrf_cookie(self) -> None:
        """The engine authenticates with signatures, never with an XSRF cookie."""

    def compute_etag(self) -> str | None:
        return None  # inspection answers must not be cached or turned into 304s

    async def get(self) -> None:
        await _to_tornado(self, await self.comm.handle(_from_tornado(self.request)))

    post = put = get


def _from_tornado(request: tornado.httputil.HTTPServerRequest) -> CommRequest:
    return CommRequest.build(
        method=request.method or "GET",
        url=request.full_url(),
        headers=request.headers.get_all(),
        body=request.body,
    )


async def _to_tornado(view: tornado.web.RequestHandler, response: CommResponse) -> None:
    view.set_status(response.status)
    for name, value in response.headers.items():
        view.set_header(name, value)
    if response.stream is None:
        view.write(response.body)
        return
    try:
        async for chunk in response.stream:
            view.write(chunk)
            await view.flush()
    except tornado.iostream.StreamClosedError:
        pass  # the engine hung up; it will retry the call
