"""``durable()``: a FastAPI route whose handler is a durable function run inline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fastapi
from typing_extensions import Unpack

from stepline._client import Client
from stepline._endpoints.endpoint import DurableRoute, Endpoint, EndpointArgs, stamp
from stepline._serving import asgi_scope, bodies
from stepline._webkit.routes import WebRequest

__all__ = ["durable"]


def durable(
    client: Client, **options: Unpack[EndpointArgs]
) -> Callable[[Callable[..., Any]], DurableRoute]:
    """Make the decorated handler a durable endpoint; put a route decorator above it.

    The handler takes an ``EndpointContext`` (``async def``) or a ``SyncEndpointContext``
    (``def``, run in a thread) and returns a JSON-able value or an ``EndpointResponse``.
    Steps run in the request, each recorded before the next; a sleep, a wait or a retry
    answers 202 and the engine finishes the run (see ``docs/durable-endpoints.md``).

    Example:
        >>> @app.post("/orders/{order_id}/pay")
        ... @stepline.fastapi.durable(client, retries=3)
        ... async def pay(ctx: stepline.EndpointContext) -> dict[str, str]:
        ...     order_id = ctx.request.path_params["order_id"]
        ...     charge = await ctx.step.run("charge", charge_card, order_id)
        ...     return {"charge": charge}
    """

    def decorate(handler: Callable[..., Any]) -> DurableRoute:
        endpoint = Endpoint(client, handler, **options)

        async def view(request: fastapi.Request) -> fastapi.Response:
            body = await bodies.read_async(request.stream(), endpoint.max_body)
            web = WebRequest(
                request.method,
                asgi_scope.full_path(request.scope),
                dict(request.query_params),
                body,
                native=request,
                headers=dict(request.headers),
            )
            reply = await endpoint.handle_async(web, dict(request.path_params))
            return fastapi.Response(reply.body, status_code=reply.status, headers=reply.headers)

        return stamp(view, handler, endpoint)

    return decorate
