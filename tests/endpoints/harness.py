"""The shop's durable endpoints on every framework, each reached the way its users reach it.

``open_site(variant, tmp_path)`` builds the shop (``tests/apps/durable_shop.py``) on the
variant's framework (``tests/apps/durable_<framework>.py``: its routes, its login, its
run routes at ``/api``) and yields a ``Site``: one request method over the framework's
test client (FastAPI's and Starlette's ``TestClient``, Flask's ``test_client``, Django's
``Client`` and ``AsyncClient``, Tornado's ``AsyncHTTPTestCase``) or over httpx against a
real server on 127.0.0.1 served from a thread of this process (uvicorn, werkzeug,
Tornado's ``HTTPServer``, Django's threaded WSGI server). The transports are the web
kit's harness's (``tests/web/kit_harness.py``) but for Flask's and Django's test clients,
which take cookies from a jar of their own rather than from a ``Cookie`` header.

Each variant declares plain ``def`` or ``async def`` handlers (Django: sync views for
``Client`` and WSGI, async views for ``AsyncClient`` and uvicorn; the others one face per
way in), and ``async def`` ``authorize`` and ``caller`` hooks where the framework takes
them. ``SERVERS`` are the variants whose app also runs as a process of its own, for
the SIGKILL scenario (``tests/apps/durable_crash.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http.cookies
import os
import unittest.mock
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django.test
import fastapi.testclient
import flask
import httpx
import starlette.testclient
from django.core.handlers.asgi import ASGIHandler

import stepline
from stepline.embedded import EmbeddedEngine
from tests._support.server_thread import serving
from tests.apps import durable_asgi, durable_django, durable_fastapi, durable_flask, durable_tornado
from tests.apps.durable_shop import Shop
from tests.web.django_setup import harness as django_harness
from tests.web.kit_harness import (
    WAIT,
    Answer,
    FlaskWeb,
    HttpxWeb,
    TornadoCaseWeb,
    Web,
    _Case,
    django_wsgi_server,
    encode,
    lower,
    over_http,
    tornado_server,
    werkzeug_server,
)

__all__ = ["SERVERS", "VARIANTS", "Answer", "Site", "Variant", "open_site"]


@dataclasses.dataclass(frozen=True)
class Variant:
    """A framework, how it is reached, and the face of its handlers and hooks."""

    name: str
    framework: str
    #: the handlers are ``async def`` (else plain ``def``)
    is_async: bool
    #: ``authorize`` and ``caller`` are ``async def`` (else plain ``def``)
    async_hooks: bool
    #: a real server (else the framework's test client); it runs as a process too
    server: bool


VARIANTS = {
    v.name: v
    for v in [
        Variant("fastapi-testclient", "fastapi", True, True, False),
        Variant("fastapi-uvicorn", "fastapi", False, False, True),
        Variant("asgi-testclient", "asgi", False, False, False),
        Variant("asgi-uvicorn", "asgi", True, True, True),
        # Flask asks its hooks on the request's thread: plain ``def``s
        Variant("flask-testclient", "flask", False, False, False),
        Variant("flask-werkzeug", "flask", True, False, True),
        Variant("tornado-testing", "tornado", True, True, False),
        Variant("tornado-server", "tornado", False, False, True),
        # Django's sync views: Client and WSGI; its async views: AsyncClient and ASGI
        Variant("django-client", "django", False, False, False),
        Variant("django-wsgi", "django", False, False, True),
        Variant("django-asyncclient", "django", True, False, False),
        Variant("django-uvicorn", "django", True, True, True),
    ]
}
SERVERS = sorted(name for name, variant in VARIANTS.items() if variant.server)


class Site:
    """The shop on one variant: requests, and what its runs and steps did."""

    def __init__(self, variant: Variant, shop: Shop, web: Web) -> None:
        self.variant = variant
        self.shop = shop
        self.web = web

    @property
    def client(self) -> stepline.Client:
        return self.shop.client

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Answer:
        """One request: ``body`` raw bytes as given, anything else as JSON (saying so)."""
        return self.web.request(method, path, body, headers)

    def post(self, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Answer:
        return self.request("POST", path, b"" if body is None else body, headers)

    def follow(self, location: str, headers: dict[str, str] | None = None) -> Answer:
        """The kit's result route at ``location``, held until the run ends."""
        answer = self.request("GET", f"{location}?wait=10", headers=headers)
        assert answer.status == 200, answer.body
        return answer

    def runs(self, name: str) -> list[stepline.RunInfo]:
        """The runs of the endpoint ``name``."""
        runs, _ = self.client.list_runs_sync(function=self.shop.function(name))
        return runs

    def engine_api(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """A call of the engine's REST API (``/v1/...``), in process, as an operator's."""
        transport = httpx.WSGITransport(app=self.shop.engine.wsgi_app())
        with httpx.Client(
            transport=transport,
            base_url="http://127.0.0.1",
            headers={"x-stepline-csrf": "1"},  # a body-less POST passes the engine's guard
        ) as api:
            return api.request(method, path, json=body)

    def stored(self, run_id: str) -> dict[str, Any]:
        """The run as the engine's REST API returns it (``GET /v1/runs/{id}``)."""
        answer = self.engine_api("GET", f"/v1/runs/{run_id}")
        assert answer.status_code == 200, answer.text
        run: dict[str, Any] = answer.json()["data"]
        return run


# -- test clients that keep cookies in a jar of their own ---------------------------------------


def _cookies(headers: dict[str, str]) -> http.cookies.SimpleCookie:
    """The ``cookie`` header taken out of ``headers`` (lower-cased names), parsed."""
    jar = http.cookies.SimpleCookie()
    jar.load(headers.pop("cookie", ""))
    return jar


class FlaskJarWeb(FlaskWeb):
    """Flask's test client: a ``Cookie`` header goes in its jar (which would replace it)."""

    def __init__(self, app: flask.Flask) -> None:
        super().__init__(app)
        self.app = app

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Answer:
        sent = lower((headers or {}).items())
        self.http = self.app.test_client()
        for name, morsel in _cookies(sent).items():
            self.http.set_cookie(name, morsel.value)
        return super().request(method, path, body, sent)


class DjangoWeb(Web):
    """Django's test ``Client`` (sync views) or ``AsyncClient`` (async views, each call on
    an event loop of its own), with CSRF checks on as in production; a ``Cookie`` header
    goes in the client's jar (the ``AsyncClient`` would send both)."""

    typeless_body = False  # Django's test clients always name a type for a body

    def __init__(self, *, is_async: bool) -> None:
        self.is_async = is_async

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Answer:
        content, sent = encode(body, headers)
        kind = sent.pop("content-type", "application/octet-stream")
        jar = _cookies(sent)
        if not self.is_async:
            client = django.test.Client(enforce_csrf_checks=True)
            client.cookies = jar
            reply = client.generic(method, path, content or b"", kind, headers=sent)
            return Answer(reply.status_code, lower(reply.items()), reply.content)

        async def go() -> Answer:
            aclient = django.test.AsyncClient(enforce_csrf_checks=True)
            aclient.cookies = jar
            reply = await aclient.generic(method, path, content or b"", kind, headers=sent)
            return Answer(reply.status_code, lower(reply.items()), reply.content)

        return asyncio.run(go())


# -- every framework ------------------------------------------------------------------------------


@contextlib.contextmanager
def open_site(name: str, tmp_path: Path, **options: Any) -> Iterator[Site]:
    """The shop on ``name``'s framework, and a way in; ``options`` go to its ``build``."""
    variant = VARIANTS[name]
    database, markers = str(tmp_path / "e.db"), tmp_path / "marks"
    faces = {"is_async": variant.is_async, "async_hooks": variant.async_hooks, **options}
    if variant.framework == "fastapi":
        fast = durable_fastapi.build(database, markers, **faces)
        with _stopping(fast.shop.engine), _fastapi(variant, fast.app) as web:
            yield Site(variant, fast.shop, web)
    elif variant.framework == "asgi":
        bare = durable_asgi.build(database, markers, **faces)
        with _stopping(bare.shop.engine), _asgi(variant, bare.app) as web:
            yield Site(variant, bare.shop, web)
    elif variant.framework == "flask":
        flasked = durable_flask.build(database, markers, **faces)
        with _stopping(flasked.shop.engine):
            if variant.server:
                with werkzeug_server(flasked.app) as url, over_http(url) as web:
                    yield Site(variant, flasked.shop, web)
            else:
                yield Site(variant, flasked.shop, FlaskJarWeb(flasked.app))
    elif variant.framework == "tornado":
        tornadoed = durable_tornado.build(database, markers, **faces)
        with _stopping(tornadoed.shop.engine), _tornado(variant, tornadoed.app) as web:
            yield Site(variant, tornadoed.shop, web)
    else:
        django_harness().configure()
        built = durable_django.build(database, markers, **faces)
        django_harness().mount(*built.patterns)
        try:
            with _stopping(built.shop.engine), _django(variant) as web:
                yield Site(variant, built.shop, web)
        finally:
            django_harness().mount()


@contextlib.contextmanager
def _stopping(engine: EmbeddedEngine) -> Iterator[None]:
    """The engine stopped after the block (after the way in closed, when entered first)."""
    try:
        yield
    finally:
        engine.stop()


@contextlib.contextmanager
def _fastapi(variant: Variant, app: Any) -> Iterator[Web]:
    if variant.server:
        with serving(app) as url, over_http(url) as web:
            yield web
        return
    with fastapi.testclient.TestClient(app, base_url="http://localhost") as http:
        yield HttpxWeb(http)


@contextlib.contextmanager
def _asgi(variant: Variant, app: Any) -> Iterator[Web]:
    if variant.server:
        with serving(app, lifespan="off") as url, over_http(url) as web:
            yield web
        return
    with starlette.testclient.TestClient(app, base_url="http://localhost") as http:
        yield HttpxWeb(http)


@contextlib.contextmanager
def _tornado(variant: Variant, app: Any) -> Iterator[Web]:
    if variant.server:
        with tornado_server(app) as url, over_http(url) as web:
            yield web
        return
    # per fetch (a held result route is one fetch); the default is 5 s
    with unittest.mock.patch.dict(os.environ, {"ASYNC_TEST_TIMEOUT": str(WAIT)}):
        case = _Case(app)
        case.setUp()
        try:
            yield TornadoCaseWeb(case)
        finally:
            case.tearDown()


@contextlib.contextmanager
def _django(variant: Variant) -> Iterator[Web]:
    if not variant.server:
        yield DjangoWeb(is_async=variant.is_async)
    elif variant.name == "django-uvicorn":
        with serving(ASGIHandler(), lifespan="off", join=20) as url, over_http(url) as web:
            yield web
    else:
        with django_wsgi_server() as url, over_http(url) as web:
            yield web
