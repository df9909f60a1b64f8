"""``serve()``: the endpoint the engine calls, and the embedded engine in the app's lifespan."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

import anyio.to_thread
import fastapi
import fastapi.responses
from typing_extensions import Unpack

from stepline import _errors, asgi
from stepline._client import Client
from stepline._comm import CommHandler, CommResponse
from stepline._definition.function import Function
from stepline._serving import autosync, bodies, engine_option
from stepline._serving import options as _serve_options
from stepline.embedded import EmbeddedEngine, _announce

__all__ = ["ENGINE_PATH", "FRAMEWORK", "serve"]

FRAMEWORK = "fast_api"
#: Where ``serve(..., engine="embedded")`` mounts the engine's REST API and dashboard.
ENGINE_PATH = "/stepline"
logger = logging.getLogger("stepline.fastapi")


def serve(
    app: fastapi.FastAPI | fastapi.APIRouter,
    client: Client,
    functions: Sequence[Function],
    *,
    engine: Literal["embedded"] | EmbeddedEngine | None = None,
    database: str | None = None,
    **options: Unpack[_serve_options.ServeOptions],
) -> CommHandler:
    """Register async GET, PUT and POST routes at the serve path (default ``/api/inngest``).

    The routes are left out of the OpenAPI schema. Sync functions run on the handler's
    thread pool, async ones on the server's loop; ``streaming="force"`` answers POST with
    a 201 keepalive stream. The client is stored as ``app.state.stepline_client``.

    ``options`` are the adapters' ``ServeOptions`` (``serve_origin``, ``serve_path``,
    ``streaming``, ``thread_pool_max_workers``).

    Args:
        engine: ``"embedded"`` (or your own ``EmbeddedEngine``) runs the engine in this
            process on SQLite: it starts and stops with the app's lifespan, and its API
            and dashboard are mounted at ``/stepline`` (dev-mode clients, or
            ``expose_api=True``), and their URL logged once (at startup with
            ``serve_origin``, else at the first request).
        database: the embedded engine's database (default ``.stepline/embedded.db``).

    Raises:
        ConfigError: ``app`` is not a FastAPI app or ``APIRouter``, ``engine`` is
            asked of a router (it needs the app to mount on and to hook its lifespan),
            or ``serve`` was already called on ``app`` (serve every function at once).
    """
    if not isinstance(app, (fastapi.FastAPI, fastapi.APIRouter)):
        raise _errors.ConfigError(
            f"stepline.fastapi.serve needs a FastAPI app or APIRouter, not {type(app).__name__}"
        )
    if engine is not None and not isinstance(app, fastapi.FastAPI):
        raise _errors.ConfigError("stepline.fastapi.serve(engine=...) needs the FastAPI app")
    embedded = engine_option.resolve(client, functions, engine, database)
    handler = _serve_options.build_handler(client, functions, FRAMEWORK, options)
    _serve_options.check_unserved("stepline.fastapi.serve", app, handler.route_path, client.app_id)
    path = handler.route_path

    async def endpoint(request: fastapi.Request) -> fastapi.Response:
        limit = handler.max_body_bytes
        declared = bodies.declared_too_large(request.headers.get("content-length"), limit)
        if declared is not None:
            return _to_fastapi(bodies.too_large(handler, declared))
        # in chunks, stopping past the limit: ``request.body()`` would take it all first
        body = await bodies.read_async(request.stream(), limit)
        return _to_fastapi(await handler.handle(asgi.to_comm_request(request.scope, body)))

    _serve_options.mark_served(app, path, client.app_id)
    app.add_api_route(
        path,
        endpoint,
        methods=["GET", "POST", "PUT"],
        name=f"stepline:{path}",
        include_in_schema=False,
    )
    if isinstance(app, fastapi.FastAPI):
        app.state.stepline_client = client
        app.add_middleware(autosync.Middleware, handler=handler, embedded=embedded)
    if embedded is not None and isinstance(app, fastapi.FastAPI):
        app.state.stepline_engine = embedded
        shown = handler.serve_origin if embedded.expose_api else None
        app.router.lifespan_context = _running(embedded, app.router.lifespan_context, shown)
        if embedded.expose_api:
            app.mount(ENGINE_PATH, embedded.asgi_app(), name="stepline-engine")
            app.add_middleware(
                _announce.Middleware,
                engine=embedded,
                mount=ENGINE_PATH,
                serve_origin=handler.serve_origin,
            )
        else:
            logger.info("embedded engine API not mounted: production client without expose_api")
    return handler


def _to_fastapi(response: CommResponse) -> fastapi.Response:
    if response.stream is not None:
        return fastapi.responses.StreamingResponse(
            response.stream, status_code=response.status, headers=response.headers
        )
    return fastapi.Response(response.body, status_code=response.status, headers=response.headers)


def _running(engine: EmbeddedEngine, inner: Any, origin: str | None) -> Any:
    """The app's lifespan with the engine started around it (before your startup code).

    With ``origin`` (the configured ``serve_origin`` of a mounted engine), the
    dashboard's URL is logged once the engine serves.
    """

    @contextlib.asynccontextmanager
    async def merged(app: Any) -> AsyncIterator[Any]:
        await anyio.to_thread.run_sync(engine.start)
        engine.announce(origin, ENGINE_PATH)
        try:
            async with inner(app) as state:
                yield state
        finally:
            await anyio.to_thread.run_sync(engine.stop)

    return merged
