"""``runs_router()``: the web-app kit's run routes as a documented ``APIRouter``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any

import fastapi
import fastapi.responses
from typing_extensions import Unpack

from stepline._client import Client
from stepline._definition.function import Function
from stepline._serving import asgi_scope, bodies
from stepline._webkit import kit
from stepline._webkit import routes as _webkit
from stepline._webkit.kit import KitOptions
from stepline._webkit.routes import Authorize, RunRoutes, WebRequest, WebResponse

__all__ = ["runs_router"]

_RunId = Annotated[str, fastapi.Path(description="The run's id.")]
_ApprovalId = Annotated[str, fastapi.Path(description="The approval's id.")]
_Wait = Annotated[
    str | None,
    fastapi.Query(description="Seconds to hold the request until the run ends (60 at most)."),
]


def runs_router(
    client: Client,
    functions: Sequence[Function],
    *,
    authorize: Authorize,
    **options: Unpack[KitOptions],
) -> fastapi.APIRouter:
    """The web-app kit's five run routes as an ``APIRouter`` (see ``stepline.web``).

    ``POST /runs``, ``GET /runs/{run_id}``, ``POST /runs/{run_id}/cancel``,
    ``GET /runs/{run_id}/result`` and ``GET /runs/{run_id}/events`` (Server-Sent Events:
    progress and the run's stream, see ``docs/streams.md``), and the approvals routes
    (``GET /approvals``, ``GET /approvals/{id}``, ``POST /approvals/{id}/approve|reject``:
    durable agents' tool calls waiting for a person, see ``docs/ai-agents.md``),
    under ``prefix`` and wherever the router is included. Every request goes through
    ``authorize`` (sync or async); ``inputs`` maps functions to pydantic models checked on
    start (422 with ``detail``) and documented in OpenAPI.

    ``options`` are the kit's ``KitOptions``, the same for every framework (``inputs``,
    ``prefix``, ``poll_interval``, ``keepalive``, ``result_wait``, ``max_readers_per_run``,
    ``max_readers_per_caller``).

    Raises:
        ConfigError: no ``authorize``, no functions, or a ``prefix`` not starting with ``/``.
    """
    routes, prefix = kit.run_routes("runs_router", client, functions, authorize, options)
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

    async def list_approvals(request: fastapi.Request) -> fastapi.Response:
        return await _answer(routes, request, "/approvals")

    async def get_approval(request: fastapi.Request, approval_id: _ApprovalId) -> fastapi.Response:
        return await _answer(routes, request, f"/approvals/{approval_id}")

    async def approve(request: fastapi.Request, approval_id: _ApprovalId) -> fastapi.Response:
        return await _answer(routes, request, f"/approvals/{approval_id}/approve")

    async def reject(request: fastapi.Request, approval_id: _ApprovalId) -> fastapi.Response:
        return await _answer(routes, request, f"/approvals/{approval_id}/reject")

    errors: dict[int | str, Any] = {code: {"description": t} for code, t in _ERRORS.items()}
    table: list[tuple[str, str, Callable[..., Any], str, dict[int | str, Any]]] = [
        ("POST", "", start_run, "Start a run", {201: {"description": "Started"}, 200: _SAME}),
        ("GET", "/{run_id}", get_run, "Get a run's status", {}),
        ("POST", "/{run_id}/cancel", cancel_run, "Cancel a run", {}),
        ("GET", "/{run_id}/result", run_result, "Get a run's result", {202: _RUNNING}),
        ("GET", "/{run_id}/events", run_events, "Follow a run (Server-Sent Events)", _SSE),
    ]
    table = [(m, f"/runs{p}", e, s, r) for m, p, e, s, r in table]
    table += [
        ("GET", "/approvals", list_approvals, "List the pending approvals", {}),
        ("GET", "/approvals/{approval_id}", get_approval, "Get an approval", {}),
        ("POST", "/approvals/{approval_id}/approve", approve, "Approve a tool call", {}),
        ("POST", "/approvals/{approval_id}/reject", reject, "Reject a tool call", {}),
    ]
    for method, path, endpoint, summary, responses in table:
        router.add_api_route(
            path,
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
    full = asgi_scope.full_path(request.scope)
    mount = full[: -len(path)] if full.endswith(path) else ""
    query = dict(request.query_params)
    body = await bodies.read_async(request.stream(), _webkit.MAX_BODY)  # the kit: 413 past it
    if len(body) <= _webkit.MAX_BODY:
        request._body = body  # as ``request.body()`` caches it: authorize may still read it
    headers = dict(request.headers)  # names lower-cased
    web = WebRequest(
        request.method, path, query, body, native=request, mount=mount, headers=headers
    )
    return _from_web(routes, await routes.handle_async(web))


def _from_web(routes: RunRoutes, response: WebResponse) -> fastapi.Response:
    if response.stream is not None:
        return fastapi.responses.StreamingResponse(
            routes.chunks_async(response), status_code=response.status, headers=response.headers
        )
    return fastapi.Response(response.body, status_code=response.status, headers=response.headers)


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
    200: {
        "description": "status, step, message (id: seq; Last-Event-ID resumes) and result events",
        "content": {"text/event-stream": {}},
    }
}
_ERRORS = {
    400: "Malformed request",
    401: "authorize refused: not authenticated",
    403: "authorize refused",
    404: "No such run, or its function is not exposed here",
    422: "data does not match the function's input model (see detail)",
    502: "The engine failed",
}
