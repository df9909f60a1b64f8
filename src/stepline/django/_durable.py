"""``durable()``: a Django view whose handler is a durable function run inline."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, cast

from asgiref.sync import sync_to_async
from django import http
from typing_extensions import Unpack

from stepline import _errors
from stepline._client import Client
from stepline._endpoints.endpoint import DurableRoute, Endpoint, EndpointArgs, stamp
from stepline._serving import bodies
from stepline._webkit import routes
from stepline.django import _routes, _runtime, _serve

__all__ = ["durable", "request_user"]

View = Callable[..., Any]


def durable(
    client: Client | None = None, **options: Unpack[EndpointArgs]
) -> Callable[[View], DurableRoute]:
    """Make the decorated handler a durable endpoint: the decorator returns a Django view.

    The handler takes an ``EndpointContext`` (``async def``: the view is an async view) or
    a ``SyncEndpointContext`` (``def``: a sync view) and returns a JSON-able value or an
    ``EndpointResponse``. Steps run in the request, each recorded before the next; a sleep,
    a wait or a retry answers 202 with ``Location`` (the kit's result route: mount
    ``runs_urls`` at ``run_routes``) and the engine finishes the run. The URL pattern's
    keyword arguments reach the handler as ``ctx.request.path_params``; the view keeps
    the ``Endpoint`` as ``view.endpoint`` (its function: ``view.endpoint.function``).

    The view is the app's own: Django's CSRF middleware checks it as any other view. An
    API called by other programs (no CSRF cookie) wraps it in ``csrf_exempt`` itself.

    Example:
        >>> @stepline.django.durable(retries=3)
        ... def pay(ctx: stepline.SyncEndpointContext) -> dict[str, str]:
        ...     order_id = ctx.request.path_params["order_id"]
        ...     return {"charge": ctx.step.run("charge", charge_card, order_id)}
        >>> urlpatterns = [path("orders/<order_id>/pay", pay)]

    Args:
        client: the app's client; default ``stepline.django.get_client()`` (with
            ``settings.STEPLINE``), taken when the decorator runs: the endpoint's function
            is declared on it then (not at the first request), so that the app's serve
            endpoint serves it. Import the module of your durable views before the engine
            registers the app: the settings' embedded engine does at the process's first
            request, before Django loads the URL conf, so import them from the
            ``FUNCTIONS`` module (an endpoint declared later answers 500, not registered).
        **options: ``Endpoint``'s options (``id``, ``authorize``, ``budget``,
            ``run_routes``, ``keep_headers``, ``keep_query``, ``max_body``, ``caller``,
            ``cross_site``) and the function's
            (``retries``, ``concurrency``, ``throttle``...). Under an async handler, a
            plain ``def`` authorize or caller hook runs in a worker thread (it may use
            the ORM). ``caller`` defaults to ``request_user``: an authenticated
            ``request.user`` is the run's caller (``"user:<pk>"``).

    Raises:
        ConfigError: Django older than 5.2, an async ``authorize`` with a plain ``def``
            handler, no ``settings.STEPLINE`` when no client is given, or an invalid option.
    """
    _serve.check_version()

    def decorate(handler: View) -> DurableRoute:
        is_async = inspect.iscoroutinefunction(handler)
        authorize = options.get("authorize")
        if authorize is not None and _routes.is_async_callable(authorize) and not is_async:
            raise _errors.ConfigError(
                "stepline.django.durable: authorize is async; the handler needs to be too"
            )
        args = dict(options)
        caller = options.get("caller", request_user)
        args["caller"] = caller
        if is_async and authorize is not None and not _routes.is_async_callable(authorize):
            # a sync hook typically reads request.user: the ORM refuses the event loop's thread
            args["authorize"] = sync_to_async(
                cast("Callable[[routes.AccessRequest], bool]", authorize)
            )
        if is_async and caller is not None and not _routes.is_async_callable(cast(Any, caller)):
            args["caller"] = sync_to_async(cast("Callable[[Any], str | None]", caller))
        endpoint = Endpoint(client or _runtime.get_client(), handler, **cast(EndpointArgs, args))
        limit = endpoint.max_body

        if is_async:

            async def async_view(
                request: http.HttpRequest, **path_params: Any
            ) -> http.HttpResponse:
                reply = await endpoint.handle_async(_web_request(request, limit), path_params)
                return _to_django(reply)

            return stamp(async_view, handler, endpoint)

        def view(request: http.HttpRequest, **path_params: Any) -> http.HttpResponse:
            return _to_django(endpoint.handle_sync(_web_request(request, limit), path_params))

        return stamp(view, handler, endpoint)

    return decorate


def request_user(request: http.HttpRequest) -> str | None:
    """The authenticated ``request.user`` as a caller id (``"user:<pk>"``), else None.

    The durable views' default ``caller``: with Django's authentication middleware, a
    logged-in user's runs are theirs and their ``Idempotency-Key``s scoped to them. The
    kit's ``authorize`` names the same ``Principal(f"user:{request.user.pk}")`` for them to
    follow their runs there.
    """
    user = getattr(request, "user", None)
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return f"user:{user.pk}"


def _web_request(request: http.HttpRequest, limit: int) -> routes.WebRequest:
    return routes.WebRequest(
        method=request.method or "GET",
        path=request.path,  # with SCRIPT_NAME and the include() prefixes
        query=request.GET.dict(),
        body=bodies.read_sync(request.read, limit),  # past the limit: the endpoint's 413
        native=request,
        headers={name.lower(): value for name, value in request.headers.items()},
    )


def _to_django(reply: routes.WebResponse) -> http.HttpResponse:
    return http.HttpResponse(reply.body, status=reply.status, headers=reply.headers)
