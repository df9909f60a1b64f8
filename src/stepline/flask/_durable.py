"""``durable()``: a Flask view whose handler is a durable function run inline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flask
from typing_extensions import Unpack

from stepline._client import Client
from stepline._endpoints.endpoint import DurableRoute, Endpoint, EndpointArgs, stamp
from stepline._serving import bodies
from stepline._webkit.routes import WebRequest

__all__ = ["durable"]


def durable(
    client: Client, **options: Unpack[EndpointArgs]
) -> Callable[[Callable[..., Any]], DurableRoute]:
    """Make the decorated handler a durable endpoint; put a route decorator above it.

    The handler is a plain ``def`` taking a ``SyncEndpointContext`` (its steps block the
    request's thread, as any Flask view does) or an ``async def`` taking an
    ``EndpointContext`` (run on a private event loop thread, as Flask runs async views on
    a loop of their own); it returns a JSON-able value or an ``EndpointResponse``. Steps
    run in the request, each recorded before the next; a sleep, a wait or a retry answers
    202 with ``Location`` (the kit's result route, ``runs_blueprint`` mounted at
    ``run_routes``) and the engine finishes the run. The route's variables reach the
    handler as ``ctx.request.path_params``. The view keeps the ``Endpoint`` as
    ``view.endpoint`` (its function: ``view.endpoint.function``).

    Serve the app threaded: a request holds its thread while the handler runs.

    Example:
        >>> @app.post("/orders/<order_id>/pay")
        ... @stepline.flask.durable(client, retries=3)
        ... def pay(ctx: stepline.SyncEndpointContext) -> dict[str, str]:
        ...     order_id = ctx.request.path_params["order_id"]
        ...     return {"charge": ctx.step.run("charge", charge_card, order_id)}

    Args:
        client: the app's client (the app's ``serve()`` serves the endpoint's function).
        **options: ``Endpoint``'s options (``id``, ``authorize``, ``budget``,
            ``run_routes``, ``keep_headers``, ``keep_query``, ``max_body``, ``caller``,
            ``cross_site``) and the function's
            (``retries``, ``concurrency``, ``throttle``...).

    Raises:
        ConfigError: an invalid option.
    """

    def decorate(handler: Callable[..., Any]) -> DurableRoute:
        endpoint = Endpoint(client, handler, **options)

        def view(**path_params: Any) -> flask.Response:
            # the request itself, not the proxy: authorize may keep it past the request
            request: flask.Request = flask.request._get_current_object()  # type: ignore[attr-defined]
            reply = endpoint.handle_sync(_to_web(request, endpoint.max_body), path_params)
            return flask.Response(reply.body, status=reply.status, headers=reply.headers)

        return stamp(view, handler, endpoint)

    return decorate


def _to_web(request: flask.Request, limit: int) -> WebRequest:
    return WebRequest(
        method=request.method,
        path=request.script_root + request.path,
        query=request.args.to_dict(),
        # in chunks: one read may return less than asked (a chunked body); 413 past it
        body=bodies.read_sync(request.stream.read, limit),
        native=request,
        headers={name.lower(): value for name, value in request.headers.items()},
    )
