"""The web kit mounted on every framework, each reached the way its users reach it.

``open_web(variant, kit)`` mounts ``kit.add`` and ``kit.hold`` under ``/api`` with the
framework's own idiom (``include_router(prefix=)``, ``Mount``, ``url_prefix=``,
``include()``) or with the factory's ``prefix=`` option, and yields a ``Web``: one
request method and one SSE reader over the framework's test client (FastAPI's and
Starlette's ``TestClient``, Flask's ``test_client``, Django's ``Client`` and
``AsyncClient``, Tornado's ``AsyncHTTPTestCase``) or over httpx against a real server on
127.0.0.1 (uvicorn, werkzeug, Tornado's ``HTTPServer``, Django's threaded WSGI server).
Runs execute on an ``EmbeddedEngine`` over SQLite in ``tmp_path``.

The ``authorize`` hook is the same decision everywhere, read from the native request
(``x-user`` names the principal; none is a 401; ``intruder`` is refused; ``viewer`` may
not cancel), sync or async as the variant says.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import threading
import unittest.mock
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import django.test
import fastapi
import fastapi.testclient
import flask
import httpx
import pydantic
import starlette
import starlette.applications
import starlette.datastructures
import starlette.requests
import starlette.routing
import starlette.testclient
import tornado.httpserver
import tornado.simple_httpclient
import tornado.testing
import tornado.web
import werkzeug.serving
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.http import HttpRequest
from django.urls import include, path
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import stepline
import stepline.asgi
import stepline.django
import stepline.fastapi
import stepline.flask
import stepline.tornado
import stepline.web
from stepline._webkit.routes import Authorize
from stepline.ai import DurableAgent
from stepline.embedded import EmbeddedEngine
from tests._support.server_thread import serving

from .django_setup import harness as django_harness

WAIT = 30.0  # upper bound for anything to happen; tests end far sooner
#: What a front end sends on a body-less POST (cancel): a cross-site form cannot.
CSRF = {"x-stepline-csrf": "1"}
JSON = {"content-type": "application/json"}
Event = tuple[str, Any]


# -- the kit: a client, its functions, an embedded engine ---------------------------------


class AddInput(pydantic.BaseModel):
    x: int


@dataclasses.dataclass(frozen=True)
class Seen:
    """One question ``authorize`` was asked, and where it was asked."""

    access: stepline.web.AccessRequest
    on_loop: bool


@dataclasses.dataclass
class Kit:
    """A client, its functions and the engine running them (``hidden`` is never exposed)."""

    client: stepline.Client
    add: stepline.Function
    hold: stepline.Function
    hidden: stepline.Function
    engine: EmbeddedEngine
    seen: list[Seen] = dataclasses.field(default_factory=list)
    #: a durable agent's function whose refund tool waits for a person's approval
    ask: stepline.Function | None = None

    @property
    def exposed(self) -> list[stepline.Function]:
        return [self.add, self.hold, *([self.ask] if self.ask is not None else [])]

    def decide(self, headers: Any, access: stepline.web.AccessRequest) -> Any:
        """The apps' decision, whatever the framework: a principal, a refusal or a 401."""
        self.seen.append(Seen(access, on_event_loop()))
        user = headers.get("x-user")
        if not user:
            raise stepline.web.AccessDenied("log in first", status=401)
        if user == "intruder" or (access.action == "cancel" and user == "viewer"):
            return False
        return stepline.web.Principal(str(user))


def make_kit(tmp_path: Path) -> Kit:
    client = stepline.Client("kit", is_production=False, environ={})

    @client.function(id="add", trigger=stepline.TriggerEvent(event="kit/add"))
    def add(ctx: stepline.SyncContext) -> int:
        a = ctx.step.run("a", lambda: int(ctx.event.data["x"]))
        ctx.step.sleep("nap", dt.timedelta(milliseconds=50))
        return ctx.step.run("b", lambda: a + 1)

    @client.function(id="hold", trigger=stepline.TriggerEvent(event="kit/hold"))
    async def hold(ctx: stepline.Context) -> str:
        await ctx.step.run("a", lambda: "ready")
        await ctx.step.sleep("hold", dt.timedelta(hours=1))
        return "released"

    @client.function(id="hidden", trigger=stepline.TriggerEvent(event="kit/hidden"))
    async def hidden(ctx: stepline.Context) -> str:
        await ctx.step.sleep("hold", dt.timedelta(hours=1))
        return "never shown"

    refunds = refund_agent()

    @client.function(id="ask", trigger=stepline.TriggerEvent(event="kit/ask"))
    async def ask(ctx: stepline.Context) -> str:
        result = await refunds.on(ctx).run(f"refund order {ctx.event.data.get('order', 7)}")
        return result.output

    engine = EmbeddedEngine(
        client, [add, hold, hidden, ask], database=str(tmp_path / "e.db"), poll_interval=0.05
    )
    return Kit(client, add, hold, hidden, engine, ask=ask)


def refund_agent() -> DurableAgent[None, str]:
    """An agent that asks to refund 500 cents (a tool that needs approval), then says what
    the tool answered (or the reason it was denied)."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        answered = [
            part.content
            for message in messages
            for part in getattr(message, "parts", ())
            if isinstance(part, ToolReturnPart)
        ]
        if answered:
            return ModelResponse(parts=[TextPart(f"tool said: {answered[0]}")])
        return ModelResponse(parts=[ToolCallPart("refund", {"cents": 500}, "call-1")])

    agent: Agent[None, str] = Agent(FunctionModel(respond), name="refunds")

    @agent.tool_plain(requires_approval=True)
    def refund(cents: int) -> str:
        """Refund the order, in cents."""
        return f"refunded {cents}"

    return DurableAgent(agent, stream=False)


def on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


# -- one way to talk to any of them -------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclasses.dataclass(frozen=True)
class Stream:
    status: int
    content_type: str
    events: list[Event]


Until = Callable[[str, Any], bool]


class Sse:
    """Server-Sent Events parsed as the bytes come; ``done`` once ``until`` held."""

    def __init__(self, until: Until | None) -> None:
        self.events: list[Event] = []
        self.done = False
        self._buffer = b""
        self._until = until

    def feed(self, chunk: bytes) -> bool:
        """Take a chunk; True once ``until`` held for an event."""
        self._buffer += chunk.replace(b"\r\n", b"\n")
        while b"\n\n" in self._buffer and not self.done:
            block, self._buffer = self._buffer.split(b"\n\n", 1)
            fields = dict(
                line.split(": ", 1) for line in block.decode().splitlines() if ": " in line
            )
            if "event" in fields:
                self.events.append((fields["event"], json.loads(fields["data"])))
                self.done = self._until is not None and self._until(*self.events[-1])
        return self.done


def encode(body: Any, headers: dict[str, str] | None) -> tuple[bytes | None, dict[str, str]]:
    """Raw bytes as given; anything else as JSON, saying so (as a front end posting JSON does)."""
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    if body is None or isinstance(body, bytes):
        return body, headers
    headers.setdefault("content-type", "application/json")
    return json.dumps(body).encode(), headers


def lower(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {k.lower(): v for k, v in pairs}


#: Starlette's ``TestClient`` hands a response over as it comes from Starlette 1.9 on; before,
#: once the app has returned (Starlette 1.7 is the last release for Python 3.10)
TESTCLIENT_STREAMS = tuple(map(int, starlette.__version__.split(".")[:2])) >= (1, 9)


class Web:
    """A request, and the events of a stream until it ends (or ``until`` holds)."""

    #: whether a stream's events can be read before it ends
    live = True
    #: whether a stream may be followed on one thread while requests go on another
    concurrent = True
    #: whether a body can be sent with no content type at all
    typeless_body = True
    #: whether the client or server names a type for a POST with no body
    types_a_bodiless_post = False

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Answer:
        raise NotImplementedError

    def events(self, path: str, headers: dict[str, str], until: Until | None = None) -> Stream:
        raise NotImplementedError


class HttpxWeb(Web):
    """httpx: a real server, or Starlette's ``TestClient`` (an ``httpx.Client`` too)."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        if isinstance(http, starlette.testclient.TestClient) and not TESTCLIENT_STREAMS:
            self.live = self.concurrent = False

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Answer:
        content, sent = encode(body, headers)
        reply = self.http.request(method, path, content=content, headers=sent)
        return Answer(reply.status_code, lower(reply.headers.items()), reply.content)

    def events(self, path: str, headers: dict[str, str], until: Until | None = None) -> Stream:
        sse = Sse(until)
        with self.http.stream("GET", path, headers=headers) as reply:
            if reply.status_code == 200:
                for chunk in reply.iter_bytes():
                    if sse.feed(chunk):
                        break
            return Stream(reply.status_code, reply.headers.get("content-type", ""), sse.events)


class FlaskWeb(Web):
    """Flask's test client (a stream is read lazily, chunk by chunk)."""

    def __init__(self, app: flask.Flask) -> None:
        self.http = app.test_client()

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Answer:
        content, sent = encode(body, headers)
        reply = self.http.open(path, method=method, data=content, headers=sent)
        try:
            return Answer(reply.status_code, lower(reply.headers.items()), reply.get_data())
        finally:
            reply.close()

    def events(self, path: str, headers: dict[str, str], until: Until | None = None) -> Stream:
        reply = self.http.get(path, headers=headers)
        sse = Sse(until)
        try:
            if reply.status_code == 200:
                for chunk in reply.response:
                    if sse.feed(chunk):
                        break
            return Stream(reply.status_code, reply.headers.get("content-type", ""), sse.events)
        finally:
            reply.close()  # closes the app's generator: the kit stops polling


class DjangoClientWeb(Web):
    """Django's test ``Client`` (sync views), with CSRF checks on as in production."""

    typeless_body = False  # Django's test clients always name a type for a body

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Answer:
        content, sent = encode(body, headers)
        kind = sent.pop("content-type", "application/octet-stream")
        http = django.test.Client(enforce_csrf_checks=True)
        reply = http.generic(method, path, content or b"", kind, headers=sent)
        assert not reply.streaming
        return Answer(reply.status_code, lower(reply.items()), reply.content)

    def events(self, path: str, headers: dict[str, str], until: Until | None = None) -> Stream:
        reply = django.test.Client().get(path, headers=headers)
        sse = Sse(until)
        try:
            if reply.status_code == 200:
                for chunk in reply.streaming_content:  # type: ignore[attr-defined]
                    if sse.feed(chunk):
                        break
            return Stream(reply.status_code, reply.get("content-type", ""), sse.events)
        finally:
            reply.close()


class DjangoAsyncClientWeb(Web):
    """Django's ``AsyncClient`` (async views), each call on an event loop of its own."""

    typeless_body = False

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Answer:
        content, sent = encode(body, headers)
        kind = sent.pop("content-type", "application/octet-stream")

        async def go() -> Answer:
            http = django.test.AsyncClient(enforce_csrf_checks=True)
            reply = await http.generic(method, path, content or b"", kind, headers=sent)
            assert not reply.streaming
            return Answer(reply.status_code, lower(reply.items()), reply.content)

        return asyncio.run(go())

    def events(self, path: str, headers: dict[str, str], until: Until | None = None) -> Stream:
        async def go() -> Stream:
            reply = await django.test.AsyncClient().get(path, headers=headers)
            sse = Sse(until)
            if reply.status_code == 200:
                chunks: AsyncIterator[bytes] = reply.streaming_content  # type: ignore[attr-defined]
                async for chunk in chunks:
                    if sse.feed(chunk):
                        break
            return Stream(reply.status_code, reply.get("content-type", ""), sse.events)

        return asyncio.run(go())


class _Case(tornado.testing.AsyncHTTPTestCase):
    """``AsyncHTTPTestCase`` driven by hand (set up and torn down by ``open_web``)."""

    __test__ = False

    def __init__(self, app: tornado.web.Application) -> None:
        super().__init__("noop")
        self.app = app

    def noop(self) -> None:
        pass

    def get_app(self) -> tornado.web.Application:
        return self.app


class _Enough(Exception):
    """Raised from a streaming callback to leave a stream early."""


class TornadoCaseWeb(Web):
    """Tornado's ``AsyncHTTPTestCase``: its IOLoop, server and client (one call at a time)."""

    concurrent = False
    typeless_body = False  # Tornado's client calls a POST body a form
    types_a_bodiless_post = True

    def __init__(self, case: _Case) -> None:
        self.case = case

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Answer:
        content, sent = encode(body, headers)
        if content is None and method in ("POST", "PUT"):
            content = b""
        reply = self.case.fetch(path, method=method, body=content, headers=sent)
        return Answer(reply.code, lower(reply.headers.get_all()), reply.body)

    def events(self, path: str, headers: dict[str, str], until: Until | None = None) -> Stream:
        sse = Sse(until)

        def take(chunk: bytes) -> None:
            if sse.feed(chunk):
                raise _Enough

        try:
            reply = self.case.fetch(path, headers=headers, streaming_callback=take)
        except tornado.simple_httpclient.HTTPStreamClosedError:  # what raising _Enough does
            assert sse.done
            return Stream(200, "text/event-stream", sse.events)
        return Stream(reply.code, reply.headers.get("content-type", ""), sse.events)


@contextlib.contextmanager
def tornado_server(app: tornado.web.Application) -> Iterator[str]:
    """A real ``HTTPServer`` on 127.0.0.1 on a thread (and event loop) of its own."""
    sock, port = tornado.testing.bind_unused_port()
    started = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets([sock])
        box["loop"], box["stop"] = asyncio.get_running_loop(), asyncio.Event()
        started.set()
        await box["stop"].wait()
        server.stop()
        await server.close_all_connections()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(WAIT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(WAIT)
        assert not thread.is_alive()


@contextlib.contextmanager
def werkzeug_server(app: flask.Flask) -> Iterator[str]:
    """``werkzeug.serving.make_server(threaded=True)`` on 127.0.0.1, from a thread."""
    server = werkzeug.serving.make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        server.server_close()  # joins request threads: every stream has ended
        thread.join(WAIT)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def django_wsgi_server() -> Iterator[str]:
    """Django's WSGI handler behind ``runserver``'s threaded server, from a thread."""
    server = ThreadedWSGIServer(("127.0.0.1", 0), _QuietHandler)
    server.set_app(WSGIHandler())
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="wsgi", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@contextlib.contextmanager
def over_http(url: str) -> Iterator[Web]:
    with httpx.Client(base_url=url, timeout=WAIT) as http:
        yield HttpxWeb(http)


# -- every framework, mounted ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Variant:
    """A framework, how it is reached, and what it hands ``authorize``."""

    name: str
    framework: str
    async_hook: bool
    request_type: type | tuple[type, ...]
    #: where ``authorize`` runs: False for a sync hook a framework must keep off its loop
    hook_may_run_on_loop: bool = True


VARIANTS = {
    v.name: v
    for v in [
        Variant("fastapi-testclient", "fastapi", True, starlette.requests.Request),
        Variant("fastapi-uvicorn", "fastapi", False, starlette.requests.Request),
        Variant("asgi-testclient", "asgi", False, dict),
        Variant("asgi-uvicorn", "asgi", True, dict),
        Variant("asgi-bare-testclient", "asgi", True, dict),
        Variant("asgi-mounted-uvicorn", "asgi", False, dict),
        Variant("flask-testclient", "flask", False, flask.Request),
        Variant("flask-werkzeug", "flask", False, flask.Request),
        Variant("tornado-testing", "tornado", True, tornado.web.RequestHandler),
        Variant("tornado-server", "tornado", False, tornado.web.RequestHandler),
        Variant("django-client", "django", False, HttpRequest, False),
        Variant("django-asyncclient", "django", False, HttpRequest, False),
        Variant("django-uvicorn", "django", False, HttpRequest, False),
        Variant("django-wsgi", "django", False, HttpRequest, False),
    ]
}
#: Django's async views: the ``AsyncClient`` and ASGI; its sync views: ``Client`` and WSGI
DJANGO_ASYNC = {"django-asyncclient": True, "django-uvicorn": True}


def headers_of(framework: str, request: Any) -> Any:
    """The headers of the request ``authorize`` is handed, as each framework hands it."""
    if framework == "asgi":
        return starlette.datastructures.Headers(scope=request)
    if framework == "tornado":
        return request.request.headers
    return request.headers


def hook_for(variant: Variant, kit: Kit) -> Authorize:
    def sync_hook(access: stepline.web.AccessRequest) -> Any:
        return kit.decide(headers_of(variant.framework, access.request), access)

    async def async_hook(access: stepline.web.AccessRequest) -> Any:
        return sync_hook(access)

    return async_hook if variant.async_hook else sync_hook


@contextlib.contextmanager
def open_web(
    name: str,
    kit: Kit,
    authorize: Authorize | None = None,
    **options: Any,
) -> Iterator[Web]:
    """``kit.add`` and ``kit.hold`` under ``/api`` on ``name``'s framework, and a way in."""
    variant = VARIANTS[name]
    hook = authorize if authorize is not None else hook_for(variant, kit)
    options.setdefault("poll_interval", 0.05)
    options.setdefault("inputs", {kit.add: AddInput})
    args = (kit.client, kit.exposed)
    if name == "fastapi-testclient":  # mounted by the app
        app = fastapi.FastAPI(lifespan=stepline.fastapi.lifespan(kit.client))
        router = stepline.fastapi.runs_router(*args, authorize=hook, **options)
        app.include_router(router, prefix="/api")
        with fastapi.testclient.TestClient(app, base_url="http://localhost") as http:
            yield HttpxWeb(http)
    elif name == "fastapi-uvicorn":  # the router's own prefix
        app = fastapi.FastAPI()
        app.include_router(
            stepline.fastapi.runs_router(*args, authorize=hook, prefix="/api", **options)
        )
        with serving(app) as url, over_http(url) as web:
            yield web
    elif name.startswith("asgi-"):
        # mounted in Starlette, or the bare app with its own prefix
        bare = name in ("asgi-uvicorn", "asgi-bare-testclient")
        runs = stepline.asgi.runs_app(
            *args, authorize=hook, **({"prefix": "/api"} if bare else {}), **options
        )
        asgi_app: Any = (
            runs
            if bare
            else starlette.applications.Starlette(routes=[starlette.routing.Mount("/api", runs)])
        )
        if name.endswith("testclient"):
            with starlette.testclient.TestClient(asgi_app, base_url="http://localhost") as http:
                yield HttpxWeb(http)
        else:
            with serving(asgi_app) as url, over_http(url) as web:
                yield web
    elif name.startswith("flask-"):
        flask_app = flask.Flask(__name__)
        if name == "flask-testclient":  # the app's url_prefix
            blueprint = stepline.flask.runs_blueprint(*args, authorize=hook, **options)
            flask_app.register_blueprint(blueprint, url_prefix="/api")
            yield FlaskWeb(flask_app)
        else:  # the blueprint's own prefix
            blueprint = stepline.flask.runs_blueprint(
                *args, authorize=hook, prefix="/api", **options
            )
            flask_app.register_blueprint(blueprint)
            with werkzeug_server(flask_app) as url, over_http(url) as web:
                yield web
    elif name.startswith("tornado-"):
        rules = stepline.tornado.runs_handlers(*args, authorize=hook, prefix="/api", **options)
        tornado_app = tornado.web.Application(rules)
        if name == "tornado-testing":
            # per fetch (a stream is one fetch); the default is 5 s
            with unittest.mock.patch.dict(os.environ, {"ASYNC_TEST_TIMEOUT": str(WAIT)}):
                case = _Case(tornado_app)
                case.setUp()
                try:
                    yield TornadoCaseWeb(case)
                finally:
                    case.tearDown()
        else:
            with tornado_server(tornado_app) as url, over_http(url) as web:
                yield web
    else:
        django_harness().configure()
        async_mode = DJANGO_ASYNC.get(name, False)
        urls = stepline.django.runs_urls(*args, authorize=hook, async_mode=async_mode, **options)
        django_harness().mount(path("api/", include(urls)))
        try:
            if name == "django-client":
                yield DjangoClientWeb()
            elif name == "django-asyncclient":
                yield DjangoAsyncClientWeb()
            elif name == "django-uvicorn":
                with serving(ASGIHandler(), lifespan="off", join=20) as url, over_http(url) as web:
                    yield web
            else:
                with django_wsgi_server() as url, over_http(url) as web:
                    web.typeless_body = False  # wsgiref calls a typeless body text/plain
                    web.types_a_bodiless_post = True
                    yield web
        finally:
            django_harness().mount()
