"""The web-app kit: start, status, cancel, result and live-progress routes for your app.

Mount them with your framework's helper (``stepline.fastapi.runs_router``,
``stepline.flask.runs_blueprint``, ``stepline.django.runs_urls``,
``stepline.tornado.runs_handlers``, ``stepline.asgi.runs_app``); each wraps one
``RunRoutes``. Every request goes through your ``authorize`` hook first, which may
return ``Principal(id)``: runs the caller starts are then theirs alone.
"""

from __future__ import annotations

from stepline._csrf import HEADER as CSRF_HEADER
from stepline._ownership import Principal
from stepline._webkit import (
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
    "Principal",
    "RunRoutes",
    "WebRequest",
    "WebResponse",
    "allow_all",
]
