"""Durable routes on Django: ``stepline.django.durable``.

Every scenario runs four ways: Django's test ``Client`` (plain ``def`` handlers: sync
views), its ``AsyncClient`` (``async def`` handlers: async views), Django's threaded WSGI
server (sync) and uvicorn (async), the servers on 127.0.0.1 in threads of this process.
Django is configured once per process by ``tests/adapters/harness_django`` (through
``tests/web/django_setup``); the views (``django_durable_app``) run on an
``EmbeddedEngine`` on SQLite in ``tmp_path`` and each step writes a marker line, so a test
sees how many times each step ran. The crash test runs the app as a process, SIGKILLs it
mid-request and starts it again on the same file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import django.test
import httpx
import pytest
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.http import HttpRequest
from django.test import override_settings
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

import stepline
import stepline.django
import stepline.web
from stepline.embedded import EmbeddedEngine
from tests._support.server_thread import serving
from tests.web.django_setup import _django, mount  # noqa: F401 (_django: an autouse fixture)

from . import crash
from .django_durable_app import Built, build

ROOT = Path(__file__).resolve().parents[2]
WAIT = 20.0


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def wsgi_thread() -> Iterator[str]:
    """Django's WSGI handler behind ``runserver``'s threaded server, from a thread."""
    server = ThreadedWSGIServer(("127.0.0.1", 0), QuietHandler)
    server.set_app(WSGIHandler())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT)


class Site:
    """The views mounted, their engine, and a way in."""

    def __init__(self, built: Built, markers: Path, way: str, base: str = "") -> None:
        self.built, self.markers, self.way, self.base = built, markers, way, base

    def call(
        self, method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Reply:
        headers = dict(headers or {})
        kind = headers.pop("content-type", "application/json")
        if self.way == "test-client":
            answer = django.test.Client().generic(method, url, body, kind, headers=headers)
        elif self.way == "async-client":
            http = django.test.AsyncClient()
            answer = asyncio.run(http.generic(method, url, body, kind, headers=headers))
        else:
            response = httpx.request(
                method,
                self.base + url,
                content=body,
                headers={**headers, "content-type": kind},
                timeout=WAIT,
            )
            lower = {k.lower(): v for k, v in response.headers.items()}
            return Reply(response.status_code, lower, response.content)
        return Reply(answer.status_code, {k.lower(): v for k, v in answer.items()}, answer.content)

    def marks(self, run_id: str) -> list[str]:
        """The steps that ran for ``run_id``, in order."""
        if not self.markers.exists():
            return []
        lines = [line.split() for line in self.markers.read_text().splitlines()]
        return [name for name, run in lines if run == run_id]


WAYS = {"test-client": False, "async-client": True, "wsgi-server": False, "uvicorn": True}


@pytest.fixture(params=list(WAYS))
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    way, markers = request.param, tmp_path / "marks"
    built = build(str(tmp_path / "e.db"), markers, is_async=WAYS[way])
    mount(*built.patterns)
    try:
        if way == "wsgi-server":
            with wsgi_thread() as url:
                yield Site(built, markers, way, url)
        elif way == "uvicorn":
            with serving(ASGIHandler(), lifespan="off", join=20) as url:
                yield Site(built, markers, way, url)
        else:
            yield Site(built, markers, way)
    finally:
        built.engine.stop()


def test_finishes_inline_with_the_handlers_body(site: Site) -> None:
    reply = site.call("POST", "/orders/42?x=1", b'{"qty": 2}')
    assert reply.status == 200, reply.body
    assert reply.json() == {
        "steps": ["a", "b", "c"],
        "oid": "42",
        "sent": {"qty": 2},
        "path": "/orders/42",
        "query": {"x": "1"},
    }
    assert reply.headers["content-type"] == "application/json"
    run_id = reply.headers["x-stepline-run-id"]
    assert site.marks(run_id) == ["a", "b", "c"]  # each once, in the request
    run = site.built.client.get_run_sync(run_id).describe()
    assert run.status is stepline.RunStatus.COMPLETED
    assert run.function_id == "dj-durable-orders"


@pytest.mark.slow
def test_suspends_on_sleep_then_the_result_route_answers(site: Site) -> None:
    reply = site.call("POST", "/nap", b"{}")
    assert reply.status == 202, reply.body
    run_id = reply.headers["x-stepline-run-id"]
    assert reply.headers["location"] == f"/api/runs/{run_id}/result"
    assert reply.json()["links"]["status"] == f"/api/runs/{run_id}"
    assert site.marks(run_id) == ["first"]  # "then" waits for the engine

    done = site.call("GET", reply.headers["location"] + "?wait=10")
    assert done.status == 200, done.body
    result = done.json()
    assert result["status"] == "Completed"
    assert result["output"]["status"] == 201
    assert result["output"]["json"] == {"ran": ["first", "then"]}
    assert site.marks(run_id) == ["first", "then"]


@pytest.mark.slow
def test_the_same_idempotency_key_answers_the_same_run(site: Site) -> None:
    key = {"idempotency-key": "order-7"}
    first = site.call("POST", "/orders/7", b'{"qty": 1}', key)
    assert first.status == 200, first.body
    assert "idempotent-replayed" not in first.headers
    again = site.call("POST", "/orders/7", b'{"qty": 1}', key)
    assert again.status == 200
    assert again.headers["x-stepline-run-id"] == first.headers["x-stepline-run-id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert site.marks(first.headers["x-stepline-run-id"]) == ["a", "b", "c"]  # not re-run

    napping = site.call("POST", "/nap", b"{}", {"idempotency-key": "nap-1"})
    assert napping.status == 202
    run_id = napping.headers["x-stepline-run-id"]
    while_running = site.call("POST", "/nap", b"{}", {"idempotency-key": "nap-1"})
    assert (while_running.status, while_running.headers["x-stepline-run-id"]) == (202, run_id)
    site.built.client.get_run_sync(run_id).result(timeout=10)
    ended = site.call("POST", "/nap", b"{}", {"idempotency-key": "nap-1"})
    assert ended.status == 201  # the stored response
    assert ended.json() == {"ran": ["first", "then"]}
    assert (ended.headers["x-nap"], ended.headers["idempotent-replayed"]) == ("1", "true")
    assert ended.headers["x-stepline-run-id"] == run_id
    assert site.marks(run_id) == ["first", "then"]


def test_an_endpoint_response_sets_status_and_headers(site: Site) -> None:
    reply = site.call("POST", "/made/7")
    assert reply.status == 201, reply.body
    assert reply.headers["x-order"] == "7"
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    assert reply.body == b"order 7 made"
    assert site.marks(reply.headers["x-stepline-run-id"]) == ["make"]


def test_a_body_over_max_body_is_413_and_starts_nothing(site: Site) -> None:
    small = site.built.views["small"].endpoint.function
    fits = site.call("POST", "/small", b"x" * 16, {"content-type": "text/plain"})
    assert (fits.status, fits.json()) == (200, {"echo": "x" * 16})
    refused = site.call("POST", "/small", b"y" * 17, {"content-type": "text/plain"})
    assert refused.status == 413
    assert refused.json() == {"error": "the request body is larger than 16 bytes"}
    runs, _ = site.built.client.list_runs_sync(function=small)
    assert len(runs) == 1  # the one that fit


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_the_csrf_middleware_guards_the_view(tmp_path: Path, is_async: bool) -> None:
    built = build(str(tmp_path / "e.db"), tmp_path / "marks", is_async=is_async)
    mount(*built.patterns)
    try:
        if is_async:
            http: Any = django.test.AsyncClient(enforce_csrf_checks=True)
            call: Any = lambda url: asyncio.run(http.post(url, b"{}", "application/json"))  # noqa: E731
        else:
            http = django.test.Client(enforce_csrf_checks=True)
            call = lambda url: http.post(url, b"{}", "application/json")  # noqa: E731
        guarded = call("/guarded/1")
        assert guarded.status_code == 403  # not exempt: no run without the CSRF token
        assert "x-stepline-run-id" not in guarded
        orders = built.views["orders"].endpoint.function
        assert built.client.list_runs_sync(function=orders)[0] == []
        exempt = call("/orders/1")  # what an API wraps in csrf_exempt itself
        assert exempt.status_code == 200
        assert exempt.json()["steps"] == ["a", "b", "c"]
    finally:
        built.engine.stop()


def test_authorize_runs_off_the_event_loop_and_names_the_principal(tmp_path: Path) -> None:
    client = stepline.Client("dj-auth", is_production=False, environ={})
    seen: list[tuple[HttpRequest, bool]] = []

    def authorize(access: stepline.web.AccessRequest) -> bool | stepline.web.Principal:
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        seen.append((access.request, on_loop))
        user = access.request.headers.get("x-user")
        if user is None:
            raise stepline.web.AccessDenied("log in first", status=401)
        return stepline.web.Principal(user)

    @stepline.django.durable(client, authorize=authorize)
    async def mine(ctx: stepline.EndpointContext) -> dict[str, str | None]:
        return {"principal": ctx.principal}

    engine = EmbeddedEngine(client, [], database=str(tmp_path / "e.db"), poll_interval=0.05)
    mount(path("mine", csrf_exempt(mine)))
    try:
        http = django.test.AsyncClient()
        anonymous = asyncio.run(http.post("/mine"))
        assert (anonymous.status_code, anonymous.json()) == (401, {"error": "log in first"})
        ada = asyncio.run(http.post("/mine", headers={"x-user": "ada"}))
        assert (ada.status_code, ada.json()) == (200, {"principal": "ada"})
        run = client.get_run_sync(ada["x-stepline-run-id"]).describe()
        assert run.started_by == "ada"
    finally:
        engine.stop()
    assert [on_loop for _, on_loop in seen] == [False, False]  # sync_to_async: a thread
    assert all(isinstance(request, HttpRequest) for request, _ in seen)


def test_an_async_authorize_needs_an_async_handler() -> None:
    client = stepline.Client("dj-refused", is_production=False, environ={})

    async def authorize(access: stepline.web.AccessRequest) -> bool:
        return True

    with pytest.raises(stepline.ConfigError, match="authorize is async"):

        @stepline.django.durable(client, authorize=authorize)
        def pay(ctx: stepline.SyncEndpointContext) -> str:
            return "never"


def test_the_client_defaults_to_the_settings_client(tmp_path: Path) -> None:
    setting = {
        "APP_ID": "dj-cfg",
        "DEV": True,
        "FUNCTIONS": "tests.web.django_kit_functions.make",
        "ENGINE": "embedded",
        "DATABASE": str(tmp_path / "cfg.db"),
        "ENGINE_OPTIONS": {"poll_interval": 0.05},
    }
    with override_settings(STEPLINE=setting):

        @stepline.django.durable()
        def pay(ctx: stepline.SyncEndpointContext) -> dict[str, str]:
            return {"paid": ctx.step.run("pay", lambda: ctx.request.path_params["oid"])}

        assert pay.endpoint.client is stepline.django.get_client()
        assert pay.endpoint.function.composite_id == "dj-cfg-pay"
        mount(path("pay/<oid>", csrf_exempt(pay)))
        reply = django.test.Client().post("/pay/9")
        assert (reply.status_code, reply.json()) == (200, {"paid": "9"})
    with override_settings(STEPLINE=None), pytest.raises(stepline.ConfigError, match="STEPLINE"):
        stepline.django.durable()(pay)


@pytest.mark.process
@pytest.mark.parametrize("server", ["wsgi", "asgi"])
def test_sigkill_mid_request_the_engine_finishes_the_run(tmp_path: Path, server: str) -> None:
    crash.orders_app_survives_sigkill(["tests.endpoints.django_durable_app", server], tmp_path)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_logged_in_users_idempotency_key_is_theirs(tmp_path: Path, is_async: bool) -> None:
    """Django authenticated the user (``request.user``, as its middleware sets it): the
    endpoint takes them as the caller, and another user sending the same key gets a run
    of their own, never the first user's response."""
    client = stepline.Client("dj-keys", is_production=False, environ={})
    users = {"s-ada": 1, "s-bob": 2}

    def log_in(request: HttpRequest) -> None:  # what AuthenticationMiddleware does
        pk = users.get(request.COOKIES.get("sessionid", ""))
        request.user = SimpleNamespace(is_authenticated=pk is not None, pk=pk)  # type: ignore[assignment]

    if is_async:

        @stepline.django.durable(client)
        async def note(ctx: stepline.EndpointContext) -> dict[str, Any]:
            return {"note": ctx.request.json(), "principal": ctx.principal}

        async def async_view(request: HttpRequest) -> Any:
            log_in(request)
            return await note(request)

        view: Any = async_view

    else:

        @stepline.django.durable(client)
        def note(ctx: stepline.SyncEndpointContext) -> dict[str, Any]:
            return {"note": ctx.request.json(), "principal": ctx.principal}

        def sync_view(request: HttpRequest) -> Any:
            log_in(request)
            return note(request)

        view = sync_view

    engine = EmbeddedEngine(client, [], database=str(tmp_path / "e.db"), poll_interval=0.05)
    mount(path("note", csrf_exempt(view)))
    try:
        http: Any = django.test.AsyncClient() if is_async else django.test.Client()

        def post(session: str, body: dict[str, str]) -> Any:
            http.cookies["sessionid"] = session
            answer = http.post("/note", body, "application/json", headers={"idempotency-key": "k"})
            return asyncio.run(answer) if is_async else answer

        ada = post("s-ada", {"iban": "ada's"})
        bob = post("s-bob", {"iban": "bob's"})
        again = post("s-ada", {"iban": "ada's"})
        assert (ada.status_code, bob.status_code, again.status_code) == (200, 200, 200)
        assert bob.json() == {"note": {"iban": "bob's"}, "principal": "user:2"}
        assert "idempotent-replayed" not in bob
        assert again["x-stepline-run-id"] == ada["x-stepline-run-id"]
        assert again["idempotent-replayed"] == "true"
        anonymous = post("nobody", {"iban": "?"})  # a session cookie, no user: no scope
        assert anonymous.status_code == 400, anonymous.content
    finally:
        engine.stop()
