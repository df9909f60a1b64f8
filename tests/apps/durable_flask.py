"""The shop's durable endpoints on Flask (``durable_shop``), for the endpoint tests.

Importable (``build``) and runnable as a process for the crash scenario: ``python -m
tests.apps.durable_flask PORT DATABASE MARKERS sync|async`` serves it on werkzeug's
threaded server. The login is a view decorator (the session's user in ``flask.g.user``,
else 401); ``note``'s caller hook reads it there. The run routes are at ``/api``.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flask
import werkzeug.serving

import stepline.flask
from tests.apps.durable_shop import LOGGED_IN, PATHS, Shop, user_from


def user_of(request: flask.Request) -> str | None:
    return user_from(request.headers.get("authorization"), request.cookies.get("session"))


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """The app's own authentication: a decorator, before the endpoint."""

    @functools.wraps(view)
    def wrapped(**kwargs: Any) -> Any:
        user = user_of(flask.request)
        if user is None:
            return {"error": "log in first"}, 401
        flask.g.user = user
        return view(**kwargs)

    return wrapped


@dataclasses.dataclass
class Built:
    shop: Shop
    app: flask.Flask


def build(database: str, markers: Path, *, is_async: bool, async_hooks: bool = False) -> Built:
    # a sync framework: the hooks are plain ``def``s, whatever the handlers are
    assert not async_hooks, "Flask runs authorize and caller hooks on the request's thread"
    shop = Shop("shop-flask", database, markers, is_async=is_async)
    app = flask.Flask(__name__)
    views = shop.declare(
        functools.partial(stepline.flask.durable, shop.client),
        user_of=user_of,
        caller=lambda request: f"user:{flask.g.user}",
    )
    for name, view in views.items():
        rule = PATHS[name].replace("{", "<").replace("}", ">")
        guarded = login_required(view) if name in LOGGED_IN else view
        app.add_url_rule(rule, endpoint=name, view_func=guarded, methods=["POST"])
    stepline.flask.serve(app, shop.client, [], engine=shop.engine)
    kit = stepline.flask.runs_blueprint(
        shop.client, shop.functions, authorize=Shop.kit_authorize(user_of)
    )
    app.register_blueprint(kit, url_prefix="/api")
    return Built(shop, app)


if __name__ == "__main__":
    port, database, markers, face = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4]
    built = build(database, markers, is_async=face == "async")
    server = werkzeug.serving.make_server("127.0.0.1", port, built.app, threaded=True)
    server.serve_forever(poll_interval=0.05)
