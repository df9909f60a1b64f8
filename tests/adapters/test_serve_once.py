"""A second ``serve()`` of one Stepline app, or at one path, on one web app or router is
a ``ConfigError``.

At the same path its route would shadow the first's; for the same Stepline app the engine
would know it at two URLs, each sync replacing the other's functions. One call with every
function is right. Two Stepline apps at two paths of one web app stay allowed.
``stepline.asgi.serve`` and ``stepline.django.serve`` take no app: each call builds its own
ASGI app or URL pattern, so there is nothing to serve twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp.web
import fastapi
import flask
import pytest
import starlette.applications
import starlette.routing
import tornado.web

import stepline
import stepline.aiohttp
import stepline.fastapi
import stepline.flask
import stepline.starlette
import stepline.tornado


def make(app_id: str = "once") -> tuple[stepline.Client, list[stepline.Function]]:
    client = stepline.Client(app_id, is_production=False, environ={})

    @client.function(id="noop", trigger=stepline.TriggerEvent(event="o/noop"))
    def noop(ctx: stepline.SyncContext) -> None:
        return None

    return client, [noop]


TARGETS: dict[str, tuple[Callable[[], Any], Callable[..., Any]]] = {
    "fastapi-app": (fastapi.FastAPI, stepline.fastapi.serve),
    "fastapi-router": (fastapi.APIRouter, stepline.fastapi.serve),
    "flask-app": (lambda: flask.Flask("once"), stepline.flask.serve),
    "flask-blueprint": (lambda: flask.Blueprint("once", "once"), stepline.flask.serve),
    "tornado": (tornado.web.Application, stepline.tornado.serve),
    "starlette-app": (starlette.applications.Starlette, stepline.starlette.serve),
    "starlette-router": (starlette.routing.Router, stepline.starlette.serve),
    "aiohttp": (aiohttp.web.Application, stepline.aiohttp.serve),
}


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_second_serve_of_one_stepline_app_is_a_config_error(target: str) -> None:
    build, serve = TARGETS[target]
    app = build()
    client, functions = make()
    serve(app, client, functions)
    with pytest.raises(stepline.ConfigError, match="already called on this") as error:
        serve(app, client, functions, serve_path="/api/other")
    assert "(serving app 'once' at /api/inngest)" in error.value.message
    assert "serve(app, client, [fn_a, fn_b, ...])" in error.value.message


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_second_serve_at_one_path_is_a_config_error(target: str) -> None:
    build, serve = TARGETS[target]
    app = build()
    serve(app, *make())
    with pytest.raises(stepline.ConfigError, match="'once' at /api/inngest"):
        serve(app, *make("another"))


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_two_stepline_apps_at_two_paths_stay_allowed(target: str) -> None:
    build, serve = TARGETS[target]
    app = build()
    serve(app, *make(), serve_path="/a")
    assert serve(app, *make("another"), serve_path="/b").route_path == "/b"


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_serve_on_another_app_still_works(target: str) -> None:
    build, serve = TARGETS[target]
    client, functions = make()
    serve(build(), client, functions)
    handler = serve(build(), client, functions)
    assert handler.route_path == "/api/inngest"


def test_a_refused_first_serve_leaves_the_app_free() -> None:
    app = fastapi.FastAPI()
    client, functions = make()
    other = stepline.Client("another-app", is_production=False, environ={})
    with pytest.raises(stepline.ConfigError, match="another"):
        stepline.fastapi.serve(app, other, functions)
    assert stepline.fastapi.serve(app, client, functions).route_path == "/api/inngest"
