"""Every framework's kit factory takes the same options, declared once (``KitOptions``).

No engine is needed: ``authorize`` refuses with a 401 before the kit asks the engine
anything, so a request the routes answer shows where they are mounted.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import fastapi
import fastapi.testclient
import flask
import pytest
import starlette.testclient

import stepline
import stepline.asgi
import stepline.django
import stepline.fastapi
import stepline.flask
import stepline.tornado
import stepline.web
from stepline._webkit.kit import KitOptions

FACTORIES: dict[str, Callable[..., Any]] = {
    "asgi": stepline.asgi.runs_app,
    "django": lambda *a, **o: stepline.django.runs_urls(*a, async_mode=False, **o),
    "fastapi": stepline.fastapi.runs_router,
    "flask": stepline.flask.runs_blueprint,
    "tornado": stepline.tornado.runs_handlers,
}
#: each factory's own keywords besides ``authorize`` and ``KitOptions``
OWN = {"runs_blueprint": {"name"}, "runs_urls": {"async_mode"}}


def make() -> tuple[stepline.Client, list[stepline.Function]]:
    client = stepline.Client("kit-options", is_production=False, environ={})

    @client.function(id="noop", trigger=stepline.TriggerEvent(event="k/noop"))
    def noop(ctx: stepline.SyncContext) -> None:
        return None

    return client, [noop]


def log_in(access: stepline.web.AccessRequest) -> bool:
    raise stepline.web.AccessDenied("log in first", status=401)


@pytest.mark.parametrize(
    "factory",
    [
        stepline.asgi.runs_app,
        stepline.django.runs_urls,
        stepline.fastapi.runs_router,
        stepline.flask.runs_blueprint,
        stepline.tornado.runs_handlers,
    ],
)
def test_one_signature(factory: Callable[..., Any]) -> None:
    parameters = inspect.signature(factory).parameters
    positional = [p.name for p in parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
    keywords = {p.name for p in parameters.values() if p.kind is p.KEYWORD_ONLY}
    [options] = [p for p in parameters.values() if p.kind is p.VAR_KEYWORD]
    assert positional == ["client", "functions"]
    assert keywords == {"authorize"} | OWN.get(factory.__name__, set())
    assert options.annotation == "Unpack[KitOptions]" or "KitOptions" in str(options.annotation)
    assert set(KitOptions.__annotations__) == {
        "inputs",
        "prefix",
        "poll_interval",
        "keepalive",
        "result_wait",
        "max_readers_per_run",
        "max_readers_per_caller",
    }


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_a_misspelt_option_is_a_type_error(name: str) -> None:
    client, functions = make()
    with pytest.raises(TypeError, match="unexpected keyword argument 'prefx'"):
        FACTORIES[name](client, functions, authorize=log_in, prefx="/api")


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_a_prefix_starts_with_a_slash(name: str) -> None:
    client, functions = make()
    with pytest.raises(stepline.ConfigError, match="prefix must be '' or start with '/'"):
        FACTORIES[name](client, functions, authorize=log_in, prefix="api")


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_the_options_reach_the_routes(name: str) -> None:
    client, functions = make()
    made = FACTORIES[name](client, functions, authorize=log_in, result_wait=5.0)
    routes = made.routes if name == "asgi" else None
    if name == "tornado":
        routes = made[0].target_kwargs["routes"]
    if routes is not None:
        assert routes.result_wait == 5.0


def _answers(name: str, prefix: str) -> dict[str, int]:
    """The status of a start at ``/runs`` and at ``/api/runs`` (401: the routes are there)."""
    client, functions = make()
    routes = FACTORIES[name](client, functions, authorize=log_in, prefix=prefix)
    body = {"function": "noop"}
    paths = ("/runs", "/api/runs")
    if name == "fastapi":
        app = fastapi.FastAPI()
        app.include_router(routes)
        with fastapi.testclient.TestClient(app) as http:
            return {path: http.post(path, json=body).status_code for path in paths}
    if name == "asgi":
        with starlette.testclient.TestClient(routes) as http:
            return {path: http.post(path, json=body).status_code for path in paths}
    if name == "flask":
        web = flask.Flask(__name__)
        web.register_blueprint(routes)
        http = web.test_client()
        return {path: http.post(path, json=body).status_code for path in paths}
    if name == "tornado":

        def routed(path: str) -> bool:
            return any(rule.matcher.regex.match(path) for rule in routes)

        return {path: 401 if routed(path) else 404 for path in paths}
    patterns = {str(pattern.pattern) for pattern in routes}
    return {path: 401 if path.lstrip("/") in patterns else 404 for path in paths}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_prefix_is_where_the_runs_collection_answers(name: str) -> None:
    assert _answers(name, "") == {"/runs": 401, "/api/runs": 404}
    assert _answers(name, "/api") == {"/runs": 404, "/api/runs": 401}
    assert _answers(name, "/api/") == {"/runs": 404, "/api/runs": 401}
