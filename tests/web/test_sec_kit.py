"""The kit's state-changing routes refuse cross-site "simple" requests; hostile JSON is a 400.

A page on another site can POST ``text/plain``, a form or a typeless body (and a
body-less ``POST .../cancel``) without a CORS preflight, with the user's cookies: such a
request must start or cancel nothing (415 for a wrong content type, 403 for none). JSON
(or the ``X-Stepline-Csrf`` header) still works. A start whose body is deeply nested,
holds ``NaN``/``Infinity``/``1e400``, a lone surrogate or a 5,000-digit integer is a 400
that never reaches ``authorize`` (these gave 500 and 502). Every check runs on each
framework's mount: FastAPI, bare ASGI, Flask and Django test clients, and Tornado behind
a real server.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import django.test
import fastapi
import fastapi.testclient
import flask
import pytest
import starlette.applications
import starlette.routing
import starlette.testclient
import tornado.web
from django.urls import include
from django.urls import path as url

import stepline
import stepline.asgi
import stepline.django
import stepline.fastapi
import stepline.flask
import stepline.tornado
import stepline.web

from .django_setup import harness
from .test_fastapi_kit import Kit, make_kit
from .test_tornado_kit import ServerHttp

FRAMEWORKS = ["fastapi", "asgi", "flask", "django", "tornado"]
JSON = {"content-type": "application/json"}
CSRF = {"x-stepline-csrf": "1"}
#: (status, decoded body) for (method, path under /api, body or None, headers).
Call = Callable[[str, str, "bytes | None", dict[str, str]], tuple[int, Any]]


@contextlib.contextmanager
def mounted(framework: str, kit: Kit, hook: stepline.web.Authorize) -> Iterator[Call]:
    """The kit for ``kit.add`` and ``kit.hold`` under ``/api`` on ``framework``."""
    functions = [kit.add, kit.hold]
    if framework in ("fastapi", "asgi"):
        if framework == "fastapi":
            app: Any = fastapi.FastAPI()
            app.include_router(
                stepline.fastapi.runs_router(kit.client, functions, authorize=hook), prefix="/api"
            )
        else:
            runs = stepline.asgi.runs_app(kit.client, functions, authorize=hook)
            app = starlette.applications.Starlette(routes=[starlette.routing.Mount("/api", runs)])
        http = starlette.testclient.TestClient(app)

        def call_asgi(method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Any:
            reply = http.request(method, "/api" + path, content=body, headers=headers)
            return reply.status_code, reply.json()

        yield call_asgi
    elif framework == "flask":
        flask_app = flask.Flask(__name__)
        blueprint = stepline.flask.runs_blueprint(kit.client, functions, authorize=hook)
        flask_app.register_blueprint(blueprint, url_prefix="/api")
        client = flask_app.test_client()

        def call_flask(method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Any:
            reply = client.open("/api" + path, method=method, data=body, headers=headers)
            return reply.status_code, reply.get_json(force=True)

        yield call_flask
    elif framework == "django":
        harness().configure()
        urls = stepline.django.runs_urls(kit.client, functions, authorize=hook, async_mode=False)
        harness().mount(url("api/", include(urls)))
        client = django.test.Client()

        def call_django(method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Any:
            rest = {k: v for k, v in headers.items() if k != "content-type"}
            kind = headers.get("content-type", "")
            reply = client.generic(method, "/api" + path, body or b"", kind, headers=rest)
            return reply.status_code, json.loads(reply.content)

        try:
            yield call_django
        finally:
            harness().mount()
    else:
        rules = stepline.tornado.runs_handlers(kit.client, functions, authorize=hook, prefix="/api")
        server = ServerHttp(tornado.web.Application(rules))

        def call_tornado(
            method: str, path: str, body: bytes | None, headers: dict[str, str]
        ) -> Any:
            reply = server.request(method, "/api" + path, body, headers)
            return reply.status, reply.json()

        try:
            yield call_tornado
        finally:
            server.close()


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    made = make_kit(tmp_path)
    yield made
    made.engine.stop()


class Hook:
    """An authorize hook letting everything through, recording what it was asked."""

    def __init__(self) -> None:
        self.asked: list[stepline.web.AccessRequest] = []

    def __call__(self, access: stepline.web.AccessRequest) -> bool:
        self.asked.append(access)
        return True


def start_body(function: str = "hold", data: str = "{}") -> bytes:
    return f'{{"function": "{function}", "data": {data}}}'.encode()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_cross_site_simple_starts_are_refused_and_start_nothing(framework: str, kit: Kit) -> None:
    hook = Hook()
    with mounted(framework, kit, hook) as call:
        for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
            status, body = call("POST", "/runs", start_body(), {"content-type": kind})
            assert status == 415, (kind, body)
            assert "application/json" in body["error"], body
            assert "X-Stepline-Csrf" in body["error"], body
        if framework != "django":  # Django's test client always names a type for a body
            status, body = call("POST", "/runs", start_body(), {})  # fetch() with a Blob
            assert status == 403, body
            assert "X-Stepline-Csrf: 1" in body["error"], body
    assert hook.asked == [], "authorize ran for a refused cross-site request"
    assert kit.client.list_runs_sync(function=kit.hold)[0] == [], "a refused request started a run"


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_json_or_the_header_are_accepted(framework: str, kit: Kit) -> None:
    with mounted(framework, kit, Hook()) as call:
        for headers in (JSON, {"content-type": "application/json; charset=utf-8"}):
            status, body = call("POST", "/runs", start_body(), headers)
            assert status == 201, body
        status, body = call("POST", "/runs", start_body(), {"content-type": "text/plain", **CSRF})
        assert status == 201, body  # the header needs a preflight, as JSON does
    assert len(kit.client.list_runs_sync(function=kit.hold)[0]) == 3


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_body_less_cancel_needs_the_header(framework: str, kit: Kit) -> None:
    with mounted(framework, kit, Hook()) as call:
        status, body = call("POST", "/runs", start_body(), JSON)
        assert status == 201, body
        run_id = body["run_id"]
        status, body = call("POST", f"/runs/{run_id}/cancel", None, {})
        assert status == 403, body
        assert "X-Stepline-Csrf: 1" in body["error"]
        status, body = call("POST", f"/runs/{run_id}/cancel", b"x", {"content-type": "text/plain"})
        assert status == 415, body
        assert not kit.client.get_run_sync(run_id).status().terminal, "a refused cancel cancelled"
        status, body = call("POST", f"/runs/{run_id}/cancel", None, CSRF)
        assert (status, body) == (200, {"run_id": run_id, "status": "Cancelled"})


HOSTILE = {
    "nested": b"[" * 100_000,
    "nested-data": start_body(data='{"x": ' + "[" * 5000 + "]" * 5000 + "}"),
    "nan": start_body(data='{"x": NaN}'),
    "infinity": start_body(data='{"x": -Infinity}'),
    "huge-float": start_body(data='{"x": 1e400}'),
    "huge-int": start_body(data='{"x": ' + "7" * 5000 + "}"),
    "lone-surrogate": start_body(data='{"x": "\\ud800"}'),
}


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_hostile_json_is_a_400_before_authorize(framework: str, kit: Kit) -> None:
    hook = Hook()
    with mounted(framework, kit, hook) as call:
        for name, raw in HOSTILE.items():
            status, body = call("POST", "/runs", raw, JSON)
            assert status == 400, (name, body)
            assert body["error"].startswith("body is not valid JSON"), (name, body)
            assert len(body["error"]) < 300, name
    assert hook.asked == [], "authorize ran on a malformed body"
    assert kit.client.list_runs_sync(function=kit.hold)[0] == []
