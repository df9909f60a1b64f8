"""Flask: serve functions, mount the run routes, or let the ``Stepline`` extension do both.

Example:
    >>> app = flask.Flask(__name__)
    >>> stepline.flask.serve(app, client, [welcome])
    >>> app.register_blueprint(
    ...     stepline.flask.runs_blueprint(client, [welcome], authorize=is_staff),
    ...     url_prefix="/api",
    ... )

A durable route (steps inline in the request, resumed by the engine if they must wait):
``@app.post("/orders/<oid>")`` above ``@stepline.flask.durable(client)``; see ``durable``.

With an app factory, the extension reads ``app.config`` (``STEPLINE_APP_ID``,
``STEPLINE_SIGNING_KEY``, ``STEPLINE_ENGINE = "embedded"``...) and makes one client per
app; see ``Stepline``.
"""

from __future__ import annotations

from stepline.flask._durable import durable as durable
from stepline.flask._extension import ENGINES as ENGINES
from stepline.flask._extension import Stepline as Stepline
from stepline.flask._runs import runs_blueprint as runs_blueprint
from stepline.flask._serve import ENGINE_PATH as ENGINE_PATH
from stepline.flask._serve import FRAMEWORK as FRAMEWORK
from stepline.flask._serve import serve as serve
from stepline.flask._state import EXTENSION as EXTENSION
from stepline.flask._state import AppState as AppState
from stepline.flask._state import current_client as current_client

__all__ = ["AppState", "Stepline", "current_client", "durable", "runs_blueprint", "serve"]
