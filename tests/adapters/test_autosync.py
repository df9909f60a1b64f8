"""Dev mode: an app registers itself with its engine.

Real processes: an app started before its engine retries quietly and registers once the
engine is up (FastAPI, at lifespan startup with ``serve_origin``); an app behind an engine
that is up registers on its first request (Flask, any route but the serve path). Nobody calls PUT.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

import stepline
from stepline._comm.handler import CommHandler
from stepline._comm.serve_endpoint import ServeEndpoint
from stepline._serving import autosync as _autosync
from stepline._transport.effects import HttpRequest, HttpResponse
from tests._support.polling import wait_until
from tests._support.processes import clean_env, engine_command, free_port, spawned, wait_until_up
from tests._support.stub_server import StubServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


# -- the policy ---------------------------------------------------------------------------


def test_retry_delay_doubles_from_half_a_second_up_to_thirty() -> None:
    assert [_autosync.retry_delay(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 16, 30]
    assert _autosync.retry_delay(10_000) == _autosync.RETRY_CAP


def _endpoint() -> ServeEndpoint:
    client = stepline.Client("autosync", is_production=False, api_base_url="http://engine:1")

    @client.function(id="f", trigger=stepline.TriggerEvent(event="x/y"))
    def f(ctx: stepline.SyncContext) -> None:
        return None

    return CommHandler(client=client, functions=[f], framework="test").endpoint


def test_an_unreachable_engine_is_retried_with_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="stepline")
    flow = _autosync.flow(_endpoint(), "http://app/api/inngest")
    refused = HttpResponse(0, {}, b"", error="connection refused")
    waits = []
    effect = next(flow)
    for _ in range(4):  # refused four times
        assert isinstance(effect, HttpRequest)
        assert (effect.method, effect.url) == ("POST", "http://engine:1/fn/register")
        assert json.loads(effect.body)["url"] == "http://app/api/inngest"
        waits.append(flow.send(refused))
        effect = next(flow)
    assert [w.seconds for w in waits] == [0.5, 1, 2, 4]
    with pytest.raises(StopIteration) as done:
        flow.send(HttpResponse(200, {}, b"{}"))
    assert done.value.value is True
    messages = [r.getMessage() for r in caplog.records]
    assert sum("could not register" in m for m in messages) == 1  # not one per attempt
    assert sum("registered http://app/api/inngest" in m for m in messages) == 1


def test_a_refused_registration_is_not_retried() -> None:
    flow = _autosync.flow(_endpoint(), "http://app/api/inngest")
    next(flow)
    with pytest.raises(StopIteration) as done:
        flow.send(HttpResponse(400, {}, b'{"error": "invalid function config"}'))
    assert done.value.value is False


@pytest.mark.parametrize("production", [True, False])
def test_nothing_is_registered_in_production_or_with_an_embedded_engine(
    production: bool,
) -> None:
    keys: dict[str, Any] = {"signing_key": "signkey-prod-" + "ab" * 32} if production else {}
    client = stepline.Client("autosync-off", is_production=production, **keys)

    @client.function(id="f", trigger=stepline.TriggerEvent(event="x/y"))
    def f(ctx: stepline.SyncContext) -> None:
        return None

    handler = CommHandler(client=client, functions=[f], framework="test")
    _autosync.start(handler, "http://127.0.0.1:1", embedded=None if production else object())
    assert handler not in _autosync._started


def test_a_request_to_the_serve_path_itself_starts_nothing() -> None:
    client = stepline.Client("autosync-engine-talking", is_production=False)

    @client.function(id="f", trigger=stepline.TriggerEvent(event="x/y"))
    def f(ctx: stepline.SyncContext) -> None:
        return None

    handler = CommHandler(client=client, functions=[f], framework="test")
    _autosync.start(handler, "http://127.0.0.1:1", path=handler.route_path)
    assert handler not in _autosync._started


def _dev_app(stub_server: StubServer, app_id: str) -> tuple[stepline.Client, stepline.Function]:
    """A dev-mode client whose engine is ``stub_server`` (it takes any registration),
    and its one function."""
    stub_server.answer = lambda _req: (200, {"ok": True})
    client = stepline.Client(app_id, is_production=False, environ={}, api_base_url=stub_server.url)

    @client.function(id="f", trigger=stepline.TriggerEvent(event="x/y"))
    def f(ctx: stepline.SyncContext) -> None:
        return None

    return client, f


# -- real processes -----------------------------------------------------------------------


def _apps(engine: str) -> list[dict[str, Any]] | None:
    try:
        apps: list[dict[str, Any]] = httpx.get(f"{engine}/v1/apps").json()["data"]
    except httpx.HTTPError:
        return None
    return apps or None


def _listening(port: int) -> bool:
    """Whether something accepts connections on ``port`` (a TCP connect, no request)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _runs_the_greeting(engine: str, function_id: str) -> None:
    sent = httpx.post(f"{engine}/e/k", json={"name": "example/greet", "data": {"name": "me"}})
    assert sent.status_code == 200
    params = {"function_id": function_id, "status": "Completed"}
    [run] = wait_until(
        lambda: httpx.get(f"{engine}/v1/runs", params=params).json()["data"] or None,
        timeout=20,
        message=f"a completed run of {function_id}",
    )
    assert run["output"] == {"text": "Hello, me!"}


@pytest.mark.process
def test_a_fastapi_app_started_before_its_engine_registers_once_it_is_up(
    tmp_path: Path,
) -> None:
    engine_port, app_port = free_port(), free_port()
    engine = f"http://127.0.0.1:{engine_port}"
    origin = f"http://127.0.0.1:{app_port}"
    app_cmd = [
        *(sys.executable, "-m", "uvicorn", "main:app", "--app-dir", str(EXAMPLES / "fastapi")),
        *("--host", "127.0.0.1", "--port", str(app_port), "--no-access-log"),
    ]
    app_env = clean_env(STEPLINE_DEV=engine, STEPLINE_SERVE_ORIGIN=origin)
    app_log = tmp_path / "app.log"
    engine_args = ["dev", "--port", str(engine_port), "--db", str(tmp_path / "db"), "--no-poll"]
    with spawned(app_cmd, log=app_log, env=app_env) as app:
        wait_until_up(f"{origin}/api/inngest", app)
        wait_until(
            lambda: "could not register" in app_log.read_text("utf-8"),
            message="the first failed registration",
        )
        with spawned(engine_command(*engine_args), log=tmp_path / "engine.log", env=clean_env()):
            [registered] = wait_until(lambda: _apps(engine), timeout=20, message="the app")
            assert registered["app_id"] == "fastapi-example"
            assert registered["url"] == f"{origin}/api/inngest"
            _runs_the_greeting(engine, "fastapi-example-greet")
        assert app_log.read_text("utf-8").count("could not register") == 1  # quiet


@pytest.mark.process
def test_a_flask_app_registers_on_its_first_request(tmp_path: Path) -> None:
    engine_port, app_port = free_port(), free_port()
    engine = f"http://127.0.0.1:{engine_port}"
    origin = f"http://127.0.0.1:{app_port}"
    app_cmd = [
        *(sys.executable, "-m", "flask", "--app", str(EXAMPLES / "flask" / "app.py"), "run"),
        *("--host", "127.0.0.1", "--port", str(app_port)),
    ]
    engine_args = ["dev", "--port", str(engine_port), "--db", str(tmp_path / "db"), "--no-poll"]
    with (
        spawned(engine_command(*engine_args), log=tmp_path / "engine.log", env=clean_env()) as e,
        spawned(app_cmd, log=tmp_path / "app.log", env=clean_env(STEPLINE_DEV=engine)) as app,
    ):
        wait_until_up(f"{engine}/health", e)
        wait_until_up(f"{origin}/api/inngest", app)  # the serve path: starts nothing
        assert _apps(engine) is None
        httpx.get(f"{origin}/")  # the first request of a user (any route)
        [registered] = wait_until(lambda: _apps(engine), timeout=20, message="the app")
        assert registered["app_id"] == "flask-example"
        assert registered["url"] == f"{origin}/api/inngest"
        _runs_the_greeting(engine, "flask-example-greet")


@pytest.mark.process
def test_a_bare_asgi_app_with_serve_origin_registers_at_lifespan_startup(
    tmp_path: Path,
) -> None:
    engine_port, app_port = free_port(), free_port()
    engine = f"http://127.0.0.1:{engine_port}"
    origin = f"http://127.0.0.1:{app_port}"
    app_cmd = [
        *(sys.executable, "-m", "uvicorn", "app:app", "--app-dir", str(EXAMPLES / "asgi")),
        *("--host", "127.0.0.1", "--port", str(app_port), "--no-access-log"),
    ]
    app_env = clean_env(STEPLINE_DEV=engine, STEPLINE_SERVE_ORIGIN=origin)
    engine_args = ["dev", "--port", str(engine_port), "--db", str(tmp_path / "db"), "--no-poll"]
    with spawned(engine_command(*engine_args), log=tmp_path / "engine.log", env=clean_env()) as e:
        wait_until_up(f"{engine}/health", e)
        with spawned(app_cmd, log=tmp_path / "app.log", env=app_env):
            # no request to the app at all: its lifespan startup registered it
            [registered] = wait_until(lambda: _apps(engine), timeout=20, message="the app")
            assert registered["app_id"] == "asgi-example"
            assert registered["url"] == f"{origin}/api/inngest"
            # lifespan startup runs before uvicorn listens: a run started at once could find
            # the app refusing connections and wait out a retry's backoff
            wait_until(lambda: _listening(app_port), message="the app listening")
            _runs_the_greeting(engine, "asgi-example-greet")


@pytest.mark.process
def test_a_tornado_app_registers_on_its_first_request(tmp_path: Path) -> None:
    engine_port, app_port = free_port(), free_port()
    engine = f"http://127.0.0.1:{engine_port}"
    origin = f"http://127.0.0.1:{app_port}"
    app_env = clean_env(STEPLINE_DEV=engine, PORT=str(app_port))
    engine_args = ["dev", "--port", str(engine_port), "--db", str(tmp_path / "db"), "--no-poll"]
    with (
        spawned(engine_command(*engine_args), log=tmp_path / "engine.log", env=clean_env()) as e,
        spawned(
            [sys.executable, str(EXAMPLES / "tornado" / "app.py")],
            log=tmp_path / "app.log",
            env=app_env,
        ) as app,
    ):
        wait_until_up(f"{engine}/health", e)
        wait_until_up(f"{origin}/api/inngest", app)  # the serve path: starts nothing
        assert _apps(engine) is None
        httpx.get(f"{origin}/")  # the first request of a user
        [registered] = wait_until(lambda: _apps(engine), timeout=20, message="the app")
        assert registered["app_id"] == "tornado-example"
        assert registered["url"] == f"{origin}/api/inngest"
        _runs_the_greeting(engine, "tornado-example-greet")


@pytest.mark.slow
def test_a_django_app_registers_on_a_request(stub_server: StubServer) -> None:
    import django.test

    import stepline.django

    from .harness_django import configure, mount

    configure()
    client, f = _dev_app(stub_server, "django-autosync")

    pattern = stepline.django.serve(client, [f], async_mode=False)
    mount(pattern)
    http = django.test.Client()
    assert http.get("/api/inngest").status_code == 200  # the serve path: starts nothing
    assert stub_server.requests == []
    http.get("/elsewhere")  # a user's request (a 404 is fine)
    [register] = wait_until(lambda: stub_server.requests or None, message="a registration")
    assert register["path"] == "/fn/register"
    assert register["body"]["url"] == "http://testserver/api/inngest"
    assert register["body"]["framework"] == "django"


@pytest.mark.slow
@pytest.mark.parametrize("namespaced", [False, True], ids=["include", "namespaced-include"])
def test_a_django_app_under_an_include_prefix_registers_its_full_path(
    stub_server: StubServer, namespaced: bool
) -> None:
    import django.test
    import django.urls

    import stepline.django

    from .harness_django import configure, mount

    configure()
    client, f = _dev_app(stub_server, "django-autosync-prefix")

    inner = [stepline.django.serve(client, [f], async_mode=False)]
    included = django.urls.include((inner, "jobs") if namespaced else inner)
    mount(django.urls.path("jobs/", included))
    http = django.test.Client()
    assert http.get("/jobs/api/inngest").status_code == 200  # the serve path: starts nothing
    assert stub_server.requests == []
    http.get("/elsewhere")
    [register] = wait_until(lambda: stub_server.requests or None, message="a registration")
    assert register["body"]["url"] == "http://testserver/jobs/api/inngest"


@pytest.mark.parametrize("script_root", ["", "/shop"], ids=["root", "script-root"])
def test_a_flask_blueprint_under_a_prefix_registers_its_full_path(
    stub_server: StubServer, script_root: str
) -> None:
    import flask

    import stepline.flask

    client, f = _dev_app(stub_server, "flask-autosync-prefix")

    app = flask.Flask("prefixed")
    blueprint = flask.Blueprint("jobs", __name__)
    blueprint.add_url_rule("/other", "other", lambda: "ok")
    stepline.flask.serve(blueprint, client, [f], serve_path="/durable")
    app.register_blueprint(blueprint, url_prefix="/jobs")
    http = app.test_client()
    base = f"http://localhost{script_root}"  # a WSGI server's SCRIPT_NAME
    # the serve path itself, as the framework mounted it: starts nothing
    assert http.get("/jobs/durable", base_url=base).status_code == 200
    assert stub_server.requests == []
    assert http.get("/jobs/other", base_url=base).status_code == 200
    [register] = wait_until(lambda: stub_server.requests or None, message="a registration")
    assert register["body"]["url"] == f"http://localhost{script_root}/jobs/durable"


@pytest.mark.parametrize("proxied", [False, True], ids=["mounted", "root-path"])
def test_a_fastapi_app_under_a_mount_registers_its_full_path(
    stub_server: StubServer, proxied: bool
) -> None:
    import fastapi
    from fastapi.testclient import TestClient

    import stepline.fastapi

    client, f = _dev_app(stub_server, "fastapi-autosync-prefix")

    inner = fastapi.FastAPI()
    inner.get("/other")(lambda: "ok")
    stepline.fastapi.serve(inner, client, [f])
    if proxied:  # behind a proxy that strips /shop: the server's --root-path
        http = TestClient(inner, root_path="/shop")
    else:
        outer = fastapi.FastAPI()
        outer.mount("/shop", inner)
        http = TestClient(outer)
    # the serve path itself, as the client reaches it: starts nothing
    assert http.get("/shop/api/inngest" if not proxied else "/api/inngest").status_code == 200
    assert stub_server.requests == []
    assert http.get("/shop/other" if not proxied else "/other").status_code == 200
    [register] = wait_until(lambda: stub_server.requests or None, message="a registration")
    assert register["body"]["url"] == "http://testserver/shop/api/inngest"


def test_a_mount_the_framework_cannot_name_registers_the_serve_path(
    stub_server: StubServer,
) -> None:
    client, f = _dev_app(stub_server, "autosync-unknown-mount")
    handler = CommHandler(client=client, functions=[f], framework="test")

    def unknown() -> str:
        raise RuntimeError("no URL adapter")

    # called from the framework's request hook: it must not fail the request
    _autosync.start(handler, "http://app", path="/other", mounted=unknown)
    [register] = wait_until(lambda: stub_server.requests or None, message="a registration")
    assert register["body"]["url"] == "http://app/api/inngest"
