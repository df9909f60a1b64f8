"""Serve Stepline functions, and the web-app kit's run routes, from a Tornado application.

Example:
    >>> app = tornado.web.Application()
    >>> stepline.tornado.serve(app, client, [welcome])
    >>> app.add_handlers(r".*", stepline.tornado.runs_handlers(
    ...     client, [welcome], authorize=stepline.web.allow_all, prefix="/api/runs"))

``durable`` makes a handler function a durable endpoint, a ``RequestHandler`` for a URL
spec: ``(r"/orders/(?P<order_id>[^/]+)/pay", pay)``.

``serve`` records the client in ``app.settings["stepline_client"]`` (read it from a handler
with ``ClientMixin``); ``await shutdown(app)`` stops what ``serve`` started.
"""

from __future__ import annotations

from stepline.tornado._conf import CLIENT_SETTING as CLIENT_SETTING
from stepline.tornado._conf import ENGINE_SETTING as ENGINE_SETTING
from stepline.tornado._conf import ClientMixin as ClientMixin
from stepline.tornado._durable import durable as durable
from stepline.tornado._runs import runs_handlers as runs_handlers
from stepline.tornado._serve import FRAMEWORK as FRAMEWORK
from stepline.tornado._serve import serve as serve
from stepline.tornado._serve import shutdown as shutdown

__all__ = [
    "CLIENT_SETTING",
    "ENGINE_SETTING",
    "ClientMixin",
    "durable",
    "runs_handlers",
    "serve",
    "shutdown",
]
