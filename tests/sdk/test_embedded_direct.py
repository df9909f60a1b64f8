"""The embedded client's start and run reads, answered without the ASGI app (``_direct``).

Each request is sent both ways, through the direct path (``request_sync(client=True)``,
and the async path on the engine's loop) and through the engine's REST app, and the
answers must be the same: status, body, content type and server kind, errors included.
A mount's requests (a browser's: a dashboard session may authorize them) never take it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import stepline
from stepline._transport import asgi_call, effects
from stepline.embedded import ORIGIN, EmbeddedEngine, _direct
from tests._support.engines import FAST
from tests._support.polling import wait_until
from tests.apps import run_management
from tests.apps.run_management import EVENT_KEY, SIGNING_KEY

ORDER = "shop-order"


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[EmbeddedEngine]:
    app = run_management.build()
    engine = EmbeddedEngine(app.client, app.functions, database=str(tmp_path / "d.db"), **FAST)
    engine.start()
    try:
        yield engine
    finally:
        engine.stop()


def _request(method: str, path: str, body: Any = None, **headers: str) -> effects.HttpRequest:
    raw = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
    return effects.HttpRequest(method, ORIGIN + path, headers, raw, timeout=10.0)


def _through_asgi(embedded: EmbeddedEngine, request: effects.HttpRequest) -> effects.HttpResponse:
    running = embedded._running
    assert running is not None
    call = asgi_call.call(running.api, request)
    return asyncio.run_coroutine_threadsafe(call, running.loop).result(15)


def _async(embedded: EmbeddedEngine, request: effects.HttpRequest) -> effects.HttpResponse:
    return asyncio.run(embedded.request_async(request, client=True))


def _seen(answer: effects.HttpResponse) -> tuple[int, Any, str, str]:
    headers = answer.headers
    return (
        answer.status,
        json.loads(answer.body),
        headers.get("content-type", ""),
        headers.get("x-inngest-server-kind", ""),
    )


REFUSED = [
    ("POST", f"/v1/functions/{ORDER}/runs", b"[1, 2]"),
    ("POST", f"/v1/functions/{ORDER}/runs", b"{not json"),
    ("POST", f"/v1/functions/{ORDER}/runs", {"data": "x"}),
    ("POST", f"/v1/functions/{ORDER}/runs", {"idempotency_key": "k" * 300}),
    ("POST", f"/v1/functions/{ORDER}/runs", {"attributes": {"bad name!": 1}}),
    ("POST", f"/v1/functions/{ORDER}/runs", {"started_by": 5}),
    ("POST", f"/v1/functions/{ORDER}/runs", {"run_id": "not a ulid"}),
    ("POST", "/v1/functions/shop-nope/runs", {}),
    ("POST", "/v1/functions/shop%00nope/runs", {}),
    ("GET", "/v1/runs/01ARZ3NDEKTSV4RRFFQ69G5FAV", None),
    ("GET", "/v1/runs/01ARZ3NDEKTSV4RRFFQ69G5FAV?wait=5", None),
    ("GET", "/v1/runs/x?wait=abc", None),
    ("GET", "/v1/runs/x?wait=61", None),
    ("GET", "/v1/runs/x%00y", None),
]


@pytest.mark.parametrize(("method", "path", "body"), REFUSED)
def test_refusals_are_the_rest_apps(
    embedded: EmbeddedEngine, method: str, path: str, body: Any
) -> None:
    request = _request(method, path, body)
    assert _direct.match(request, ORIGIN) is not None, "answered directly"
    rest = _seen(_through_asgi(embedded, request))
    assert 400 <= rest[0] < 500, rest
    assert _seen(embedded.request_sync(request, client=True)) == rest
    assert _seen(_async(embedded, request)) == rest


def test_starts_and_reads_are_the_rest_apps(embedded: EmbeddedEngine) -> None:
    start = _request("POST", f"/v1/functions/{ORDER}/runs", {"data": {"x": 1}})
    direct, rest = embedded.request_sync(start, client=True), _through_asgi(embedded, start)
    assert (direct.status, rest.status) == (201, 201)
    started = [json.loads(a.body)["data"] for a in (direct, rest, _async(embedded, start))]
    assert [{**s, "run_id": ""} for s in started] == [
        {"run_id": "", "function_id": ORDER, "created": True}
    ] * 3
    assert len({s["run_id"] for s in started}) == 3
    assert _seen(direct)[2:] == _seen(rest)[2:]

    for s in started:
        read = _request("GET", f"/v1/runs/{s['run_id']}?wait=10")
        ended = _seen(embedded.request_sync(read, client=True))
        assert ended[1]["data"]["status"] == "Completed"
        assert ended[1]["data"]["output"] == {"n": 2, "x": 1}
        assert _seen(_through_asgi(embedded, read)) == ended
        assert _seen(_async(embedded, read)) == ended
        now = _request("GET", f"/v1/runs/{s['run_id']}")
        assert _seen(embedded.request_sync(now, client=True)) == ended


def test_an_idempotent_start_and_a_skipped_one(embedded: EmbeddedEngine) -> None:
    keyed = _request("POST", f"/v1/functions/{ORDER}/runs", {"idempotency_key": "once"})
    first, again = embedded.request_sync(keyed, client=True), _through_asgi(embedded, keyed)
    assert (first.status, again.status) == (201, 200)
    assert json.loads(first.body)["data"]["run_id"] == json.loads(again.body)["data"]["run_id"]
    assert _seen(embedded.request_sync(keyed, client=True)) == _seen(again)

    limited = _request("POST", "/v1/functions/shop-limited/runs", {"data": {"k": "a"}})
    assert embedded.request_sync(limited, client=True).status == 201
    skipped = _seen(embedded.request_sync(limited, client=True))  # rate limited: no run
    assert skipped[0] == 409
    assert skipped[1]["error"].startswith("'shop-limited' started no run: ")
    rest = _seen(_through_asgi(embedded, limited))
    assert (rest[0], rest[1]["error"], rest[2:]) == (409, skipped[1]["error"], skipped[2:])
    assert rest[1].keys() == skipped[1].keys()
    assert skipped[1].keys() == {"code", "message", "details", "error", "event_id"}
    assert skipped[1]["details"] == {"event_id": skipped[1]["event_id"]}


def test_a_production_engine_checks_the_bearer_token_either_way(tmp_path: Path) -> None:
    app = run_management.build(is_production=True, signing_key=SIGNING_KEY, event_key=EVENT_KEY)
    embedded = EmbeddedEngine(app.client, app.functions, database=str(tmp_path / "p.db"), **FAST)
    embedded.start()
    try:
        for request in (
            _request("POST", f"/v1/functions/{ORDER}/runs", {}),
            _request("GET", "/v1/runs/01ARZ3NDEKTSV4RRFFQ69G5FAV"),
            _request("GET", "/v1/runs/01ARZ3NDEKTSV4RRFFQ69G5FAV", authorization="Bearer nope"),
        ):
            rest = _seen(_through_asgi(embedded, request))
            assert rest[0] == 401
            assert _seen(embedded.request_sync(request, client=True)) == rest
            assert _seen(_async(embedded, request)) == rest
        # the client's own requests carry its key
        assert app.client.start_sync(app.order, {"x": 2}).result(timeout=20) == {"n": 2, "x": 2}
    finally:
        embedded.stop()


def test_an_oversized_start_is_refused_with_413(embedded: EmbeddedEngine) -> None:
    limit = embedded.engine.settings.max_body_bytes
    request = _request("POST", f"/v1/functions/{ORDER}/runs", b" " * (limit + 1))
    assert embedded.request_sync(request, client=True).status == 413
    assert _through_asgi(embedded, request).status == 413


def test_the_client_starts_and_waits_without_the_asgi_app(
    embedded: EmbeddedEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = embedded.client

    async def refused(app: object, request: effects.HttpRequest) -> effects.HttpResponse:
        raise AssertionError(f"{request.method} {request.url} went through the ASGI app")

    def crossed(request: effects.HttpRequest) -> object:
        raise AssertionError(f"{request.method} {request.url} crossed to the engine's loop")

    monkeypatch.setattr(asgi_call, "call", refused)
    order = next(fn for fn in embedded.functions if fn.id == "order")
    with monkeypatch.context() as blocking:  # a blocking caller: answered on its own thread
        blocking.setattr(embedded._requests, "_submit", crossed)
        handle = client.start_sync(order, {"x": 3})
        assert handle.result(timeout=20) == {"n": 2, "x": 3}
        assert client.get_run_sync(handle.run_id).status() is stepline.RunStatus.COMPLETED

    async def from_a_loop() -> Any:
        started = await client.start(order, {"x": 4})
        try:
            return await started.result(timeout=20)
        finally:
            await client.aclose()

    assert asyncio.run(from_a_loop()) == {"n": 2, "x": 4}


def test_a_blocking_start_then_its_wait_reads_no_run_until_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # start_sync(...).result() is two requests: the wait is registered from the start's
    # commit on (RunWaiters.fresh), so it needs no read to know the run had not ended
    from stepline.engine._runs import waiters

    monkeypatch.setattr(waiters, "RECHECK_SECONDS", 30.0)  # no recheck under CI load
    client = stepline.Client(app_id="gate", is_production=False, environ={})
    gate = threading.Event()

    @client.function(id="gated", trigger=stepline.TriggerEvent(event="t/gated"), retries=0)
    def gated(ctx: stepline.SyncContext) -> object:
        ctx.step.run("held", lambda: gate.wait(20))  # until the wait has begun
        return ctx.event.data["x"]

    embedded = EmbeddedEngine(client, [gated], database=str(tmp_path / "g.db"), **FAST)
    embedded.start()
    try:
        engine = embedded.engine
        reads: list[str] = []
        read = engine.get_run_blocking

        def counted(run_id: str) -> Any:
            reads.append(run_id)
            return read(run_id)

        monkeypatch.setattr(engine, "get_run_blocking", counted)
        for x in range(3):
            gate.clear()
            handle = client.start_sync(gated, {"x": x})

            def open_once_waited() -> None:
                wait_until(lambda: engine._waiters.count == 1, message="the wait to begin")
                gate.set()

            opener = threading.Thread(target=open_once_waited)
            opener.start()
            assert handle.result(timeout=20) == x
            opener.join(20)
        assert reads == []

        # a run whose wait was not registered at its start (a read of another run's
        # handle, made before it started) is read once, as before
        gate.set()
        handle = client.start_sync(gated, {"x": 9})
        wait_until(lambda: client.get_run_sync(handle.run_id).status().terminal)
        reads.clear()
        assert client.get_run_sync(handle.run_id).result(timeout=20) == 9
        assert reads == [handle.run_id]
    finally:
        embedded.stop()


def test_a_start_right_after_the_engine_started_is_adopted_by_its_worker(tmp_path: Path) -> None:
    # the worker leases from the moment the engine has started, not from its loop's first
    # turn: a start in between takes its first call at once, and its wait reads nothing
    from stepline.engine import Engine, EngineSettings

    client = stepline.Client(app_id="first", is_production=False, environ={})

    @client.function(id="one", trigger=stepline.TriggerEvent(event="t/one"), retries=0)
    def one(ctx: stepline.SyncContext) -> object:
        return 1

    async def body() -> bool:
        engine = Engine(EngineSettings(database_url=str(tmp_path / "w.db"), **FAST))
        await engine.start(sync=False)
        try:
            return engine.worker.leasing  # no await since start: the loop has not turned
        finally:
            await engine.stop()

    assert asyncio.run(body()) is True


def test_a_run_ended_on_the_sdks_thread_answers_its_blocked_wait_without_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the run's calls go on on the SDK's thread, which commits its end: the caller
    # blocked in result() is woken from there, while the engine's loop is still busy
    from stepline.engine._runs import waiters

    monkeypatch.setattr(waiters, "RECHECK_SECONDS", 30.0)  # woken, not found by a recheck
    client = stepline.Client(app_id="busy", is_production=False, environ={}, checkpointing=False)
    hold = threading.Event()
    embedded: EmbeddedEngine | None = None

    def busy_loop() -> None:  # once result() waits, the loop blocks until told
        assert embedded is not None
        running = embedded._running
        assert running is not None
        wait_until(lambda: embedded.engine._waiters.count == 1, message="the wait to begin")
        blocked = threading.Event()
        running.loop.call_soon_threadsafe(lambda: blocked.set() or hold.wait(20))
        assert blocked.wait(10)

    @client.function(id="two", trigger=stepline.TriggerEvent(event="t/two"), retries=0)
    def two(ctx: stepline.SyncContext) -> object:
        ctx.step.run("first", lambda: 1)
        ctx.step.run("last", busy_loop)
        return "done"

    embedded = EmbeddedEngine(
        client, [two], database=str(tmp_path / "b.db"), checkpointing=False, **FAST
    )
    embedded.start()
    try:
        handle = client.start_sync(two, {})
        began = time.monotonic()
        assert handle.result(timeout=20) == "done"
        assert time.monotonic() - began < 10, "answered once the loop was free, not before"
        assert not hold.is_set()
    finally:
        hold.set()
        embedded.stop()


def test_a_mounts_requests_go_through_the_asgi_app(
    embedded: EmbeddedEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    call = asgi_call.call

    async def counted(app: Any, request: effects.HttpRequest) -> effects.HttpResponse:
        seen.append(f"{request.method} {request.url.removeprefix(ORIGIN)}")
        return await call(app, request)

    monkeypatch.setattr(asgi_call, "call", counted)
    read = _request("GET", "/v1/runs/01ARZ3NDEKTSV4RRFFQ69G5FAV")
    start = _request("POST", f"/v1/functions/{ORDER}/runs", {})
    assert embedded.request_sync(read).status == 404
    assert asyncio.run(embedded.request_async(start)).status == 201
    assert seen == ["GET /v1/runs/01ARZ3NDEKTSV4RRFFQ69G5FAV", f"POST /v1/functions/{ORDER}/runs"]
    assert embedded.request_sync(read, client=True).status == 404
    assert len(seen) == 2, "the client's own: answered directly"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/runs/r?wait=1&x=2"),
        ("GET", "/v1/runs/r/steps"),
        ("GET", "/v1/runs"),
        ("POST", "/v1/functions/f/runs?x=1"),
        ("DELETE", "/v1/runs/r"),
        ("POST", "/v1/runs/r/cancel"),
    ],
)
def test_other_requests_go_to_the_asgi_app(method: str, path: str) -> None:
    assert _direct.match(_request(method, path), ORIGIN) is None


def test_ids_are_percent_decoded() -> None:
    call = _direct.match(_request("POST", "/v1/functions/app-a%2Fb%20c/runs"), ORIGIN)
    assert call is not None
    assert call.ident == "app-a/b c"
    read = _direct.match(_request("GET", "/v1/runs/r%2D1?wait=2.5"), ORIGIN)
    assert read is not None
    assert (read.ident, read.wait) == ("r-1", "2.5")


# -- POST /v1/functions/{id}/runs?wait= (client.execute) ---------------------------------------


def test_a_start_with_wait_is_the_rest_apps(embedded: EmbeddedEngine) -> None:
    path = f"/v1/functions/{ORDER}/runs?wait=10"
    fresh = _request("POST", path, {"data": {"x": 5}})
    answers = [embedded.request_sync(fresh, client=True), _through_asgi(embedded, fresh)]
    answers.append(_async(embedded, fresh))
    seen = [_seen(a) for a in answers]
    assert [s[0] for s in seen] == [201] * 3
    assert len({s[2:] for s in seen}) == 1
    runs = [s[1]["data"]["run"] for s in seen]
    assert [(r["status"], r["output"]) for r in runs] == [("Completed", {"n": 2, "x": 5})] * 3
    assert [r["run_id"] for r in runs] == [s[1]["data"]["run_id"] for s in seen]
    assert len({r["run_id"] for r in runs}) == 3
    assert len({tuple(sorted(r)) for r in runs}) == 1, "the same fields"
    for run in runs:  # the run as GET /v1/runs/{id} shows it
        read = _request("GET", f"/v1/runs/{run['run_id']}")
        assert json.loads(_through_asgi(embedded, read).body)["data"] == run

    # one run, through each: a start of its key answers the same bytes every way
    keyed = _request("POST", path, {"data": {"x": 6}, "idempotency_key": "execute-once"})
    first = _seen(embedded.request_sync(keyed, client=True))
    assert first[0] == 201
    again = _seen(_through_asgi(embedded, keyed))
    assert again[0] == 200
    assert again[1]["data"] == {**first[1]["data"], "created": False}
    assert _seen(embedded.request_sync(keyed, client=True)) == again
    assert _seen(_async(embedded, keyed)) == again


@pytest.mark.slow
def test_a_start_whose_wait_runs_out_is_the_rest_apps(embedded: EmbeddedEngine) -> None:
    start = _request("POST", "/v1/functions/shop-sleeper/runs?wait=0.2", {})
    for answer in (
        embedded.request_sync(start, client=True),
        _through_asgi(embedded, start),
        _async(embedded, start),
    ):
        assert answer.status == 201
        data = json.loads(answer.body)["data"]
        assert data["run"]["run_id"] == data["run_id"]
        assert data["run"]["status"] in ("Queued", "Running")
        assert embedded.client.get_run_sync(data["run_id"]).cancel() is stepline.RunStatus.CANCELLED


@pytest.mark.parametrize("wait", ["abc", "61", "-1", "nan", "%00"])
def test_a_start_with_a_bad_wait_is_the_rest_apps_and_starts_nothing(
    embedded: EmbeddedEngine, wait: str
) -> None:
    tag = "bad-wait"  # a fresh engine: no run has it
    body = {"data": {"x": 1}, "attributes": {"tag": tag}}
    request = _request("POST", f"/v1/functions/{ORDER}/runs?wait={wait}", body)
    assert _direct.match(request, ORIGIN) is not None, "answered directly"
    rest = _seen(_through_asgi(embedded, request))
    assert rest[0] == 400, rest
    assert _seen(embedded.request_sync(request, client=True)) == rest
    assert _seen(_async(embedded, request)) == rest
    runs, _ = embedded.client.list_runs_sync(attributes={"tag": tag})
    assert runs == [], "a refused start started a run"


def test_execute_is_answered_without_the_asgi_app(
    embedded: EmbeddedEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = embedded.client
    calls: list[tuple[str, str | None]] = []
    answer_sync = _direct.answer_sync

    async def refused(app: object, request: effects.HttpRequest) -> effects.HttpResponse:
        raise AssertionError(f"{request.method} {request.url} went through the ASGI app")

    def crossed(request: effects.HttpRequest) -> object:
        raise AssertionError(f"{request.method} {request.url} crossed to the engine's loop")

    def counted(engine: Any, call: _direct.Call) -> effects.HttpResponse:
        calls.append((call.route, call.wait))
        return answer_sync(engine, call)

    monkeypatch.setattr(asgi_call, "call", refused)
    order = next(fn for fn in embedded.functions if fn.id == "order")
    sleeper = next(fn for fn in embedded.functions if fn.id == "sleeper")
    with monkeypatch.context() as blocking:  # a blocking caller: answered on its own thread
        blocking.setattr(embedded._requests, "_submit", crossed)
        blocking.setattr(_direct, "answer_sync", counted)
        assert client.execute_sync(order, {"x": 7}) == {"n": 2, "x": 7}
        assert calls == [(_direct.START_ROUTE, "25")], "one request, which waited"
        with pytest.raises(stepline.RunFailedError, match="boom"):
            client.execute_sync(order, {"fail": True}, timeout=20)
        assert calls[1:] == [(_direct.START_ROUTE, "20")]
        with pytest.raises(stepline.RunTimeoutError):
            client.execute_sync(sleeper, timeout=0.2)
        assert [route for route, _ in calls[2:]] == [_direct.START_ROUTE, _direct.RUN_ROUTE]

    async def from_a_loop() -> Any:
        try:
            return await client.execute(order, {"x": 8})
        finally:
            await client.aclose()

    assert asyncio.run(from_a_loop()) == {"n": 2, "x": 8}
