"""The engine's HTTP surface through Starlette's TestClient, on a temp SQLite file."""

from __future__ import annotations

import base64
import contextlib
import http.server
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

import stepline
from stepline._identity import VERSION
from stepline._protocol.signing import hash_signing_key
from stepline.engine import Engine, EngineSettings, ManualClock
from stepline.engine._http.api import build_app
from tests._support import refusing
from tests._support.polling import wait_until

SIGNING_KEY = "signkey-test-" + "ab12" * 16
EVENT_KEY = "ev-key-1"
START = 1_800_000_000.0  # 2027-01-15T08:00:00Z: fixed, so timestamps can be asserted
APP_URL = refusing.url("/api/inngest")
FN_URL = f"{APP_URL}?fnId=a-f&stepId=step"


@contextlib.contextmanager
def api(db: str, **settings: Any) -> Iterator[tuple[TestClient, Engine]]:
    """The app around a fresh engine, with its lifespan (engine start/stop) running."""
    options: dict[str, Any] = {"retry_scale": 0.0, "retry_jitter": 0.0, "poll_interval": 0.05}
    options.update(settings)
    resolved = EngineSettings(database_url=db, **options)
    engine = Engine(resolved, clock=ManualClock(START))
    # a non-browser client, as the SDKs are (they send X-Inngest-SDK): the dev-mode guard
    # against web pages is tested in faults/test_sec_devmode.py
    local, not_a_browser = "http://127.0.0.1:8288", {"x-stepline-csrf": "1"}
    with TestClient(build_app(engine), base_url=local, headers=not_a_browser) as client:
        yield client, engine


@pytest.fixture
def dev(db: str) -> Iterator[TestClient]:
    with api(db) as (client, _engine):
        yield client


def registration(expression: str | None = None) -> dict[str, Any]:
    trigger: dict[str, Any] = {"event": "a/go"}
    if expression is not None:
        trigger["expression"] = expression
    step = {"id": "step", "name": "step", "runtime": {"type": "http", "url": FN_URL}}
    return {
        "appName": "a",
        "url": APP_URL,
        "sdk": "py:v0.1.0",
        "framework": "flask",
        "functions": [{"id": "a-f", "name": "f", "triggers": [trigger], "steps": {"step": step}}],
    }


# -- event ingest ------------------------------------------------------------------------


def test_ingest_single_and_list_and_retrieve(dev: TestClient) -> None:
    one = dev.post("/e/anykey", json={"name": "t/a", "data": {"n": 1}})
    assert one.status_code == 200
    assert one.headers["x-inngest-server-kind"] == "dev"
    body = one.json()
    assert body["status"] == 200
    assert len(body["ids"]) == 1

    many = dev.post("/e/anykey", json=[{"name": "t/b"}, {"name": "t/b", "id": "mine"}])
    assert many.status_code == 200
    ids = many.json()["ids"]
    assert len(ids) == 2

    listed = dev.get("/v1/events", params={"name": "t/b"}).json()
    assert {e["internal_id"] for e in listed["data"]} == set(ids)
    assert listed["metadata"]["next_cursor"] is None
    assert isinstance(listed["metadata"]["stream_cursor"], str)  # where a follower goes on

    event = dev.get(f"/v1/events/{body['ids'][0]}").json()["data"]
    assert event["internal_id"] == event["id"] == body["ids"][0]
    assert (event["name"], event["data"], event["user"]) == ("t/a", {"n": 1}, {})
    assert event["received_at"] == "2027-01-15T08:00:00.000Z"  # START
    assert event["ts"] == 1_800_000_000_000
    # the sender's own id is kept, and finds the event too
    assert dev.get("/v1/events/mine").json()["data"]["internal_id"] == ids[1]


def test_events_paginate_with_cursor(dev: TestClient) -> None:
    ids = dev.post("/e/k", json=[{"name": "t/p", "data": {"i": i}} for i in range(3)]).json()["ids"]
    first = dev.get("/v1/events", params={"limit": 2}).json()
    assert len(first["data"]) == 2
    assert first["metadata"]["next_cursor"]
    rest = dev.get("/v1/events", params={"limit": 2, "cursor": first["metadata"]["next_cursor"]})
    seen = [e["internal_id"] for e in first["data"] + rest.json()["data"]]
    assert sorted(seen) == sorted(ids)
    assert rest.json()["metadata"]["next_cursor"] is None


def test_seeded_ids_are_deterministic_and_idempotent(dev: TestClient) -> None:
    seed = "1800000000123," + base64.b64encode(bytes(range(10))).decode()
    headers = {"x-inngest-event-id-seed": seed}
    events = [{"name": "t/seed", "data": {"i": 1}}, {"name": "t/seed", "data": {"i": 2}}]
    first = dev.post("/e/k", json=events, headers=headers).json()["ids"]
    again = dev.post("/e/k", json=events, headers=headers).json()["ids"]
    assert first == again
    assert len(set(first)) == 2
    stored = dev.get("/v1/events", params={"name": "t/seed"}).json()["data"]
    assert sorted(e["internal_id"] for e in stored) == sorted(first)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"name": "inngest/function.failed"}, "reserved"),
        ([1], "must be a JSON object"),
        ("just a string", "must be a JSON object"),
        ({"name": "t/x", "ts": 5}, "ts 5"),
        ({"name": "t/x", "ts": "yesterday"}, "ts must be"),
        ({"data": {}}, "name is required"),
        ([], "no events"),
    ],
)
def test_invalid_events_are_400_with_a_precise_message(
    dev: TestClient, body: Any, needle: str
) -> None:
    answer = dev.post("/e/k", json=body)
    assert answer.status_code == 400
    payload = answer.json()
    assert payload["ids"] == []
    assert payload["status"] == 400
    assert needle in payload["error"]


def test_invalid_json_and_bad_seed_are_400(dev: TestClient) -> None:
    broken = dev.post("/e/k", content=b'{"name": ', headers={"content-type": "application/json"})
    assert broken.status_code == 400
    assert "not valid JSON" in broken.json()["error"]
    seeded = dev.post("/e/k", json={"name": "t/x"}, headers={"x-inngest-event-id-seed": "nope"})
    assert seeded.status_code == 400
    assert "X-Inngest-Event-Id-Seed" in seeded.json()["error"]
    assert dev.get("/v1/events").json()["data"] == []


def test_too_large_is_413(db: str) -> None:
    with api(db, max_body_bytes=1024) as (client, _engine):
        big = {"name": "t/big", "data": {"blob": "x" * 2000}}
        answer = client.post("/e/k", json=big)
        assert answer.status_code == 413
        assert answer.json()["status"] == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: the streamed cap must catch it
            yield b'{"name": "t/big", "data": {"blob": "'
            for _ in range(10):
                yield b"y" * 200
            yield b'"}}'

        streamed = client.post("/e/k", content=chunks())
        assert streamed.status_code == 413
        assert client.get("/v1/events").json()["data"] == []


def test_event_keys_are_checked_and_never_logged(db: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="stepline.engine.api")
    with api(db, event_keys=(EVENT_KEY,)) as (client, _engine):
        wrong = client.post("/e/not-the-key", json={"name": "t/x"})
        assert wrong.status_code == 401
        assert "error" in wrong.json()
        assert client.post(f"/e/{EVENT_KEY}", json={"name": "t/x"}).status_code == 200
    assert "not-the-key" not in caplog.text
    assert "rejected POST /e/{key}: 401" in caplog.text


# -- registration, functions, apps -------------------------------------------------------


def test_register_bad_expression_is_400(dev: TestClient) -> None:
    answer = dev.post("/fn/register", json=registration("event.data.n >"))
    assert answer.status_code == 400
    message = answer.json()["error"]
    assert "a-f" in message
    assert "expression" in message
    assert dev.get("/v1/functions").json()["data"] == []


def test_register_lists_function_and_app(dev: TestClient) -> None:
    answer = dev.post(
        "/fn/register",
        json=registration("event.data.n > 1"),
        params={"deployId": "d1"},
        headers={"authorization": "Bearer undefined"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["ok"] is True
    [fn] = dev.get("/v1/functions").json()["data"]
    assert (fn["function_id"], fn["app_id"], fn["name"]) == ("a-f", "a", "f")
    assert fn["triggers"] == [{"event": "a/go", "expression": "event.data.n > 1"}]
    [app] = dev.get("/v1/apps").json()["data"]
    assert app["app_id"] == "a"
    assert app["functions"] == 1
    assert (app["sdk"], app["framework"], app["error"]) == ("py:v0.1.0", "flask", None)
    assert app["url"] == APP_URL
    assert app["synced_at"].endswith("Z")
    assert dev.get("/dev").json() == {"version": VERSION, "mode": "dev", "functions": 1, "apps": 1}


def test_register_non_json_is_400(dev: TestClient) -> None:
    assert dev.post("/fn/register", content=b"<xml/>").status_code == 400


# -- runs: shapes, 404s, query validation ------------------------------------------------


def test_empty_run_list_shape(dev: TestClient) -> None:
    assert dev.get("/v1/runs").json() == {"data": [], "metadata": {"next_cursor": None}}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/runs/01NOPE"),
        ("GET", "/v1/runs/01NOPE/steps"),
        ("DELETE", "/v1/runs/01NOPE"),
        ("POST", "/v1/runs/01NOPE/cancel"),
        ("POST", "/v1/runs/01NOPE/rerun"),
        ("GET", "/v1/events/01NOPE"),
        ("GET", "/v1/events/01NOPE/runs"),
        ("GET", "/v0/runs/01NOPE/batch"),
        ("GET", "/v0/runs/01NOPE/actions"),
        ("DELETE", "/v0/runs/01NOPE"),
    ],
)
def test_unknown_ids_are_404(dev: TestClient, method: str, path: str) -> None:
    answer = dev.request(method, path)
    assert answer.status_code == 404
    assert "01NOPE" in answer.json()["error"]


def test_checkpoint_errors(dev: TestClient) -> None:
    assert dev.post("/v1/checkpoint/01NOPE/async", json={"steps": []}).status_code == 404
    with_call = {"steps": [], "qi_id": "01NOJOB"}  # no such run before no such call
    missing = dev.post("/v1/checkpoint/01NOPE/async", json=with_call)
    assert (missing.status_code, "01NOPE" in missing.json()["error"]) == (404, True)
    bad = dev.post("/v1/checkpoint/01NOPE/async", json={"nope": 1})
    assert bad.status_code == 400


def test_invoke_unknown_function_is_404(dev: TestClient) -> None:
    answer = dev.post("/invoke/a/missing", json={"data": {}})
    assert answer.status_code == 404
    assert "a/missing" in answer.json()["error"]


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"status": "Completed,Exploded"}, "status"),
        ({"since": "last tuesday"}, "since"),
        ({"until": "2026-13-40"}, "until"),
    ],
)
def test_bad_query_values_are_400(dev: TestClient, query: dict[str, str], name: str) -> None:
    answer = dev.get("/v1/runs", params=query)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith(f"{name}:")


def test_event_time_filters_accept_rfc3339_and_unix_seconds(dev: TestClient) -> None:
    dev.post("/e/k", json={"name": "t/when"})
    at = 1_800_000_000
    for after, count in (("2027-01-15T07:59:59Z", 1), (str(at + 1), 0), (str(at), 1)):
        found = dev.get("/v1/events", params={"received_after": after}).json()["data"]
        assert len(found) == count, after
    assert dev.get("/v1/events", params={"received_before": "nope"}).status_code == 400
    status = dev.get("/v1/runs", params={"status": "completed,RUNNING", "since": str(at)})
    assert status.status_code == 200


# -- misc routes -------------------------------------------------------------------------


def test_health_connect_start_home_and_router_errors(dev: TestClient) -> None:
    assert dev.get("/health").json() == {"status": "ok"}
    assert dev.head("/health").status_code == 200
    ready = dev.post("/v0/connect/start")  # Connect's start (tests/connect): open in dev mode
    assert ready.status_code == 200
    assert ready.headers["content-type"] == "application/protobuf"
    home = dev.get("/")
    assert home.status_code == 200
    assert 'src="dashboard/app.js"' in home.text  # the dashboard (tests/dashboard)
    missing = dev.get("/nowhere")
    assert missing.status_code == 404
    assert "error" in missing.json()
    assert missing.headers["x-inngest-server-kind"] == "dev"
    wrong = dev.put("/health")
    assert wrong.status_code == 405
    assert "error" in wrong.json()


def test_unexpected_errors_are_generic_500(
    db: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    with api(db) as (client, engine):

        async def boom() -> None:
            raise RuntimeError("secret internals")

        monkeypatch.setattr(engine, "list_functions", boom)
        answer = client.get("/v1/functions")
    assert answer.status_code == 500
    assert answer.json() == {
        "code": "internal_server_error",
        "message": "internal server error",
        "details": {},
        "error": "internal server error",
    }
    assert answer.headers["x-inngest-server-kind"] == "dev"
    assert "secret internals" in caplog.text  # logged with its traceback, not answered


# -- start mode: bearer auth -------------------------------------------------------------


def test_start_mode_requires_bearer_on_api_routes(db: str) -> None:
    settings = {"mode": "start", "signing_keys": (SIGNING_KEY,), "event_keys": (EVENT_KEY,)}
    with api(db, **settings) as (client, _engine):
        hashed = hash_signing_key(SIGNING_KEY)
        runs = client.get("/v1/runs")
        assert runs.status_code == 401
        assert runs.headers["x-inngest-server-kind"] == "cloud"
        for token in ("undefined", "", "signkey-test-" + "00" * 32):
            bad = client.get("/v1/runs", headers={"authorization": f"Bearer {token}"})
            assert bad.status_code == 401, token
        for token in (hashed, f"signkey-test-{hashed}", SIGNING_KEY):
            good = client.get("/v1/runs", headers={"authorization": f"Bearer {token}"})
            assert good.status_code == 200, token
        assert client.post("/fn/register", json=registration()).status_code == 401
        auth = {"authorization": f"Bearer {hashed}"}
        assert client.post("/fn/register", json=registration(), headers=auth).status_code == 200
        assert client.get("/v0/runs/01NOPE/actions").status_code == 401
        assert client.get("/v0/runs/01NOPE/actions", headers=auth).status_code == 404
        assert client.post("/v1/checkpoint/01NOPE/async", json={}).status_code == 401
        assert client.post("/v0/connect/start").status_code == 401  # Connect: the bearer
        assert client.post("/v0/connect/start", headers=auth).status_code == 200
        # open in both modes
        assert client.get("/health").status_code == 200
        assert client.post(f"/e/{EVENT_KEY}", json={"name": "t/x"}).status_code == 200
        assert client.post("/e/wrong", json={"name": "t/x"}).status_code == 401


# -- real runs through an in-process app -------------------------------------------------


def hello_app() -> tuple[stepline.Client, list[stepline.Function]]:
    client = stepline.Client(app_id="t", is_production=False)

    @client.function(id="hello", trigger=stepline.TriggerEvent(event="t/hello"))
    async def hello(ctx: stepline.Context) -> dict[str, Any]:
        greeting = await ctx.step.run("greet", lambda: f"hi {ctx.event.data['who']}")
        return {"greeting": greeting}

    @client.function(id="never", trigger=stepline.TriggerEvent(event="t/never"))
    async def never(ctx: stepline.Context) -> str:
        return "invoked"

    return client, [hello, never]


def completed(client: TestClient, function_id: str, count: int = 1) -> list[dict[str, Any]]:
    def check() -> list[dict[str, Any]] | None:
        params = {"function_id": function_id, "status": "completed"}
        runs: list[dict[str, Any]] = client.get("/v1/runs", params=params).json()["data"]
        return runs if len(runs) >= count else None

    result: list[dict[str, Any]] = wait_until(
        check, timeout=10.0, message=f"{count} completed run(s) of {function_id}"
    )
    return result


def test_a_real_run_end_to_end(db: str) -> None:
    with api(db) as (client, engine):
        sdk, functions = hello_app()
        client.portal.call(engine.serve, sdk, functions)
        [event_id] = client.post("/e/k", json={"name": "t/hello", "data": {"who": "bo"}}).json()[
            "ids"
        ]
        [listed] = completed(client, "t-hello")
        run = client.get(f"/v1/runs/{listed['run_id']}").json()["data"]
        assert run["status"] == "Completed"
        assert run["output"] == {"greeting": "hi bo"}
        assert run["event_ids"] == [event_id]
        assert run["events"][0]["data"] == {"who": "bo"}
        assert (run["function_id"], run["app_id"]) == ("t-hello", "t")
        assert run["created_at"].endswith("Z")
        assert run["ended_at"].endswith("Z")

        [step] = client.get(f"/v1/runs/{run['run_id']}/steps").json()["data"]
        assert (step["name"], step["op"], step["status"]) == ("greet", "StepRun", "Completed")
        assert step["duration_ms"] is None or step["duration_ms"] >= 0

        links = client.get(f"/v1/events/{event_id}/runs").json()
        assert [r["run_id"] for r in links["data"]] == [run["run_id"]]
        # the function the event did not trigger is not listed as a run
        assert all(s["function_id"] != "t-hello" for s in links["metadata"]["skipped"])

        by_event = client.get("/v1/runs", params={"event_id": event_id}).json()["data"]
        assert [r["run_id"] for r in by_event] == [run["run_id"]]
        assert client.get(f"/v0/runs/{run['run_id']}/batch").json()[0]["data"] == {"who": "bo"}

        rerun = client.post(f"/v1/runs/{run['run_id']}/rerun").json()["data"]["run_id"]
        assert rerun != run["run_id"]
        runs = completed(client, "t-hello", count=2)
        assert {r["run_id"] for r in runs} == {run["run_id"], rerun}
        again = client.get(f"/v1/runs/{rerun}").json()["data"]
        assert again["origin"] == f"rerun:{run['run_id']}"

        cancel = client.delete(f"/v1/runs/{rerun}").json()["data"]
        assert cancel == {"run_id": rerun, "status": "Completed"}  # already ended

        invoked = client.post("/invoke/t-never", json={"data": {"x": 1}})
        assert invoked.status_code == 200
        assert invoked.json()["status"] == 200
        [never] = completed(client, "t-never")
        assert never["output"] == "invoked"


def test_step_output_is_shown(db: str) -> None:
    with api(db) as (client, engine):
        sdk, functions = hello_app()
        client.portal.call(engine.serve, sdk, functions)
        client.post("/e/k", json={"name": "t/hello", "data": {"who": "al"}})
        [run] = completed(client, "t-hello")
        [step] = client.get(f"/v1/runs/{run['run_id']}/steps").json()["data"]
        assert step["output"] == "hi al"
        assert step["attempts"] == 1
        assert step["duration_ms"] == 0  # the manual clock never moved
        assert "error" not in step
        actions = client.get(f"/v0/runs/{run['run_id']}/actions").json()
        assert actions == {step["id"]: {"data": "hi al"}}


def test_cancel_a_running_run(db: str) -> None:
    with api(db) as (client, engine):
        sdk = stepline.Client(app_id="t", is_production=False)

        @sdk.function(id="waits", trigger=stepline.TriggerEvent(event="t/wait"))
        async def waits(ctx: stepline.Context) -> None:
            await ctx.step.wait_for_event("w", event="t/never-sent", timeout=3_600_000)

        client.portal.call(engine.serve, sdk, [waits])
        client.post("/e/k", json={"name": "t/wait"})

        def waiting() -> str | None:
            runs = client.get("/v1/runs", params={"function_id": "t-waits"}).json()["data"]
            if not runs:
                return None
            steps = client.get(f"/v1/runs/{runs[0]['run_id']}/steps").json()["data"]
            ok = steps and steps[0]["status"] == "Waiting"
            return str(runs[0]["run_id"]) if ok else None

        run_id = wait_until(waiting, timeout=10.0, message="the run to wait")
        [step] = client.get(f"/v1/runs/{run_id}/steps").json()["data"]
        assert step["wait"]["event"] == "t/never-sent"
        assert step["wait"]["until"] == "2027-01-15T09:00:00.000Z"
        cancelled = client.post(f"/v1/runs/{run_id}/cancel").json()["data"]
        assert cancelled == {"run_id": run_id, "status": "Cancelled"}
        run = client.get(f"/v1/runs/{run_id}").json()["data"]
        assert run["status"] == "Cancelled"
        assert run["cancel_reason"]
        listed = client.get("/v1/runs", params={"status": "cancelled"}).json()["data"]
        assert [r["run_id"] for r in listed] == [run_id]


def test_sync_without_reachable_app_reports_error(dev: TestClient) -> None:
    answer = dev.post("/v1/apps/sync", json={"url": APP_URL})
    assert answer.status_code == 200
    result = answer.json()["data"]
    assert result["ok"] is False
    assert result["error"]
    assert dev.post("/v1/apps/sync", json={"url": "ftp://x"}).status_code == 400
    assert dev.post("/v1/apps/sync").json() == {"data": []}


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:1/\x00", "http://a b/", "http://x/\ty", "http://x/\x7f"]
)
def test_sync_refuses_urls_with_control_characters(dev: TestClient, url: str) -> None:
    answer = dev.post("/v1/apps/sync", json={"url": url})
    assert answer.status_code == 400
    assert answer.json()["message"] == "url: must not contain spaces or control characters"


class _Garbled(http.server.BaseHTTPRequestHandler):
    def do_PUT(self) -> None:
        body = b"broken\x00app \xff"
        self.send_response(500)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.slow
def test_a_sync_error_holding_nul_is_kept_readable(dev: TestClient) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Garbled)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/api/inngest"
        answer = dev.post("/v1/apps/sync", json={"url": url})
    finally:
        server.shutdown()
        server.server_close()
    assert answer.status_code == 200, answer.text  # Postgres refuses NUL in text: was a 500
    result = answer.json()["data"]
    assert result["ok"] is False
    assert result["error"] == "status 500: broken\ufffdapp \ufffd"


def test_runs_say_why_they_wait_and_events_why_they_started_nothing(db: str) -> None:
    with api(db) as (client, engine):
        sdk = stepline.Client(app_id="t", is_production=False)

        @sdk.function(
            id="paced",
            trigger=stepline.TriggerEvent(event="t/pace"),
            throttle=stepline.Throttle(limit=1, period=60_000),
            rate_limit=stepline.RateLimit(limit=2, period=3_600_000),
        )
        def paced(ctx: stepline.SyncContext) -> None:
            return None

        @sdk.function(
            id="grouped",
            trigger=stepline.TriggerEvent(event="t/pace"),
            batch_events=stepline.Batch(max_size=5, timeout=30_000),
        )
        def grouped(ctx: stepline.SyncContext) -> int:
            return len(ctx.events)

        client.portal.call(engine.serve, sdk, [paced, grouped])
        ids = client.post("/e/k", json=[{"name": "t/pace"}] * 3).json()["ids"]
        queued = client.get("/v1/runs", params={"status": "Queued"}).json()["data"]
        waiting = {
            (r["function_id"], r["waiting"]["reason"]): r["waiting"] for r in queued if r["waiting"]
        }
        assert waiting[("t-paced", "throttled")]["until"] == "2027-01-15T08:01:00.000Z"
        assert waiting[("t-grouped", "batched")] == {
            "reason": "batched",
            "until": "2027-01-15T08:00:30.000Z",
            "events": 3,
            "max": 5,
        }
        links = client.get(f"/v1/events/{ids[2]}/runs").json()
        skipped = {s["function_id"]: s["reason"] for s in links["metadata"]["skipped"]}
        assert skipped == {"t-paced": "rate_limited"}
        assert [r["function_id"] for r in links["data"]] == ["t-grouped"]


def test_no_path_matches_two_routes_so_their_order_is_free() -> None:
    """The busiest routes come first (the router tries them in order): that is safe only
    while every request (method and path) reaches one route, whatever the order."""
    import re

    import starlette.routing

    app = build_app(Engine(EngineSettings(database_url=":memory:")))
    routes = [r for r in app.routes if isinstance(r, starlette.routing.Route)]
    for route in routes:
        sample = re.sub(r"\{[^}:]+:path\}", "a/b", route.path)
        sample = re.sub(r"\{[^}]+\}", "p1", sample)
        for method in route.methods or ():
            matching = [
                other.path
                for other in routes
                if other.path_regex.fullmatch(sample) and method in (other.methods or ())
            ]
            assert matching == [route.path], (method, sample)
    paths = [r.path for r in routes]
    assert paths.index("/v1/functions/{function_id:path}/runs") < 3
