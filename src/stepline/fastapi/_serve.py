"""``serve()``: the endpoint the engine calls, and the embedded engine in the app's lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Literal

import anyio.to_thread
import fastapi
import fastapi.responses
from typing_extensions import Unpack

from stepline import _errors, asgi
from stepline._client import Client
from stepline._comm import CommHandler, CommRequest, CommResponse
from stepline._definition.function import Function
from stepline._serving import autosync, bodies
from stepline._serving import options as _serve_options
from stepline._serving import serve as _serve
from stepline.embedded import EmbeddedEngine, _announce

__all__ = ["ADAPTER", "ENGINE_PATH", "FRAMEWORK", "serve"]

FRAMEWORK = "fast_api"
#: Where ``serve(..., engine="embedded")`` mounts the engine's REST API and dashboard.
ENGINE_PATH = "/stepline"
ADAPTER = _serve.Adapter("stepline.fastapi", FRAMEWORK)


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

    def mount_engine(_serving: _serve.Serving, engine: EmbeddedEngine) -> None:
        assert isinstance(app, fastapi.FastAPI)
        app.mount(ENGINE_PATH, engine.asgi_app(), name="stepline-engine")

    def mount(serving: _serve.Serving) -> CommHandler:
        handler = serving.handler

        async def endpoint(request: fastapi.Request) -> fastapi.Response:
            length = request.headers.get("content-length")
            return _to_fastapi(await serving.answer_async(length, _reader(request)))

        app.add_api_route(
            serving.path,
            endpoint,
            methods=["GET", "POST", "PUT"],
            name=f"stepline:{serving.path}",
            include_in_schema=False,
        )
        if isinstance(app, fastapi.FastAPI):
            app.state.stepline_client = client
            app.add_middleware(autosync.Middleware, handler=handler, embedded=serving.engine)
            own = serving.engine
            if own is not None:
                app.state.stepline_engine = own
                shown = handler.serve_origin if own.expose_api else None
                app.router.lifespan_context = _running(own, app.router.lifespan_context, shown)
                if own.expose_api:  # outermost: a request to the engine's paths says it too
                    app.add_middleware(
                        _announce.AnnounceMiddleware,
                        engine=own,
                        mount=ENGINE_PATH,
                        serve_origin=handler.serve_origin,
                    )
        return handler

    return _serve.serve(
        ADAPTER,
        client,
        functions,
        options,
        mount=mount,
        app=app,
        engine=engine,
        database=database,
        mount_engine=mount_engine,
    )


def _reader(request: fastapi.Request) -> Callable[[int], Awaitable[CommRequest]]:
    async def read(limit: int) -> CommRequest:
        # in chunks, stopping past the limit: ``request.body()`` would take it all first
        body = await bodies.read_async(request.stream(), limit)
        return asgi.to_comm_request(request.scope, body)

    return read


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
