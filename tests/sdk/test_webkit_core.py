"""``RunRoutes``, the web-app kit's framework-neutral core, driven with ``WebRequest``s.

Each test runs through ``handle_sync`` and through ``handle_async`` (on an event loop in
another thread, as an async server would), with an ``EmbeddedEngine`` behind the client.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest

import stepline
from stepline._transport import effects
from stepline._webkit import routes as _webkit
from stepline.embedded import EmbeddedEngine
from stepline.web import AccessDenied, AccessRequest, RunRoutes, WebRequest, WebResponse, allow_all
from tests._support.engines import FAST
from tests._support.processes import free_port
from tests.apps import run_management

from .embedded_support import LoopThread, poll


class Native:
    """Stands for the framework's request object handed to ``authorize``."""


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, loop: LoopThread) -> Iterator[run_management.App]:
    built = run_management.build()
    database = str(tmp_path_factory.mktemp("webkit") / "engine.db")
    embedded = EmbeddedEngine(built.client, built.functions, database=database, **FAST)
    yield built
    loop.run(built.client.aclose())
    embedded.stop()


@pytest.fixture(params=["sync", "async"])
def face(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def exposed(app: run_management.App) -> list[stepline.Function]:
    return [app.order, app.sleeper, app.waiter, app.limited]


def routes_for(app: run_management.App, **options: Any) -> RunRoutes:
    options.setdefault("authorize", allow_all)
    options.setdefault("poll_interval", 0.02)
    return RunRoutes(app.client, exposed(app), **options)


class Caller:
    """Sends ``WebRequest``s to routes through one face."""

    def __init__(self, routes: RunRoutes, face: str, loop: LoopThread) -> None:
        self.routes = routes
        self.face = face
        self.loop = loop
        self.native = Native()

    def __call__(
        self,
        method: str,
        path: str,
        body: object = None,
        query: dict[str, str] | None = None,
    ) -> WebResponse:
        if isinstance(body, bytes):
            raw = body
        else:
            raw = b"" if body is None else json.dumps(body).encode()
        # a non-browser client: the kit's cross-site guard wants a JSON type or this header
        headers = {"x-stepline-csrf": "1"}
        request = WebRequest(
            method, path, query or {}, raw, self.native, mount="/api/", headers=headers
        )
        if self.face == "sync":
            return self.routes.handle_sync(request)
        return self.loop.run(self.routes.handle_async(request))

    def events(
        self, response: WebResponse, on_event: Callable[[str, Any], None] | None = None
    ) -> list[tuple[str, Any]]:
        """Drain an SSE response into ``(event, data)`` pairs (``retry`` and comments too)."""
        seen: list[tuple[str, Any]] = []

        def take(chunk: bytes) -> None:
            text = chunk.decode()
            assert text.endswith("\n\n"), text
            if text.startswith("retry:"):
                seen.append(("retry", text.split(":", 1)[1].strip()))
                return
            if text.startswith(":"):
                seen.append(("comment", text[1:].strip()))
                return
            name, data = text.strip().split("\n")
            assert name.startswith("event: ")
            assert data.startswith("data: ")
            pair = (name[len("event: ") :], json.loads(data[len("data: ") :]))
            seen.append(pair)
            if on_event is not None:
                on_event(*pair)

        if self.face == "sync":
            for chunk in self.routes.chunks_sync(response):
                take(chunk)
        else:

            async def drain() -> None:
                async for chunk in self.routes.chunks_async(response):
                    take(chunk)

            self.loop.run(drain())
        return seen


def body(response: WebResponse) -> Any:
    assert response.headers["content-type"] == "application/json"
    return json.loads(response.body)


def start(call: Caller, function: str = "order", data: object = None, **extra: Any) -> str:
    response = call("POST", "/runs", {"function": function, "data": data or {}, **extra})
    assert response.status == 201, response.body
    return str(body(response)["run_id"])


# -- routes ---------------------------------------------------------------------------


def test_start_status_result_and_links(
    app: run_management.App, face: str, loop: LoopThread
) -> None:
    call = Caller(routes_for(app), face, loop)
    started = call("POST", "/runs", {"function": "order", "data": {"x": 1}})
    assert started.status == 201
    run = body(started)
    run_id = run["run_id"]
    assert run["function_id"] == "shop-order"
    assert run["created"] is True
    assert run["links"] == {
        "self": f"/api/runs/{run_id}",
        "result": f"/api/runs/{run_id}/result",
        "events": f"/api/runs/{run_id}/events",
        "cancel": f"/api/runs/{run_id}/cancel",
    }
    done = call("GET", f"/runs/{run_id}/result", query={"wait": "20"})
    assert done.status == 200
    view = body(done)
    assert (view["run_id"], view["status"], view["output"]) == (
        run_id,
        "Completed",
        {"n": 2, "x": 1},
    )
    assert view["error"] is None
    status = call("GET", f"/runs/{run_id}/")  # a trailing slash is the same route
    assert status.status == 200
    assert body(status)["status"] == "Completed"
    assert body(status)["function_id"] == "shop-order"
    assert call("POST", f"/runs/{run_id}/cancel").status == 200
    assert body(call("POST", f"/runs/{run_id}/cancel"))["status"] == "Completed"
    # by full id, too
    assert start(call, "shop-order", {"x": 2})


def test_idempotency_key(app: run_management.App, face: str, loop: LoopThread) -> None:
    call = Caller(routes_for(app), face, loop)
    key = f"webkit-{face}-key"
    first = call("POST", "/runs", {"function": "order", "data": {"x": 1}, "idempotency_key": key})
    again = call("POST", "/runs", {"function": "order", "data": {"x": 2}, "idempotency_key": key})
    assert (first.status, again.status) == (201, 200)
    assert body(again)["created"] is False
    assert body(again)["run_id"] == body(first)["run_id"]


def test_cancel_a_running_run(app: run_management.App, face: str, loop: LoopThread) -> None:
    call = Caller(routes_for(app), face, loop)
    run_id = start(call, "sleeper")
    cancelled = call("POST", f"/runs/{run_id}/cancel")
    assert cancelled.status == 200
    assert body(cancelled) == {"run_id": run_id, "status": "Cancelled"}
    result = call("GET", f"/runs/{run_id}/result", query={"wait": "5"})
    assert result.status == 200
    assert body(result)["status"] == "Cancelled"
    assert body(result)["cancel_reason"]


def test_result_is_202_while_running_then_200(
    app: run_management.App, face: str, loop: LoopThread
) -> None:
    call = Caller(routes_for(app), face, loop)
    token = f"result-{face}"
    run_id = start(call, "waiter", {"token": token})
    pending = call("GET", f"/runs/{run_id}/result")
    assert pending.status == 202
    assert pending.headers["retry-after"] == "1"
    assert body(pending)["status"] in ("Queued", "Running")
    waited = call("GET", f"/runs/{run_id}/result", query={"wait": "0.1"})
    assert waited.status == 202
    poll(lambda: [s for s in app.client.get_run_sync(run_id).steps() if s.status == "Waiting"])
    app.client.send_sync(stepline.Event(name="shop/go", data={"token": token, "value": 42}))
    done = call("GET", f"/runs/{run_id}/result", query={"wait": "20"})
    assert done.status == 200
    assert body(done)["output"] == 42

    failed_id = start(call, "order", {"fail": True})
    failed = call("GET", f"/runs/{failed_id}/result", query={"wait": "20"})
    assert failed.status == 200
    view = body(failed)
    assert view["status"] == "Failed"
    assert view["output"] is None
    assert (view["error"]["name"], view["error"]["message"]) == ("NonRetriableError", "boom")


@pytest.mark.parametrize("wait", ["abc", "-1", "61", "nan", "inf"])
def test_bad_wait_is_400(app: run_management.App, face: str, loop: LoopThread, wait: str) -> None:
    call = Caller(routes_for(app, result_wait=60), face, loop)
    run_id = start(call)
    response = call("GET", f"/runs/{run_id}/result", query={"wait": wait})
    assert response.status == 400
    assert "wait" in body(response)["error"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/runs", "POST"),
        ("PUT", "/runs/", "POST"),
        ("POST", "/runs/01ANY", "GET"),
        ("DELETE", "/runs/01ANY", "GET"),
        ("GET", "/runs/01ANY/cancel", "POST"),
        ("POST", "/runs/01ANY/result", "GET"),
        ("POST", "/runs/01ANY/events", "GET"),
    ],
)
def test_wrong_method_is_405(
    app: run_management.App, face: str, loop: LoopThread, method: str, path: str, allowed: str
) -> None:
    response = Caller(routes_for(app), face, loop)(method, path)
    assert response.status == 405
    assert f"use {allowed}" in body(response)["error"]


@pytest.mark.parametrize(
    "path", ["/", "/nope", "/runs/a/b", "/runs/bad!id", "/runs/01ANY/other", "/run", "/runsx"]
)
def test_unknown_path_is_404(
    app: run_management.App, face: str, loop: LoopThread, path: str
) -> None:
    response = Caller(routes_for(app), face, loop)("GET", path)
    assert response.status == 404
    assert "no route" in body(response)["error"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"", "want a JSON object"),
        (b"[1, 2]", "want a JSON object"),
        ({"data": {}}, "function: want the id"),
        ({"function": ""}, "function: want the id"),
        ({"function": 5}, "function: want the id"),
        ({"function": "order", "data": [1]}, "data: want a JSON object, got list"),
        ({"function": "order", "data": "x"}, "data: want a JSON object, got str"),
        ({"function": "order", "data": None}, "data: want a JSON object, got NoneType"),
        ({"function": "order", "idempotency_key": 5}, "idempotency_key"),
        ({"function": "order", "idempotency_key": ""}, "idempotency_key"),
        ({"function": "order", "idempotency_key": "k" * 257}, "idempotency_key"),
    ],
)
def test_bad_start_is_400(
    app: run_management.App, face: str, loop: LoopThread, raw: object, message: str
) -> None:
    asked: list[AccessRequest] = []
    routes = routes_for(app, authorize=lambda access: asked.append(access) or True)
    response = Caller(routes, face, loop)("POST", "/runs", raw)
    assert response.status == 400
    assert message in body(response)["error"]
    assert asked == [], "a bad request is refused before authorize is asked"


def test_too_big_is_413(app: run_management.App, face: str, loop: LoopThread) -> None:
    huge = json.dumps({"function": "order", "data": {"x": "y" * _webkit.MAX_BODY}}).encode()
    response = Caller(routes_for(app), face, loop)("POST", "/runs", huge)
    assert response.status == 413
    assert "larger than" in body(response)["error"]


def test_only_exposed_functions_and_their_runs(
    app: run_management.App, face: str, loop: LoopThread
) -> None:
    call = Caller(routes_for(app), face, loop)
    for name in ("hidden", "shop-hidden", "nope", "traced"):
        response = call("POST", "/runs", {"function": name})
        assert response.status == 404
        assert "cannot be started here" in body(response)["error"]
    hidden = app.client.start_sync(app.hidden)
    assert hidden.result(timeout=20) == "secret"
    for method, suffix in (
        ("GET", ""),
        ("GET", "/result"),
        ("GET", "/events"),
        ("POST", "/cancel"),
    ):
        response = call(method, f"/runs/{hidden.run_id}{suffix}")
        assert response.status == 404
        assert body(response)["error"] == f"run {hidden.run_id} not found"
    missing = call("GET", "/runs/01NOSUCHRUN")
    assert missing.status == 404
    assert body(missing)["error"] == "run 01NOSUCHRUN not found"


def test_a_local_id_does_not_expose_another_functions_runs(
    tmp_path: Path, face: str, loop: LoopThread
) -> None:
    client = stepline.Client(app_id="a", is_production=False)

    @client.function(id="a-x", trigger=stepline.TriggerEvent(event="a/one"))
    def shown(ctx: stepline.SyncContext) -> str:
        return "shown"

    @client.function(id="x", trigger=stepline.TriggerEvent(event="a/two"))
    def secret(ctx: stepline.SyncContext) -> str:
        return "secret"

    embedded = EmbeddedEngine(client, [shown, secret], database=str(tmp_path / "e.db"), **FAST)
    try:
        routes = RunRoutes(client, [shown], authorize=allow_all)
        call = Caller(routes, face, loop)
        assert (shown.composite_id, secret.composite_id) == ("a-a-x", "a-x")
        run = client.start_sync(secret)
        run.result(timeout=20)
        assert call("GET", f"/runs/{run.run_id}").status == 404
        # "a-x" names the exposed function by its local id, not the other one by its full id
        started = call("POST", "/runs", {"function": "a-x"})
        assert body(started)["function_id"] == "a-a-x"
    finally:
        loop.run(client.aclose())
        embedded.stop()


class OrderInput(pydantic.BaseModel):
    x: int
    note: str = "none"


def test_input_model_422_and_coercion(app: run_management.App, face: str, loop: LoopThread) -> None:
    asked: list[AccessRequest] = []
    routes = routes_for(
        app,
        inputs={app.order: OrderInput},
        authorize=lambda access: asked.append(access) or True,
    )
    call = Caller(routes, face, loop)
    refused = call("POST", "/runs", {"function": "order", "data": {"x": "many"}})
    assert refused.status == 422
    answer = body(refused)
    assert answer["error"] == "data does not match the function's input"
    [problem] = answer["detail"]
    assert problem["loc"] == ["x"]
    assert problem["type"] == "int_parsing"
    assert "url" not in problem
    # authorized first (a refused caller learns nothing about inputs), on the data as sent
    assert [access.data for access in asked] == [{"x": "many"}]

    run_id = start(call, "order", {"x": "5"})
    assert asked[-1].data == {"x": "5"}, "authorize sees the data as sent"
    result = body(call("GET", f"/runs/{run_id}/result", query={"wait": "20"}))
    assert result["output"] == {"n": 2, "x": 5}

    def positive(data: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(data.get("x"), int) or data["x"] <= 0:
            raise ValueError("x must be a positive integer")
        return {"x": data["x"] * 10}

    checked = Caller(routes_for(app, inputs={app.order: positive}), face, loop)
    refused = checked("POST", "/runs", {"function": "order", "data": {"x": -1}})
    assert refused.status == 422
    assert "x must be a positive integer" in body(refused)["error"]
    run_id = start(checked, "order", {"x": 3})
    assert body(checked("GET", f"/runs/{run_id}/result", query={"wait": "20"}))["output"]["x"] == 30


# -- authorize ----------------------------------------------------------------------------


def test_authorize_sees_every_action(app: run_management.App, face: str, loop: LoopThread) -> None:
    asked: list[AccessRequest] = []
    call = Caller(routes_for(app, authorize=lambda a: asked.append(a) or True), face, loop)
    run_id = start(call, "order", {"x": 1})
    call("GET", f"/runs/{run_id}")
    call("GET", f"/runs/{run_id}/result", query={"wait": "20"})
    stream = call("GET", f"/runs/{run_id}/events")
    call.events(stream)
    call("POST", f"/runs/{run_id}/cancel")
    assert [(a.action, a.function_id, a.run_id) for a in asked] == [
        ("start", "shop-order", None),
        ("status", "shop-order", run_id),
        ("result", "shop-order", run_id),
        ("events", "shop-order", run_id),
        ("cancel", "shop-order", run_id),
    ]
    assert asked[0].data == {"x": 1}
    assert all(a.request is call.native for a in asked)


def test_authorize_false_is_403_on_start_and_404_on_run_routes(
    app: run_management.App, face: str, loop: LoopThread
) -> None:
    """403 on start; on a run route the unknown run's 404, so a refusal reveals no run."""
    run_id = app.client.start_sync(app.order).run_id
    call = Caller(routes_for(app, authorize=lambda access: access.action == "status"), face, loop)
    refused = call("POST", "/runs", {"function": "order"})
    assert (refused.status, body(refused)) == (403, {"error": "forbidden"})
    assert call("GET", f"/runs/{run_id}").status == 200
    for method, suffix in (("GET", "/result"), ("GET", "/events"), ("POST", "/cancel")):
        refused = call(method, f"/runs/{run_id}{suffix}")
        assert (refused.status, body(refused)) == (404, {"error": f"run {run_id} not found"})
    # anything but True (or a Principal) refuses: a truthy non-bool is a bug in the hook
    sloppy = Caller(routes_for(app, authorize=lambda access: "yes"), face, loop)
    assert sloppy("POST", "/runs", {"function": "order"}).status == 403
    assert sloppy("GET", f"/runs/{run_id}").status == 404


def test_access_denied_sets_the_status(
    app: run_management.App, face: str, loop: LoopThread
) -> None:
    def hook(access: AccessRequest) -> bool:
        raise AccessDenied("log in first", status=401)

    call = Caller(routes_for(app, authorize=hook), face, loop)
    refused = call("POST", "/runs", {"function": "order"})
    assert (refused.status, body(refused)) == (401, {"error": "log in first"})
    run_id = app.client.start_sync(app.order).run_id
    assert call("GET", f"/runs/{run_id}").status == 401


def test_async_authorize(app: run_management.App, face: str, loop: LoopThread) -> None:
    async def hook(access: AccessRequest) -> bool:
        if access.action == "cancel":
            raise AccessDenied("no cancelling", status=403)
        return access.action == "start"

    call = Caller(routes_for(app, authorize=hook), face, loop)
    if face == "sync":
        with pytest.raises(stepline.ConfigError, match="authorize is async"):
            call("POST", "/runs", {"function": "order"})
        return
    run_id = start(call)
    assert call("GET", f"/runs/{run_id}").status == 404  # a refused run route: as unknown
    denied = call("POST", f"/runs/{run_id}/cancel")
    assert (denied.status, body(denied)) == (404, {"error": f"run {run_id} not found"})


def test_configuration_errors(app: run_management.App) -> None:
    with pytest.raises(stepline.ConfigError, match="allow_all"):
        RunRoutes(app.client, [app.order], authorize=None)  # type: ignore[arg-type]
    with pytest.raises(stepline.ConfigError, match="at least one function"):
        RunRoutes(app.client, [], authorize=allow_all)


def test_rate_limited_start_is_409(app: run_management.App, face: str, loop: LoopThread) -> None:
    call = Caller(routes_for(app), face, loop)
    data = {"k": f"webkit-{face}"}
    start(call, "limited", data)
    refused = call("POST", "/runs", {"function": "limited", "data": data})
    assert refused.status == 409
    assert "rate_limited" in body(refused)["error"]


# -- live events ------------------------------------------------------------------------


def test_events_of_an_ended_run(app: run_management.App, face: str, loop: LoopThread) -> None:
    call = Caller(routes_for(app), face, loop)
    run_id = start(call, "order", {"x": "sse"})
    call("GET", f"/runs/{run_id}/result", query={"wait": "20"})
    stream = call("GET", f"/runs/{run_id}/events")
    assert stream.status == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.headers["cache-control"] == "no-cache"
    assert stream.body == b""
    events = call.events(stream)
    assert [name for name, _ in events] == ["retry", "status", "step", "step", "result"]
    assert events[1][1]["status"] == "Completed"
    assert [(data["name"], data["status"]) for _, data in events[2:4]] == [
        ("a", "Completed"),
        ("b", "Completed"),
    ]
    assert events[-1][1]["output"] == {"n": 2, "x": "sse"}


def test_events_follow_a_live_run(app: run_management.App, face: str, loop: LoopThread) -> None:
    call = Caller(routes_for(app), face, loop)
    token = f"sse-{face}"
    run_id = start(call, "waiter", {"token": token})
    sent: list[str] = []

    def on_event(name: str, data: Any) -> None:
        # once the run is parked on its wait, send what it waits for (from the stream's
        # own thread: the stream is still open and keeps polling)
        if name == "step" and data["status"] == "Waiting" and not sent:
            event = stepline.Event(name="shop/go", data={"token": token, "value": "live"})
            sent.extend(app.client.send_sync(event))

    events = call.events(call("GET", f"/runs/{run_id}/events"), on_event)
    names = [name for name, _ in events]
    assert sent, "the stream showed the waiting step"
    assert names[:2] == ["retry", "status"]
    assert names[-1] == "result"
    assert events[-1][1]["status"] == "Completed"
    assert events[-1][1]["output"] == "live"
    steps = [data for name, data in events if name == "step"]
    assert [(s["name"], s["status"]) for s in steps][-2:] == [
        ("go", "Waiting"),
        ("go", "Completed"),
    ]
    statuses = [data["status"] for name, data in events if name == "status"]
    assert statuses[-1] == "Completed"
    assert len(statuses) >= 2, "the status changed while the stream watched"


def test_events_keepalive(app: run_management.App, face: str, loop: LoopThread) -> None:
    call = Caller(routes_for(app, keepalive=0.0), face, loop)
    token = f"keepalive-{face}"
    run_id = start(call, "waiter", {"token": token})
    stream = call("GET", f"/runs/{run_id}/events")
    chunks = call.routes.chunks_sync(stream) if face == "sync" else None
    if chunks is None:

        async def first_keepalive() -> None:
            async for chunk in call.routes.chunks_async(stream):
                if chunk.startswith(b":"):
                    return

        loop.run(first_keepalive())  # closing the iterator ends the polling
    else:
        assert any(chunk == b": keepalive\n\n" for chunk in chunks)
        chunks.close()
    app.client.get_run_sync(run_id).cancel()


# -- the engine failing --------------------------------------------------------------------


def test_unreachable_engine_is_502(face: str, loop: LoopThread) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    dead = run_management.build(api_base_url=url, event_api_base_url=url)
    call = Caller(RunRoutes(dead.client, [dead.order], authorize=allow_all), face, loop)
    try:
        for method, path, payload in (
            ("POST", "/runs", {"function": "order"}),
            ("GET", "/runs/01ANY", None),
            ("GET", "/runs/01ANY/result", None),
        ):
            response = call(method, path, payload)
            assert response.status == 502
            error = body(response)["error"]
            assert error.startswith("the workflow engine failed: ")
            assert f"engine at {url} unreachable" in error
    finally:
        loop.run(dead.client.aclose())


def test_function_the_engine_does_not_know_is_404_saying_to_sync(
    face: str, loop: LoopThread, app: run_management.App
) -> None:
    """An unsynced app: not 502 "the workflow engine failed", but 404 with how to sync the app."""

    @app.client.function(id="unsynced", trigger=stepline.TriggerEvent(event="shop/unsynced"))
    def unsynced(ctx: stepline.SyncContext) -> None:
        return None

    call = Caller(RunRoutes(app.client, [unsynced], authorize=allow_all), face, loop)
    response = call("POST", "/runs", {"function": "unsynced"})
    assert response.status == 404
    error = body(response)["error"]
    assert "'shop-unsynced' is not registered" in error
    assert "stepline dev -u" in error
    assert "PUT" in error


class Scripted:
    """A transport answering engine requests from a script, by path (sync and async)."""

    def __init__(self, answers: dict[str, list[effects.HttpResponse]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def _answer(self, effect: object) -> effects.HttpResponse | None:
        if isinstance(effect, effects.Sleep):
            return None
        assert isinstance(effect, effects.HttpRequest)
        path = effect.url.split("://", 1)[1].split("/", 1)[1].split("?")[0]
        self.asked.append(path)
        return self.answers[path].pop(0)

    def perform(self, effect: object) -> effects.HttpResponse | None:
        return self._answer(effect)

    async def aperform(self, effect: object) -> effects.HttpResponse | None:
        return self._answer(effect)


def test_an_engine_503_is_503_with_its_retry_after(face: str, loop: LoopThread) -> None:
    """The engine's database is locked or full: try again later, not a 502."""
    app = run_management.build(api_base_url="http://engine.test")
    full = {"error": "the database is unavailable (disk full); retry in 5 s", "retry_after": 5}
    script = Scripted(
        {
            "v1/functions/shop-order/runs": [
                effects.HttpResponse(503, {"retry-after": "5"}, json.dumps(full).encode()),
                effects.HttpResponse(503, {}, b"Service Unavailable"),  # a proxy's: no wait
            ],
        }
    )
    app.client.connection.sync_transport.perform = script.perform  # type: ignore[method-assign]
    app.client.connection.async_transport.perform = script.aperform  # type: ignore[method-assign]
    call = Caller(routes_for(app), face, loop)
    response = call("POST", "/runs", {"function": "order"})
    assert response.status == 503
    assert response.headers["retry-after"] == "5"
    error = body(response)["error"]
    assert error.startswith("the workflow engine is unavailable, try again later: ")
    assert error.endswith("with 503: the database is unavailable (disk full); retry in 5 s")
    response = call("POST", "/runs", {"function": "order"})
    assert response.status == 503
    assert "retry-after" not in response.headers


def test_an_engine_failure_mid_stream_ends_it_with_an_error_event(
    face: str, loop: LoopThread
) -> None:
    app = run_management.build(api_base_url="http://engine.test")
    run = {"run_id": "01RUN", "function_id": "shop-order", "status": "Running", "output": None}

    def ok(data: object) -> effects.HttpResponse:
        return effects.HttpResponse(200, {}, json.dumps({"data": data}).encode())

    step = {"id": "s1", "name": "a", "op": "StepRun", "status": "Completed", "attempts": 0}
    script = Scripted(
        {
            "v1/runs/01RUN": [ok(run), ok(run), ok(run)],
            "v1/runs/01RUN/steps": [ok([step]), effects.HttpResponse(0, {}, b"", error="reset")],
            "v1/runs/01RUN/stream": [
                effects.HttpResponse(200, {}, b'{"data": [], "next": 0, "ended": false}')
            ],
        }
    )
    app.client.connection.sync_transport.perform = script.perform  # type: ignore[method-assign]
    app.client.connection.async_transport.perform = script.aperform  # type: ignore[method-assign]
    call = Caller(routes_for(app), face, loop)
    events = call.events(call("GET", "/runs/01RUN/events"))
    assert [name for name, _ in events] == ["retry", "status", "step", "error"]
    assert events[-1][1] == {
        "error": "the workflow engine failed: engine at http://engine.test unreachable: reset"
    }
    assert script.asked == [
        "v1/runs/01RUN",  # the route's own look, then the run's feed
        "v1/runs/01RUN",
        "v1/runs/01RUN/steps",
        "v1/runs/01RUN/stream",
        "v1/runs/01RUN",
        "v1/runs/01RUN/steps",
    ]
