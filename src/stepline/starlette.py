"""Serve Stepline functions from a Starlette app or router.

Adds one route at the serve path whose endpoint is ``stepline.asgi.ASGIApp``; the
framework reported is ``starlette``. Any other ASGI framework can mount the bare app from
``stepline.asgi.serve`` instead.

Example:
    >>> app = starlette.applications.Starlette()
    >>> stepline.starlette.serve(app, client, [welcome])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import starlette.applications
import starlette.routing
from typing_extensions import Unpack

from stepline import _errors
from stepline._comm import CommHandler
from stepline._serving import options as _serve_options
from stepline._serving import serve as _serve
from stepline.asgi import ASGIApp

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._definition.function import Function

FRAMEWORK = "starlette"
ADAPTER = _serve.Adapter("stepline.starlette", FRAMEWORK)


def serve(
    app: starlette.applications.Starlette | starlette.routing.Router,
    client: Client,
    functions: Sequence[Function],
    **options: Unpack[_serve_options.ServeOptions],
) -> CommHandler:
    """Register GET, PUT and POST at the serve path (default ``/api/inngest``).

    Sync functions run on the handler's thread pool, async ones on the server's loop;
    ``streaming="force"`` answers POST with a 201 keepalive stream.

    Raises:
        ConfigError: ``app`` is not a Starlette app or router, or ``serve`` was
            already called on it.
    """
    if not isinstance(app, (starlette.applications.Starlette, starlette.routing.Router)):
        raise _errors.ConfigError(
            f"stepline.starlette.serve needs a Starlette app or Router, not {type(app).__name__}"
        )
    router = app.router if isinstance(app, starlette.applications.Starlette) else app

    def mount(serving: _serve.Serving) -> CommHandler:
        # A Route, not a Mount: a Mount redirects the bare path to "path/" (307).
        route = starlette.routing.Route(
            serving.path,
            endpoint=ASGIApp(serving.handler),
            methods=["GET", "POST", "PUT"],
            name=f"stepline:{serving.path}",
            include_in_schema=False,
        )
        router.routes.append(route)
        return serving.handler

    return _serve.serve(ADAPTER, client, functions, options, mount=mount, app=app)
