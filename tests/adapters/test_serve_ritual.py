"""The serve ritual (``stepline._serving.serve``) as the adapters with ``engine=`` run it.

Each mounts the embedded engine's API for a dev-mode client, and for a production client
without ``expose_api`` says once, on its own logger, that it did not. The engine is made,
never started.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastapi
import flask
import pytest
import tornado.httputil
import tornado.web
from werkzeug.middleware.dispatcher import DispatcherMiddleware

import stepline
import stepline.fastapi
import stepline.flask
import stepline.tornado
from stepline._serving import serve as _serve

KEY = "signkey-test-8a1b2c3d4e5f"
NOT_MOUNTED = "embedded engine API not mounted"

ADAPTERS: dict[str, tuple[Callable[[], Any], Callable[..., Any], Callable[[Any], bool]]] = {
    "fastapi": (
        fastapi.FastAPI,
        stepline.fastapi.serve,
        lambda app: any(getattr(r, "path", "") == "/stepline" for r in app.routes),
    ),
    "flask": (
        lambda: flask.Flask(__name__),
        stepline.flask.serve,
        lambda app: any(  # the engine starts first, then the engine's mount answers
            isinstance(cell.cell_contents, DispatcherMiddleware)
            for cell in app.wsgi_app.__closure__
        ),
    ),
    "tornado": (
        tornado.web.Application,
        stepline.tornado.serve,
        lambda app: "EngineHandler" in repr(app.find_handler(_request("/stepline/")).handler_class),
    ),
}


def _request(path: str) -> tornado.httputil.HTTPServerRequest:
    line = tornado.httputil.RequestStartLine("GET", path, "HTTP/1.1")
    headers = tornado.httputil.HTTPHeaders({"Host": "localhost"})
    return tornado.httputil.HTTPServerRequest(start_line=line, headers=headers)


def client(production: bool) -> tuple[stepline.Client, list[stepline.Function]]:
    keys: dict[str, Any] = {"signing_key": KEY} if production else {}
    made = stepline.Client("ritual", is_production=production, environ={}, **keys)

    @made.function(id="noop", trigger=stepline.TriggerEvent(event="r/noop"))
    def noop(ctx: stepline.SyncContext) -> None:
        return None

    return made, [noop]


@pytest.mark.parametrize("name", sorted(ADAPTERS))
@pytest.mark.parametrize("production", [False, True])
def test_the_engine_api_is_mounted_or_its_absence_logged(
    name: str, production: bool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    new_app, serve, mounted = ADAPTERS[name]
    app = new_app()
    made, functions = client(production)
    with caplog.at_level(logging.INFO, logger=f"stepline.{name}"):
        serve(app, made, functions, engine="embedded", database=str(tmp_path / "e.db"))
    said = [r for r in caplog.records if NOT_MOUNTED in r.getMessage()]
    assert [r.name for r in said] == ([f"stepline.{name}"] if production else [])
    assert mounted(app) is not production


def test_the_ritual_builds_what_mount_returns_after_the_engine() -> None:
    made, functions = client(False)
    steps: list[str] = []
    adapter = _serve.Adapter("stepline.test", "test")

    def mount(serving: _serve.Serving) -> str:
        steps.append("mount")
        assert serving.engine is None
        assert not serving.in_process
        assert serving.path == "/api/inngest"
        return "mounted"

    app = type("App", (), {})()
    assert _serve.serve(adapter, made, functions, {}, mount=mount, app=app) == "mounted"
    assert steps == ["mount"]
    with pytest.raises(stepline.ConfigError, match=r"stepline\.test\.serve was already called"):
        _serve.serve(adapter, made, functions, {}, mount=mount, app=app)
    assert steps == ["mount"]  # refused before mounting anything
