"""Stepline in a FastAPI app: serve functions, run the engine in-process, expose run routes.

The framework reported is ``fast_api``, as inngest-py reports it.

Example:
    >>> app = fastapi.FastAPI(lifespan=stepline.fastapi.lifespan(client))
    >>> stepline.fastapi.serve(app, client, [process_order], engine="embedded")
    >>> app.include_router(
    ...     stepline.fastapi.runs_router(client, [process_order], authorize=check), prefix="/api"
    ... )
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any, Literal

import anyio.to_thread
import fastapi
import fastapi.responses

from stepline import _errors, asgi
from stepline._client import Client
from stepline._comm import CommHandler, CommResponse
from stepline._function import Function
from stepline._webkit import Authorize, RunRoutes, WebRequest, WebResponse
from stepline.embedded import EmbeddedEngine

__all__ = ["ENGINE_PATH", "ClientDep", "get_client", "lifespan", "runs_router", "serve"]

FRAMEWORK = "fast_api"
#: Where ``serve(..., engine="embedded")`` mounts the engine's REST API and dashboard.
ENGINE_PATH = "/stepline"
logger = logging.getLogger("stepline.fastapi")


def serve(
    app: fastapi.FastAPI | fastapi.APIRouter,
    client: Client,
    functions: Sequence[Function],
    *,
    serve_origin: str | None = None,
    serve_path: str | None = None,
    streaming: Literal["disable", "force"] | None = None,
    thread_pool_max_workers: int | None = None,
    engine: Literal["embedded"] | EmbeddedEngine | None = None,
    database: str | None = None,
) -> CommHandler:
    """Register async GET, PUT and POST routes at the serve path (default ``/api/inngest``).

    The routes are left out of the OpenAPI schema. Sync functions run on the handler's
    thread pool, async ones on the server's loop; ``streaming="force"`` answers POST with
    a 201 keepalive stream. The client is stored as ``app.state.stepline_client``.

    Args:
        engine: ``"embedded"`` (or your own ``EmbeddedEngine``) runs the engine in this
            process on SQLite: it starts and stops with the app's lifespan, and its API
            and dashboard are mounted at ``/stepline`` (dev-mode clients, or
            ``expose_api=True``).
        database: the embedded engine's database (default ``.stepline/embedded.db``).

    Raises:
        ConfigError: ``app`` is not a FastAPI app or ``APIRouter``, or ``engine`` is
            asked of a router (it needs the app to mount on and to hook its lifespan).
    """
    if not isinstance(app, (fastapi.FastAPI, fastapi.APIRouter)):
        raise _errors.ConfigError(
            f"stepline.fastapi.serve needs a FastAPI app or APIRouter, not {type(app).__name__}"
        )
    if engine is not None and not isinstance(app, fastapi.FastAPI):
        raise _errors.ConfigError("stepline.fastapi.serve(engine=...) needs the FastAPI app")
    embedded = _embedded(client, functions, engine, database, {})
    handler = CommHandler(
        client=client,
        functions=functions,
        framework=FRAMEWORK,
        serve_origin=serve_origin,
        serve_path=serve_path,
        streaming=streaming,
        thread_pool_max_workers=thread_pool_max_workers,
    )
    path = handler.route_path

    async def endpoint(request: fastapi.Request) -> fastapi.Response:
        comm = asgi.to_comm_request(request.scope, await request.body())
        return _to_fastapi(await handler.handle(comm))

    app.add_api_route(
        path,
        endpoint,
        methods=["GET", "POST", "PUT"],
        name=f"stepline:{path}",
        include_in_schema=False,
    )
    if isinstance(app, fastapi.FastAPI):
        app.state.stepline_client = client
    if embedded is not None and isinstance(app, fastapi.FastAPI):
        app.state.stepline_engine = embedded
        app.router.lifespan_context = _running(embedded, app.router.lifespan_context)
        if embedded.expose_api:
            app.mount(ENGINE_PATH, embedded.asgi_app(), name="stepline-engine")
        else:
            logger.info("embedded engine API not mounted: production client without expose_api")
    return handler


def lifespan(
    client: Client,
    *,
    functions: Sequence[Function] = (),
    engine: Literal["embedded"] | EmbeddedEngine | None = None,
    database: str | None = None,
    **engine_settings: Any,
) -> Callable[[fastapi.FastAPI], AbstractAsyncContextManager[None]]:
    """A lifespan for ``FastAPI(lifespan=...)`` owning the client (and an embedded engine).

    At startup it stores the client as ``app.state.stepline_client`` (what ``get_client``
    returns) and, with ``engine``, starts an embedded engine running ``functions`` (one
    that ``serve(..., engine=...)`` made for this client is reused). At shutdown it stops
    the engine and closes the client with ``await client.aclose()``. The engine is
    ``app.state.stepline_engine``. To combine this with your own lifespan, enter it inside
    yours: ``async with stepline_lifespan(app): ...; yield``.

    Args:
        engine: ``"embedded"`` or your own ``EmbeddedEngine``.
        database: the embedded engine's database; ``engine_settings`` are more
            ``EngineSettings`` fields (``poll_interval``...).

    Raises:
        ConfigError: ``engine`` is not ``"embedded"`` or an ``EmbeddedEngine``, or
            ``functions``, ``database`` or settings are given without it.
    """
    if engine is None and (functions or database or engine_settings):
        raise _errors.ConfigError("lifespan: functions/database/settings need engine='embedded'")
    if isinstance(engine, EmbeddedEngine) and engine.client is not client:
        raise _errors.ConfigError("lifespan: the EmbeddedEngine belongs to another client")
    _embedded(client, functions, engine, database, engine_settings, check_only=True)

    @contextlib.asynccontextmanager
    async def run(app: fastapi.FastAPI) -> AsyncIterator[None]:
        app.state.stepline_client = client
        embedded: EmbeddedEngine | None = None
        if engine is not None:
            embedded = getattr(app.state, "stepline_engine", None)
            if (
                isinstance(engine, EmbeddedEngine)
                or embedded is None
                or embedded.client is not client
            ):
                embedded = _embedded(client, functions, engine, database, engine_settings)
            app.state.stepline_engine = embedded
        try:
            if embedded is not None:
                await anyio.to_thread.run_sync(embedded.start)
            yield
        finally:
            if embedded is not None:
                await anyio.to_thread.run_sync(embedded.stop)
            await client.aclose()

    return run


def get_client(request: fastapi.Request) -> Client:
    """A dependency: the client that ``lifespan`` or ``serve`` stored on ``app.state``.

    Raises:
        ConfigError: neither ran for this app (or the lifespan has not started).
    """
    client = getattr(request.app.state, "stepline_client", None)
    if not isinstance(client, Client):
        raise _errors.ConfigError(
            "no Stepline client on app.state: use FastAPI(lifespan=stepline.fastapi.lifespan("
            "client)) or stepline.fastapi.serve(app, client, ...)"
        )
    return client


#: ``client: ClientDep`` in a path operation receives the shared client.
ClientDep = Annotated[Client, fastapi.Depends(get_client)]
_RunId = Annotated[str, fastapi.Path(description="The run's id.")]
_Wait = Annotated[
    str | None,
    fastapi.Query(description="Seconds to hold the request until the run ends (60 at most)."),
]


def runs_router(
    client: Client,
    functions: Sequence[Function],
    *,
    authorize: Authorize,
    inputs: Mapping[Function, Any] | None = None,
    prefix: str = "",
    **options: float,
) -> fastapi.APIRouter:
    """The web-app kit's five run routes as an ``APIRouter`` (see ``stepline.web``).

    ``POST /runs``, ``GET /runs/{run_id}``, ``POST /runs/{run_id}/cancel``,
    ``GET /runs/{run_id}/result`` and ``GET /runs/{run_id}/events`` (Server-Sent Events),
    under ``prefix`` and wherever the router is included. Every request goes through
    ``authorize`` (sync or async); ``inputs`` maps functions to pydantic models checked on
    start (422 with ``detail``) and documented in OpenAPI. ``options`` are more
    ``RunRoutes`` settings (``poll_interval``, ``keepalive``, ``result_wait``).
    """
    routes = RunRoutes(client, functions, authorize=authorize, inputs=inputs, **options)
    router = fastapi.APIRouter(prefix=prefix, tags=["runs"])

    async def start_run(request: fastapi.Request) -> fastapi.Response:
        return await _answer(routes, request, "/runs")

    async def get_run(request: fastapi.Request, run_id: _RunId) -> fastapi.Response:
        return await _answer(routes, request, f"/runs/{run_id}")

    async def cancel_run(request: fastapi.Request, run_id: _RunId) -> fastapi.Response:
        return await _answer(routes, request, f"/runs/{run_id}/cancel")

    async def run_result(
        request: fastapi.Request, run_id: _RunId, wait: _Wait = None
    ) -> fastapi.Response:
        return await _answer(routes, request, f"/runs/{run_id}/result")

    async def run_events(request: fastapi.Request, run_id: _RunId) -> fastapi.Response:
        return await _answer(routes, request, f"/runs/{run_id}/events")

    errors: dict[int | str, Any] = {code: {"description": t} for code, t in _ERRORS.items()}
    table: list[tuple[str, str, Callable[..., Any], str, dict[int | str, Any]]] = [
        ("POST", "", start_run, "Start a run", {201: {"description": "Started"}, 200: _SAME}),
        ("GET", "/{run_id}", get_run, "Get a run's status", {}),
        ("POST", "/{run_id}/cancel", cancel_run, "Cancel a run", {}),
        ("GET", "/{run_id}/result", run_result, "Get a run's result", {202: _RUNNING}),
        ("GET", "/{run_id}/events", run_events, "Follow a run (Server-Sent Events)", _SSE),
    ]
    for method, path, endpoint, summary, responses in table:
        router.add_api_route(
            f"/runs{path}",
            endpoint,
            methods=[method],
            summary=summary,
            name=f"stepline-runs:{endpoint.__name__}",
            response_class=fastapi.Response,
            status_code=201 if endpoint is start_run else 200,
            responses={**responses, **errors},
            openapi_extra=_start_body(routes, functions) if endpoint is start_run else None,
        )
    return router


async def _answer(routes: RunRoutes, request: fastapi.Request, path: str) -> fastapi.Response:
    full = asgi._full_path(request.scope)
    mount = full[: -len(path)] if full.endswith(path) else ""
    query = dict(request.query_params)
    body = await request.body()
    web = WebRequest(request.method, path, query, body, native=request, mount=mount)
    return _from_web(routes, await routes.handle_async(web))


def _from_web(routes: RunRoutes, response: WebResponse) -> fastapi.Response:
    if response.stream is not None:
        return fastapi.responses.StreamingResponse(
            routes.chunks_async(response), status_code=response.status, headers=response.headers
        )
    return fastapi.Response(response.body, status_code=response.status, headers=response.headers)


def _to_fastapi(response: CommResponse) -> fastapi.Response:
    if response.stream is not None:
        return fastapi.responses.StreamingResponse(
            response.stream, status_code=response.status, headers=response.headers
        )
    return fastapi.Response(response.body, status_code=response.status, headers=response.headers)


def _embedded(
    client: Client,
    functions: Sequence[Function],
    engine: Literal["embedded"] | EmbeddedEngine | None,
    database: str | None,
    settings: dict[str, Any],
    *,
    check_only: bool = False,
) -> EmbeddedEngine | None:
    """The engine ``engine=`` asks for (made unless ``check_only``); bad arguments raise."""
    if engine is None and (database or settings):
        raise _errors.ConfigError("database= and engine settings need engine='embedded'")
    if engine is None or isinstance(engine, EmbeddedEngine):
        if engine is not None and (database or settings):
            raise _errors.ConfigError("database/settings go to your own EmbeddedEngine")
        return engine
    if engine != "embedded":
        raise _errors.ConfigError(f"engine: want 'embedded' or an EmbeddedEngine, not {engine!r}")
    if check_only:
        return None
    return EmbeddedEngine(client, functions, database=database, **settings)


def _running(engine: EmbeddedEngine, inner: Any) -> Any:
    """The app's lifespan with the engine started around it (before your startup code)."""

    @contextlib.asynccontextmanager
    async def merged(app: Any) -> AsyncIterator[Any]:
        await anyio.to_thread.run_sync(engine.start)
        try:
            async with inner(app) as state:
                yield state
        finally:
            await anyio.to_thread.run_sync(engine.stop)

    return merged


def _start_body(routes: RunRoutes, functions: Sequence[Function]) -> dict[str, Any]:
    """OpenAPI for the start body: one variant per function, with its input model's schema."""
    variants = []
    for fn in functions:
        model = routes.inputs.get(fn.composite_id)
        schema = getattr(model, "model_json_schema", lambda: None)() or {"type": "object"}
        ids = {"type": "string", "enum": sorted({fn.composite_id, fn.id})}
        key = {"type": "string", "minLength": 1, "maxLength": 256}
        properties = {"function": ids, "data": _inlined(schema), "idempotency_key": key}
        variants.append({"type": "object", "required": ["function"], "properties": properties})
    body = variants[0] if len(variants) == 1 else {"oneOf": variants}
    content = {"application/json": {"schema": body}}
    return {"requestBody": {"required": True, "content": content}}


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with its ``$defs`` refs inlined: they would dangle inside an operation."""
    defs = schema.pop("$defs", {})

    def walk(node: Any, seen: frozenset[str]) -> Any:
        if isinstance(node, list):
            return [walk(item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        name = str(node.get("$ref", "")).removeprefix("#/$defs/")
        if name in defs:  # a recursive model stops at its second visit, as a plain object
            return {"type": "object"} if name in seen else walk(defs[name], seen | {name})
        return {key: walk(value, seen) for key, value in node.items()}

    inlined: dict[str, Any] = walk(schema, frozenset())
    return inlined


_SAME = {"description": "Same idempotency_key as an earlier start: that run (created false)"}
_RUNNING = {"description": "The run has not ended yet (the body is the run so far)"}
_SSE: dict[int | str, Any] = {
    200: {"description": "status, step and result events", "content": {"text/event-stream": {}}}
}
_ERRORS = {
    400: "Malformed request",
    401: "authorize refused: not authenticated",
    403: "authorize refused",
    404: "No such run, or its function is not exposed here",
    422: "data does not match the function's input model (see detail)",
    502: "The engine failed",
}
