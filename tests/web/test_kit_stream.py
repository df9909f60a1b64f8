"""A run's stream on the web kit's events route, through every framework's own test client.

One scenario runs through FastAPI's ``TestClient``, the bare ASGI app under Starlette's,
Flask's test client, Django's ``Client`` and ``AsyncClient``, and Tornado's
``AsyncHTTPTestCase``: a run publishes durable and light messages; the route sends each
as ``id: <seq>`` + ``event: message`` before the final ``result``; ``Last-Event-ID`` (and
``?after=``) resume after a message with no gap and no duplicate; ``?topic=`` filters;
a reader who may not see the run gets the kit's usual 401/404 and no message. Then a live
reader behind uvicorn drops its connection mid-stream and reconnects, on both stores.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import fastapi
import fastapi.testclient
import flask
import httpx
import pytest
import starlette.applications
import starlette.datastructures
import starlette.routing
import starlette.testclient
import tornado.web

import stepline
import stepline.asgi
import stepline.django
import stepline.fastapi
import stepline.flask
import stepline.tornado
import stepline.web
from stepline.embedded import EmbeddedEngine
from tests._support.databases import postgres_schema
from tests._support.polling import wait_until
from tests._support.server_thread import serving

from .django_setup import _django, mount  # noqa: F401 (_django: an autouse fixture)

ALICE = {"x-user": "alice"}
MESSAGES = 6  # what ``talk`` publishes: three durable, three light


@dataclasses.dataclass
class Kit:
    client: stepline.Client
    talk: stepline.Function
    drip: stepline.Function
    engine: EmbeddedEngine


def make_kit(database: str) -> Kit:
    client = stepline.Client("streamkit", is_production=False, environ={})

    @client.function(id="talk", trigger=stepline.TriggerEvent(event="kit/talk"))
    async def talk(ctx: stepline.Context) -> str:
        for n in range(1, 4):
            await ctx.step.publish(f"progress-{n}", topic="progress", data={"n": n})
            ctx.publish("tokens", f"token-{n}")
        return "done"

    @client.function(id="drip", trigger=stepline.TriggerEvent(event="kit/drip"))
    def drip(ctx: stepline.SyncContext) -> str:
        ctx.step.publish("one", topic="progress", data=1)
        ctx.step.publish("two", topic="progress", data=2)
        ctx.step.wait_for_event("go", event="kit/go", timeout=dt.timedelta(hours=1))
        ctx.step.publish("three", topic="progress", data=3)
        ctx.step.publish("four", topic="progress", data=4)
        return "dripped"

    engine = EmbeddedEngine(client, [talk, drip], database=database, poll_interval=0.05)
    return Kit(client, talk, drip, engine)


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    made = make_kit(str(tmp_path / "e.db"))
    yield made
    made.engine.stop()


def principal(headers: Mapping[str, str]) -> bool | stepline.web.Principal:
    """``x-user`` is who calls: none is 401, ``blocked`` is refused, anyone else is a principal."""
    user = headers.get("x-user")
    if user is None:
        raise stepline.web.AccessDenied("who are you?", status=401)
    return False if user == "blocked" else stepline.web.Principal(user)


# -- each framework through its own test client -------------------------------------------


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


@dataclasses.dataclass
class Web:
    """A framework's app behind its test client: POST JSON, GET a whole (ended) stream."""

    prefix: str
    post: Callable[[str, Any, dict[str, str]], Answer]
    get: Callable[[str, dict[str, str]], Answer]


@contextlib.contextmanager
def fastapi_web(kit: Kit) -> Iterator[Web]:
    async def authorize(access: stepline.web.AccessRequest) -> bool | stepline.web.Principal:
        return principal(access.request.headers)

    app = fastapi.FastAPI()
    app.include_router(
        stepline.fastapi.runs_router(
            kit.client, [kit.talk], authorize=authorize, poll_interval=0.05
        ),
        prefix="/api",
    )
    with fastapi.testclient.TestClient(app, base_url="http://localhost") as http:
        yield _httpx_web(http, "/api")


@contextlib.contextmanager
def asgi_web(kit: Kit) -> Iterator[Web]:
    def authorize(access: stepline.web.AccessRequest) -> bool | stepline.web.Principal:
        return principal(starlette.datastructures.Headers(scope=access.request))

    runs = stepline.asgi.runs_app(kit.client, [kit.talk], authorize=authorize, poll_interval=0.05)
    app = starlette.applications.Starlette(routes=[starlette.routing.Mount("/kit", runs)])
    with starlette.testclient.TestClient(app, base_url="http://localhost") as http:
        yield _httpx_web(http, "/kit")


def _httpx_web(http: httpx.Client, prefix: str) -> Web:
    def post(path: str, body: Any, headers: dict[str, str]) -> Answer:
        answer = http.post(path, json=body, headers=headers)
        return Answer(answer.status_code, answer.content)

    def get(path: str, headers: dict[str, str]) -> Answer:
        answer = http.get(path, headers=headers)
        return Answer(answer.status_code, answer.content)

    return Web(prefix, post, get)


@contextlib.contextmanager
def flask_web(kit: Kit) -> Iterator[Web]:
    def authorize(access: stepline.web.AccessRequest) -> bool | stepline.web.Principal:
        return principal(access.request.headers)

    app = flask.Flask(__name__)
    app.register_blueprint(
        stepline.flask.runs_blueprint(kit.client, [kit.talk], authorize=authorize),
        url_prefix="/api",
    )
    http = app.test_client()

    def post(path: str, body: Any, headers: dict[str, str]) -> Answer:
        answer = http.post(path, json=body, headers=headers)
        return Answer(answer.status_code, answer.get_data())

    def get(path: str, headers: dict[str, str]) -> Answer:
        answer = http.get(path, headers=headers)
        return Answer(answer.status_code, answer.get_data())

    yield Web("/api", post, get)


@contextlib.contextmanager
def django_web(kit: Kit, *, async_mode: bool) -> Iterator[Web]:
    import asyncio

    import django.test
    from django.urls import include, path

    def authorize(access: stepline.web.AccessRequest) -> bool | stepline.web.Principal:
        return principal(access.request.headers)

    patterns = stepline.django.runs_urls(
        kit.client, [kit.talk], authorize=authorize, async_mode=async_mode, poll_interval=0.05
    )
    mount(path("kit/", include(patterns)))

    def post(path: str, body: Any, headers: dict[str, str]) -> Answer:
        answer = django.test.Client().post(
            path, json.dumps(body), content_type="application/json", headers=headers
        )
        return Answer(answer.status_code, answer.content)

    async def read_async(path: str, headers: dict[str, str]) -> Answer:
        answer = await django.test.AsyncClient().get(path, headers=headers)
        if not answer.streaming:
            return Answer(answer.status_code, answer.content)
        chunks = [chunk async for chunk in answer.streaming_content]  # type: ignore[attr-defined]
        return Answer(answer.status_code, b"".join(chunks))

    def get(path: str, headers: dict[str, str]) -> Answer:
        if async_mode:
            return asyncio.run(read_async(path, headers))
        answer = django.test.Client().get(path, headers=headers)
        if not answer.streaming:
            return Answer(answer.status_code, answer.content)
        body = b"".join(answer.streaming_content)  # type: ignore[attr-defined]
        answer.close()
        return Answer(answer.status_code, body)

    yield Web("/kit", post, get)


@contextlib.contextmanager
def tornado_web(kit: Kit, monkeypatch: pytest.MonkeyPatch) -> Iterator[Web]:
    from .kit_harness import TornadoCaseWeb, _Case

    async def authorize(access: stepline.web.AccessRequest) -> bool | stepline.web.Principal:
        handler = access.request
        assert isinstance(handler, tornado.web.RequestHandler)
        return principal(handler.request.headers)

    app = tornado.web.Application()
    handlers = stepline.tornado.runs_handlers(
        kit.client, [kit.talk], authorize=authorize, prefix="/api", poll_interval=0.05
    )
    app.add_handlers(r".*", handlers)
    monkeypatch.setenv("ASYNC_TEST_TIMEOUT", "30")
    case = _Case(app)
    case.setUp()
    http = TornadoCaseWeb(case)

    def post(path: str, body: Any, headers: dict[str, str]) -> Answer:
        reply = http.request("POST", path, body, headers)
        return Answer(reply.status, reply.body)

    def get(path: str, headers: dict[str, str]) -> Answer:  # a stream that ends: one fetch
        reply = http.request("GET", path, headers=headers)
        return Answer(reply.status, reply.body)

    try:
        yield Web("/api", post, get)
    finally:
        case.tearDown()


FRAMEWORKS = ["fastapi", "asgi", "flask", "django-sync", "django-async", "tornado"]


@pytest.fixture(params=FRAMEWORKS)
def web(request: pytest.FixtureRequest, kit: Kit, monkeypatch: pytest.MonkeyPatch) -> Iterator[Web]:
    name = request.param
    made: contextlib.AbstractContextManager[Web]
    if name == "fastapi":
        made = fastapi_web(kit)
    elif name == "asgi":
        made = asgi_web(kit)
    elif name == "flask":
        made = flask_web(kit)
    elif name.startswith("django"):
        made = django_web(kit, async_mode=name == "django-async")
    else:
        made = tornado_web(kit, monkeypatch)
    with made as ready:
        yield ready


# -- reading SSE ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Event:
    id: str | None
    name: str
    data: Any


def parse(raw: bytes) -> list[Event]:
    events = []
    for block in raw.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            events.append(Event(fields.get("id"), fields["event"], json.loads(fields["data"])))
    return events


def seqs(events: list[Event]) -> list[int]:
    """The messages' seqs, checking each event's id is its seq."""
    found = []
    for event in events:
        if event.name == "message":
            assert event.id == str(event.data["seq"]), event
            found.append(event.data["seq"])
        else:
            assert event.id is None, event  # only messages move the browser's Last-Event-ID
    return found


# -- the scenario --------------------------------------------------------------------------


@pytest.mark.slow
def test_messages_resume_filter_and_refusals(web: Web, kit: Kit) -> None:
    started = web.post(f"{web.prefix}/runs", {"function": "talk", "data": {}}, ALICE)
    assert started.status == 201, started.body
    run_id = json.loads(started.body)["run_id"]
    assert kit.client.get_run_sync(run_id).result(timeout=30) == "done"
    events_path = f"{web.prefix}/runs/{run_id}/events"

    whole = web.get(events_path, ALICE)
    assert whole.status == 200, whole.body
    events = parse(whole.body)
    assert seqs(events) == list(range(1, MESSAGES + 1))
    assert events[0].name == "status"
    assert events[-1].name == "result"  # after every message
    assert events[-1].data["output"] == "done"
    published = collections.Counter(
        (e.data["topic"], json.dumps(e.data["data"])) for e in events if e.name == "message"
    )
    expected = {("progress", json.dumps({"n": n})) for n in (1, 2, 3)}
    expected |= {("tokens", json.dumps(f"token-{n}")) for n in (1, 2, 3)}
    assert published == collections.Counter(expected)
    tokens = [e.data["data"] for e in events if e.name == "message" and e.data["topic"] == "tokens"]
    assert tokens == ["token-1", "token-2", "token-3"]  # light messages keep their order
    assert all(isinstance(e.data["at"], float) for e in events if e.name == "message")

    # a browser reconnecting after message 4: 5 and 6, then the state again and the result
    resumed = parse(web.get(events_path, {**ALICE, "Last-Event-ID": "4"}).body)
    assert seqs(resumed) == [5, 6]
    assert resumed[0].name == "status"
    assert resumed[-1].name == "result"
    assert seqs(parse(web.get(f"{events_path}?after=2", ALICE).body)) == [3, 4, 5, 6]
    both = {**ALICE, "Last-Event-ID": "5"}  # the browser's own header wins over the URL's
    assert seqs(parse(web.get(f"{events_path}?after=2", both).body)) == [6]

    progress = parse(web.get(f"{events_path}?topic=progress", ALICE).body)
    assert [e.data["data"] for e in progress if e.name == "message"] == [
        {"n": n} for n in (1, 2, 3)
    ]
    assert {e.data["topic"] for e in progress if e.name == "message"} == {"progress"}

    bad = web.get(events_path, {**ALICE, "Last-Event-ID": "four"})
    assert bad.status == 400
    assert b"Last-Event-ID" in bad.body
    assert web.get(f"{events_path}?topic=bad%20topic", ALICE).status == 400

    # who may not see the run learns nothing: 401 to nobody, the unknown run's 404 otherwise
    for headers, status in (({}, 401), ({"x-user": "bob"}, 404), ({"x-user": "blocked"}, 404)):
        refused = web.get(events_path, headers)
        assert refused.status == status, (headers, refused.body)
        assert b"event:" not in refused.body
        assert b"token-" not in refused.body


# -- a live reader that drops off and comes back ---------------------------------------------


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_live_reader_reconnects_with_last_event_id(tmp_path: Path, store: str) -> None:
    with contextlib.ExitStack() as stack:
        database = (
            str(tmp_path / "e.db")
            if store == "sqlite"
            else stack.enter_context(postgres_schema("kitstream"))
        )
        made = make_kit(database)
        stack.callback(made.engine.stop)

        def authorize(access: stepline.web.AccessRequest) -> bool | stepline.web.Principal:
            return principal(access.request.headers)

        app = fastapi.FastAPI()
        app.include_router(
            stepline.fastapi.runs_router(
                made.client, [made.drip], authorize=authorize, poll_interval=0.05
            )
        )
        url = stack.enter_context(serving(app))
        http = stack.enter_context(httpx.Client(base_url=url, timeout=30))
        started = http.post("/runs", json={"function": "drip"}, headers=ALICE)
        assert started.status_code == 201, started.text
        events_path = f"/runs/{started.json()['run_id']}/events"

        first: list[Event] = []
        with http.stream("GET", events_path, headers=ALICE) as stream:
            buffer = b""
            for chunk in stream.iter_bytes():
                buffer += chunk
                first = parse(buffer.rsplit(b"\n\n", 1)[0] + b"\n\n")
                if len(seqs(first)) == 2:
                    break  # the reader drops off while the run waits for kit/go
        assert seqs(first) == [1, 2]
        assert "result" not in [e.name for e in first]

        handle = made.client.get_run_sync(started.json()["run_id"])
        wait_until(
            lambda: any(s.name == "go" and s.status == "Waiting" for s in handle.steps()),
            message="the drip run to wait for kit/go",
        )
        made.client.send_sync(stepline.Event(name="kit/go", data={}))
        assert handle.result(timeout=30) == "dripped"
        again = http.get(events_path, headers={**ALICE, "Last-Event-ID": "2"})
        rest = parse(again.content)
        assert seqs(rest) == [3, 4]  # no gap, no duplicate
        assert [e.data["data"] for e in rest if e.name == "message"] == [3, 4]
        assert rest[-1].name == "result"
        assert rest[-1].data["output"] == "dripped"
