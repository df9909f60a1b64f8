"""Serve Stepline functions from a FastAPI app or ``APIRouter``.

The framework reported is ``fast_api``, as inngest-py reports it.

Example:
    >>> app = fastapi.FastAPI()
    >>> stepline.fastapi.serve(app, client, [welcome])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import fastapi
import fastapi.responses

from stepline import _errors, asgi
from stepline._comm import CommHandler, CommResponse

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._function import Function

FRAMEWORK = "fast_api"


def serve(
    app: fastapi.FastAPI | fastapi.APIRouter,
    client: Client,
    functions: Sequence[Function],
    *,
    serve_origin: str | None = None,
    serve_path: str | None = None,
    streaming: Literal["disable", "force"] | None = None,
    thread_pool_max_workers: int | None = None,
) -> CommHandler:
    """Register async GET, PUT and POST routes at the serve path (default ``/api/inngest``).

    The routes are left out of the OpenAPI schema. Sync functions run on the handler's
    thread pool, async ones on the server's loop; ``streaming="force"`` answers POST with
    a 201 keepalive stream.

    Raises:
        ConfigError: ``app`` is not a FastAPI app or ``APIRouter``.
    """
    if not isinstance(app, (fastapi.FastAPI, fastapi.APIRouter)):
        raise _errors.ConfigError(
            f"stepline.fastapi.serve needs a FastAPI app or APIRouter, not {type(app).__name__}"
        )
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
    return handler


def _to_fastapi(response: CommResponse) -> fastapi.Response:
    if response.stream is not None:
        return fastapi.responses.StreamingResponse(
            response.stream, status_code=response.status, headers=response.headers
        )
    return fastapi.Response(response.body, status_code=response.status, headers=response.headers)
