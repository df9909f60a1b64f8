"""What a durable endpoint does with retries, failures, flow control and budgets.

FastAPI's ``TestClient`` drives each route (the logic is framework-neutral, in
``stepline._endpoints``); the engine is embedded, on SQLite, with retries at once. A
separate engine's answers are scripted (its transport replaced) where only they matter.
Callers (``authorize``'s principal scoping keys) and what a run stores of the request
are checked over every framework in ``test_endpoint_contract.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fastapi
import fastapi.testclient
import httpx
import pytest

import stepline
import stepline.fastapi
import stepline.web
from stepline._transport import effects
from stepline.embedded import EmbeddedEngine
from tests._support import sqlite_faults
from tests._support.polling import wait_until


@contextlib.contextmanager
def app_with(
    tmp_path: Path, declare: Callable[[stepline.Client, fastapi.FastAPI], None]
) -> Iterator[tuple[httpx.Client, stepline.Client]]:
    client = stepline.Client("sem", is_production=False, environ={})
    app = fastapi.FastAPI(lifespan=stepline.fastapi.lifespan(client))
    declare(client, app)
    engine = EmbeddedEngine(
        client, [], database=str(tmp_path / "e.db"), poll_interval=0.05, retry_scale=0.0
    )
    stepline.fastapi.serve(app, client, [], engine=engine)
    with fastapi.testclient.TestClient(app, base_url="http://localhost") as http:
        yield http, client


def finished(client: stepline.Client, run_id: str) -> stepline.RunInfo:
    """The run once it has ended (the engine goes on after a 202)."""
    found: list[stepline.RunInfo] = []

    def ended() -> bool:
        found[:] = [client.get_run_sync(run_id).describe()]
        return found[0].status.terminal

    wait_until(ended, timeout=15, message=lambda: f"run {run_id} to end: {found}")
    return found[0]


def test_a_step_that_fails_is_retried_by_the_engine_after_a_202(tmp_path: Path) -> None:
    attempts: list[int] = []

    def declare(client: stepline.Client, app: fastapi.FastAPI) -> None:
        @app.post("/flaky")
        @stepline.fastapi.durable(client, retries=2)
        async def flaky(ctx: stepline.EndpointContext) -> dict[str, int]:
            def once() -> int:
                attempts.append(ctx.attempt)
                if len(attempts) == 1:
                    raise RuntimeError("card network timed out")
                return len(attempts)

            return {"tries": await ctx.step.run("charge", once)}

    with app_with(tmp_path, declare) as (http, client):
        answer = http.post("/flaky")
        assert answer.status_code == 202, answer.text
        run = finished(client, answer.headers["x-stepline-run-id"])
        assert run.status is stepline.RunStatus.COMPLETED
        assert run.output["json"] == {"tries": 2}
        assert attempts == [0, 1]


def test_non_retriable_error_fails_the_run_with_a_500_without_the_stack(tmp_path: Path) -> None:
    def declare(client: stepline.Client, app: fastapi.FastAPI) -> None:
        @app.post("/refuse")
        @stepline.fastapi.durable(client, retries=5)
        async def refuse(ctx: stepline.EndpointContext) -> None:
            await ctx.step.run("check", lambda: 1)
            raise stepline.NonRetriableError("card declined")

    with app_with(tmp_path, declare) as (http, client):
        answer = http.post("/refuse")
        assert answer.status_code == 500, answer.text
        body = answer.json()
        assert body["error"] == "the endpoint failed"
        assert body["message"] == "card declined"
        assert "stack" not in body
        run = client.get_run_sync(answer.headers["x-stepline-run-id"]).describe()
        assert run.status is stepline.RunStatus.FAILED


def test_a_handler_may_answer_a_client_error_without_failing_the_run(tmp_path: Path) -> None:
    def declare(client: stepline.Client, app: fastapi.FastAPI) -> None:
        @app.post("/validate")
        @stepline.fastapi.durable(client)
        def validate(ctx: stepline.SyncEndpointContext) -> object:
            body = ctx.request.json()
            if "sku" not in body:
                return stepline.EndpointResponse({"error": "sku is required"}, status=422)
            return ctx.step.run("reserve", lambda: {"reserved": body["sku"]})

    with app_with(tmp_path, declare) as (http, _client):
        assert http.post("/validate", json={}).status_code == 422
        assert http.post("/validate", json={"sku": "b"}).json() == {"reserved": "b"}


def test_a_throttled_endpoint_answers_202_instead_of_waiting(tmp_path: Path) -> None:
    def declare(client: stepline.Client, app: fastapi.FastAPI) -> None:
        throttle = stepline.Throttle(limit=1, period=dt.timedelta(minutes=1))

        @app.post("/paced")
        @stepline.fastapi.durable(client, throttle=throttle)
        async def paced(ctx: stepline.EndpointContext) -> str:
            return await ctx.step.run("work", lambda: "done")

    with app_with(tmp_path, declare) as (http, _client):
        assert http.post("/paced").status_code == 200
        second = http.post("/paced")
        assert second.status_code == 202
        assert second.headers["location"].endswith("/result")


def test_a_rate_limited_endpoint_answers_429(tmp_path: Path) -> None:
    def declare(client: stepline.Client, app: fastapi.FastAPI) -> None:
        limit = stepline.RateLimit(limit=1, period=dt.timedelta(minutes=1))

        @app.post("/limited")
        @stepline.fastapi.durable(client, rate_limit=limit)
        async def limited(ctx: stepline.EndpointContext) -> str:
            return "ok"

    with app_with(tmp_path, declare) as (http, _client):
        assert http.post("/limited").status_code == 200
        refused = http.post("/limited")
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert "rate" in refused.json()["error"]


def test_a_concurrency_limited_endpoint_answers_202_while_its_slot_is_taken(
    tmp_path: Path,
) -> None:
    release = threading.Event()
    inside = threading.Event()

    def declare(client: stepline.Client, app: fastapi.FastAPI) -> None:
        @app.post("/single")
        @stepline.fastapi.durable(client, concurrency=1)
        def single(ctx: stepline.SyncEndpointContext) -> str:
            def hold() -> str:
                inside.set()
                release.wait(10)
                return "held"

            return ctx.step.run("hold", hold)

    with app_with(tmp_path, declare) as (http, client):
        first: list[httpx.Response] = []
        holder = threading.Thread(target=lambda: first.append(http.post("/single")))
        holder.start()
        assert inside.wait(10)
        second = http.post("/single")
        assert second.status_code == 202, second.text
        release.set()
        holder.join(10)
        assert first[0].status_code == 200
        assert first[0].json() == "held"
        run = finished(client, second.headers["x-stepline-run-id"])
        assert run.status is stepline.RunStatus.COMPLETED


@pytest.mark.slow
def test_the_time_budget_hands_the_run_to_the_engine(tmp_path: Path) -> None:
    ran: list[str] = []

    def declare(client: stepline.Client, app: fastapi.FastAPI) -> None:
        @app.post("/long")
        @stepline.fastapi.durable(client, budget=0.2)
        def long(ctx: stepline.SyncEndpointContext) -> list[str]:
            def work(name: str) -> str:
                ran.append(name)
                time.sleep(0.15)
                return name

            return [ctx.step.run(n, work, n) for n in ("one", "two", "three")]

    with app_with(tmp_path, declare) as (http, client):
        answer = http.post("/long")
        assert answer.status_code == 202, answer.text
        run = finished(client, answer.headers["x-stepline-run-id"])
        assert run.output["json"] == ["one", "two", "three"]
        assert ran == ["one", "two", "three"]  # each once, across the hand-over


def test_a_parallel_group_runs_through_the_engine(tmp_path: Path) -> None:
    def declare(client: stepline.Client, app: fastapi.FastAPI) -> None:
        @app.post("/fan")
        @stepline.fastapi.durable(client)
        async def fan(ctx: stepline.EndpointContext) -> list[Any]:
            first = await ctx.step.run("first", lambda: 1)
            both = await ctx.step.parallel(
                [
                    lambda: ctx.step.run("left", lambda: first + 1),
                    lambda: ctx.step.run("right", lambda: first + 2),
                ]
            )
            return list(both)

    with app_with(tmp_path, declare) as (http, client):
        answer = http.post("/fan")
        assert answer.status_code == 202
        run = finished(client, answer.headers["x-stepline-run-id"])
        assert run.output["json"] == [2, 3]


def test_an_unserved_client_endpoint_is_a_clear_500(tmp_path: Path) -> None:
    client = stepline.Client("lone", is_production=False, environ={})
    other = stepline.Client("other", is_production=False, environ={})
    app = fastapi.FastAPI()

    @app.post("/lone")
    @stepline.fastapi.durable(client)
    async def lone(ctx: stepline.EndpointContext) -> str:
        return "never"

    # the engine serves another app: this endpoint's function is not registered there
    engine = EmbeddedEngine(other, [], database=str(tmp_path / "e.db"), poll_interval=0.05)
    try:
        engine.start()
        from stepline.embedded import _routing

        _routing.route_client(client, engine._requests)
        with fastapi.testclient.TestClient(app) as http:
            answer = http.post("/lone")
        assert answer.status_code == 500
        assert "not registered" in answer.json()["error"]
    finally:
        engine.stop()


@pytest.mark.slow
def test_retry_after_error_answers_202_and_the_engine_retries_it_later(tmp_path: Path) -> None:
    tries: list[float] = []

    def declare(client: stepline.Client, app: fastapi.FastAPI) -> None:
        @app.post("/busy")
        @stepline.fastapi.durable(client, retries=2)
        async def busy(ctx: stepline.EndpointContext) -> int:
            def call() -> int:
                tries.append(time.monotonic())
                if len(tries) == 1:
                    raise stepline.RetryAfterError("upstream busy", dt.timedelta(seconds=1))
                return len(tries)

            return await ctx.step.run("call", call)

    with app_with(tmp_path, declare) as (http, client):
        answer = http.post("/busy")
        assert answer.status_code == 202, answer.text
        run = finished(client, answer.headers["x-stepline-run-id"])
        assert run.output["json"] == 2
        assert tries[1] - tries[0] >= 0.9  # the engine waited as the error asked


def test_a_database_fault_answers_503_with_the_engines_retry_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine's database is full when the run would start: 503 with the
    engine's ``Retry-After`` (as the web kit's routes answer it), no run; then it starts."""
    failing = sqlite_faults.failing_commits(monkeypatch)

    def declare(client: stepline.Client, app: fastapi.FastAPI) -> None:
        @app.post("/order")
        @stepline.fastapi.durable(client)
        async def order(ctx: stepline.EndpointContext) -> str:
            return await ctx.step.run("place", lambda: "placed")

    with app_with(tmp_path, declare) as (http, _client):
        assert http.post("/order").json() == "placed"  # the engine is up and serves
        failing.set()
        refused = http.post("/order")
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == "5"  # the engine's, for a full disk
        assert "disk full" in refused.json()["error"]
        assert "x-stepline-run-id" not in refused.headers
        failing.clear()
        assert http.post("/order").json() == "placed"


@pytest.mark.parametrize("face", ["sync", "async"])
def test_a_separate_engines_503_is_passed_on_with_its_retry_after(face: str) -> None:
    """Over HTTP: the engine's ``Retry-After`` is passed on; a 503 without one (a proxy's)
    is a 503 without one."""
    client = stepline.Client(
        "sem", is_production=False, environ={}, api_base_url="http://engine.test"
    )

    async def order(ctx: stepline.EndpointContext) -> str:
        return "never"

    endpoint = stepline.web.Endpoint(client, order)
    full = {"error": "the database is unavailable (disk full); retry in 5 s", "retry_after": 5}
    answers = [
        effects.HttpResponse(503, {"retry-after": "5"}, json.dumps(full).encode()),
        effects.HttpResponse(503, {}, b"Service Unavailable"),
    ]

    def perform(effect: object) -> effects.HttpResponse:
        assert isinstance(effect, effects.HttpRequest)
        assert effect.url == "http://engine.test/v1/functions/sem-order/inline"
        return answers.pop(0)

    async def aperform(effect: object) -> effects.HttpResponse:
        return perform(effect)

    client.connection.sync_transport.perform = perform  # type: ignore[method-assign]
    client.connection.async_transport.perform = aperform  # type: ignore[method-assign]
    request = stepline.web.WebRequest("POST", "/order", {}, b"", None)

    def answer() -> stepline.web.WebResponse:
        if face == "sync":
            return endpoint.handle_sync(request)
        return asyncio.run(endpoint.handle_async(request))

    refused = answer()
    assert (refused.status, refused.headers["retry-after"]) == (503, "5")
    assert "disk full" in json.loads(refused.body)["error"]
    refused = answer()
    assert refused.status == 503
    assert "retry-after" not in refused.headers


def test_endpoint_ids_must_be_unique_per_app() -> None:
    client = stepline.Client("dup", is_production=False, environ={})

    async def handler(ctx: stepline.EndpointContext) -> None:
        return None

    stepline.web.Endpoint(client, handler, id="pay")
    with pytest.raises(stepline.ConfigError, match="another id="):
        stepline.web.Endpoint(client, handler, id="pay")

    @client.function(id="refund", trigger=stepline.TriggerEvent(event="dup/refund"))
    async def refund(ctx: stepline.Context) -> None:
        return None

    stepline.web.Endpoint(client, handler, id="refund")
    app = fastapi.FastAPI()
    handler_ = stepline.fastapi.serve(app, client, [refund])
    with pytest.raises(stepline.ConfigError, match="names both a durable endpoint"):
        list(handler_.functions)


def test_an_endpoint_declared_after_the_engine_started_is_registered(tmp_path: Path) -> None:
    """Django loads its URL conf (and the views in it) after the first request started the
    embedded engine: an endpoint declared then is registered at once, not answered 500."""
    apps: list[fastapi.FastAPI] = []

    def declare(client: stepline.Client, app: fastapi.FastAPI) -> None:
        apps.append(app)

        @app.post("/early")
        @stepline.fastapi.durable(client)
        async def early(ctx: stepline.EndpointContext) -> str:
            return "early"

    with app_with(tmp_path, declare) as (http, client):
        assert http.post("/early").json() == "early"  # the engine runs, the app is registered
        [app] = apps

        @app.post("/late")
        @stepline.fastapi.durable(client)
        async def late(ctx: stepline.EndpointContext) -> str:
            return await ctx.step.run("late-step", lambda: "late")

        answer = http.post("/late")
        assert answer.status_code == 200, answer.text
        assert answer.json() == "late"


@pytest.mark.slow
def post_slow_on_a_short_lease(
    client: stepline.Client, app: fastapi.FastAPI, tmp_path: Path
) -> None:
    """``POST /slow`` to ``app`` on an embedded engine whose leases last 0.6 s, then wait
    a second: were the request's lease lost, the engine's retry would run the step."""
    engine = EmbeddedEngine(
        client, [], database=str(tmp_path / "e.db"), poll_interval=0.05, lease_seconds=0.6
    )
    stepline.fastapi.serve(app, client, [], engine=engine)
    with fastapi.testclient.TestClient(app, base_url="http://localhost") as http:
        answer = http.post("/slow")
        assert answer.status_code == 200, answer.text
        assert answer.json() == "done"
        time.sleep(1.0)


def test_a_heartbeat_keeps_the_lease_through_a_step_longer_than_it(tmp_path: Path) -> None:
    """The lease lasts 0.6 s; a step takes 1.5 s: without the request's heartbeat the
    engine would take the call back and run the step a second time."""
    ran: list[str] = []
    client = stepline.Client("beat", is_production=False, environ={})
    app = fastapi.FastAPI(lifespan=stepline.fastapi.lifespan(client))

    @app.post("/slow")
    @stepline.fastapi.durable(client)
    def slow(ctx: stepline.SyncEndpointContext) -> str:
        def work() -> str:
            ran.append("slow")
            time.sleep(1.5)
            return "done"

        return ctx.step.run("slow", work)

    post_slow_on_a_short_lease(client, app, tmp_path)
    assert ran == ["slow"]


def test_an_async_handlers_heartbeat_keeps_the_lease_through_a_long_step(tmp_path: Path) -> None:
    """The async twin: the lease lasts 0.6 s, an awaited step takes 1.5 s."""
    ran: list[str] = []
    client = stepline.Client("beat-async", is_production=False, environ={})
    app = fastapi.FastAPI(lifespan=stepline.fastapi.lifespan(client))

    @app.post("/slow")
    @stepline.fastapi.durable(client)
    async def slow(ctx: stepline.EndpointContext) -> str:
        async def work() -> str:
            ran.append("slow")
            await asyncio.sleep(1.5)
            return "done"

        return await ctx.step.run("slow", work)

    post_slow_on_a_short_lease(client, app, tmp_path)
    assert ran == ["slow"]


def test_a_caller_waiting_for_the_run_is_told_of_the_end_the_request_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request's commits reach the engine's loop only when someone there needs them:
    a caller waiting for the run (with no recheck for 30 s) is woken by its end."""
    from stepline.engine._runs import waiters

    monkeypatch.setattr(waiters, "RECHECK_SECONDS", 30.0)  # woken, not found by a recheck
    release = threading.Event()
    run_ids: list[str] = []
    client = stepline.Client("told", is_production=False, environ={})
    app = fastapi.FastAPI(lifespan=stepline.fastapi.lifespan(client))

    @app.post("/gated")
    @stepline.fastapi.durable(client)
    async def gated(ctx: stepline.EndpointContext) -> dict[str, bool]:
        run_ids.append(ctx.run_id)

        async def gate() -> bool:
            return await asyncio.to_thread(release.wait, 20)

        return {"opened": await ctx.step.run("gate", gate)}

    engine = EmbeddedEngine(client, [], database=str(tmp_path / "e.db"), poll_interval=0.05)
    stepline.fastapi.serve(app, client, [], engine=engine)
    with fastapi.testclient.TestClient(app, base_url="http://localhost") as http:
        answers: list[httpx.Response] = []
        request = threading.Thread(target=lambda: answers.append(http.post("/gated")))
        request.start()
        wait_until(lambda: bool(run_ids), message="the handler to run")
        results: list[Any] = []
        waiter = threading.Thread(
            target=lambda: results.append(client.get_run_sync(run_ids[0]).result(timeout=25))
        )
        waiter.start()
        wait_until(lambda: engine.engine._waiters.count == 1, message="the caller to wait")
        release.set()
        began = time.monotonic()
        request.join(15)
        waiter.join(15)
        assert [answer.status_code for answer in answers] == [200]
        assert results, "the waiting caller was not answered"
        assert time.monotonic() - began < 10, "told by the end's commit, not by a recheck"
        assert results[0]["json"] == {"opened": True}
