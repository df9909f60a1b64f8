"""The web-app kit: start, status, cancel, result and live-progress routes for your app.

Mount them with your framework's helper (``stepline.fastapi.runs_router``,
``stepline.flask.runs_blueprint``, ``stepline.django.runs_urls``,
``stepline.tornado.runs_handlers``, ``stepline.asgi.runs_app``); each wraps one
``RunRoutes``. Every request goes through your ``authorize`` hook first, which may
return ``Principal(id)``: runs the caller starts are then theirs alone.

Durable endpoints (``stepline.fastapi.durable`` and its twins) are routes whose handler
is a durable function run inside the request; ``Endpoint`` is their framework-neutral
logic and ``DurableRoute`` the view each framework's decorator returns.
"""

from __future__ import annotations

from stepline._api.ownership import Principal
from stepline._endpoints.endpoint import DurableRoute, Endpoint
from stepline._serving.csrf import HEADER as CSRF_HEADER
from stepline._webkit.routes import (
    AccessDenied,
    AccessRequest,
    RunRoutes,
    WebRequest,
    WebResponse,
    allow_all,
)

__all__ = [
    "CSRF_HEADER",
    "AccessDenied",
    "AccessRequest",
    "DurableRoute",
    "Endpoint",
    "Principal",
    "RunRoutes",
    "WebRequest",
    "WebResponse",
    "allow_all",
]
