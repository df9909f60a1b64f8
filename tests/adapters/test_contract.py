"""The adapter contract suite: written once, run for every adapter x {sync, async} function."""

from __future__ import annotations

import importlib
import json
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import stepline
from stepline._protocol import signing
from tests._support import refusing
from tests._support.stub_server import StubServer

from .harness import Harness, Reply


def _discover() -> dict[str, Callable[[], Harness]]:
    """Every ``harness_<framework>.py`` beside this file contributes its ``*Harness`` class."""
    found: dict[str, Callable[[], Harness]] = {}
    for path in sorted(Path(__file__).parent.glob("harness_*.py")):
        module = importlib.import_module(f".{path.stem}", __package__)
        for name, value in vars(module).items():
            if (
                name.endswith("Harness")
                and isinstance(value, type)
                and value.__module__ == module.__name__
            ):
                found[path.stem.removeprefix("harness_")] = value
    return found


HARNESSES = _discover()
STREAMING = sorted(name for name, factory in HARNESSES.items() if factory.streaming)  # type: ignore[attr-defined]
KEY = "signkey-test-8a1b2c3d4e5f"
APP = "contract"


def build_functions(client: stepline.Client, kind: str) -> list[stepline.Function]:
    """A 3-step function, a failing step and a non-retriable failure, of the given kind."""
    if kind == "sync":

        @client.function(id="steps", trigger=stepline.TriggerEvent(event="c/steps"), retries=2)
        def steps(ctx: stepline.SyncContext) -> dict[str, Any]:
            a = ctx.step.run("a", lambda: ctx.event.data["n"] + 1)
            b = ctx.step.run("b", lambda: a * 2)
            c = ctx.step.run("c", lambda: f"{a}/{b}")
            return {"a": a, "b": b, "c": c}

        @client.function(id="flaky", trigger=stepline.TriggerEvent(event="c/flaky"))
        def flaky(ctx: stepline.SyncContext) -> None:
            ctx.step.run("explode", _explode)

        @client.function(id="fatal", trigger=stepline.TriggerEvent(event="c/fatal"))
        def fatal(ctx: stepline.SyncContext) -> None:
            raise stepline.NonRetriableError("stop here")

        return [steps, flaky, fatal]

    @client.function(id="steps", trigger=stepline.TriggerEvent(event="c/steps"), retries=2)
    async def asteps(ctx: stepline.Context) -> dict[str, Any]:
        async def plus_one() -> int:
            return int(ctx.event.data["n"]) + 1

        a = await ctx.step.run("a", plus_one)
        b = await ctx.step.run("b", lambda: a * 2)
        c = await ctx.step.run("c", lambda: f"{a}/{b}")
        return {"a": a, "b": b, "c": c}

    @client.function(id="flaky", trigger=stepline.TriggerEvent(event="c/flaky"))
    async def aflaky(ctx: stepline.Context) -> None:
        await ctx.step.run("explode", _explode)

    @client.function(id="fatal", trigger=stepline.TriggerEvent(event="c/fatal"))
    async def afatal(ctx: stepline.Context) -> None:
        raise stepline.NonRetriableError("stop here")

    return [asteps, aflaky, afatal]


def _explode() -> None:
    raise RuntimeError("transient")


@pytest.fixture(params=sorted(HARNESSES))
def harness(request: pytest.FixtureRequest) -> Harness:
    return HARNESSES[request.param]()


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def serve(harness: Harness, kind: str, **client_options: Any) -> stepline.Client:
    serve_options = {
        k: client_options.pop(k) for k in ("serve_origin", "serve_path") if k in client_options
    }
    options: dict[str, Any] = {"is_production": False, "environ": {}, **client_options}
    client = stepline.Client(APP, **options)
    harness.serve(client, build_functions(client, kind), **serve_options)
    return client


def call(
    harness: Harness,
    fn: str,
    steps: dict[str, Any],
    *,
    attempt: int = 0,
    max_attempts: int = 3,
    key: str | None = None,
    path: str = "/api/inngest",
    step_id: str = "step",
) -> Reply:
    event = {"name": f"c/{fn}", "data": {"n": 20}, "id": "evt", "ts": 1_700_000_000_000}
    body = {
        "event": event,
        "events": [event],
        "steps": steps,
        "ctx": {
            "run_id": "run-1",
            "attempt": attempt,
            "max_attempts": max_attempts,
            "disable_immediate_execution": False,
            "step_id": step_id,
            "stack": {"stack": list(steps), "current": len(steps)},
        },
        "use_api": False,
        "version": 2,
    }
    raw = json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    if key:
        headers["x-inngest-signature"] = signing.sign(raw, key, now=time.time())
    query = urllib.parse.urlencode({"fnId": f"{APP}-{fn}", "stepId": step_id})
    return harness.request("POST", f"{path}?{query}", headers, raw)


def drive(harness: Harness, fn: str, **options: Any) -> tuple[Reply, int]:
    """Call the function the way the engine does until it completes; count the calls."""
    steps: dict[str, Any] = {}
    for calls in range(1, 20):
        reply = call(harness, fn, steps, **options)
        if reply.status != 206:
            return reply, calls
        for op in reply.json():
            assert op["op"] == "StepRun", op
            steps[op["id"]] = {"data": op["data"]}
    raise AssertionError("function did not complete")


def test_inspection(harness: Harness, kind: str) -> None:
    serve(harness, kind)
    reply = harness.request("GET", "/api/inngest", {}, b"")
    assert reply.status == 200
    assert reply.json()["function_count"] == 3
    assert reply.json()["mode"] == "dev"
    assert reply.headers["x-inngest-framework"] == harness.framework


@pytest.mark.slow
def test_out_of_band_sync(harness: Harness, kind: str, stub_server: StubServer) -> None:
    stub_server.answer = lambda _req: (200, {"ok": True, "modified": True})
    serve(harness, kind, api_base_url=stub_server.url, serve_origin="https://app.example.com")
    reply = harness.request("PUT", "/api/inngest?deployId=d-1", {}, b"")
    assert reply.status == 200
    assert reply.headers["x-inngest-sync-kind"] == "out_of_band"
    [sent] = stub_server.requests
    assert sent["path"] == "/fn/register?deployId=d-1"
    assert sent["body"]["url"] == "https://app.example.com/api/inngest"
    assert sent["body"]["framework"] == harness.framework
    assert [f["id"] for f in sent["body"]["functions"]] == [
        f"{APP}-steps",
        f"{APP}-flaky",
        f"{APP}-fatal",
    ]


def test_in_band_sync(harness: Harness, kind: str) -> None:
    serve(harness, kind, is_production=True, signing_key=KEY, api_base_url=refusing.url())
    body = json.dumps({"url": "https://public.example.com/api/inngest"}).encode()
    headers = {
        "content-type": "application/json",
        "x-inngest-sync-kind": "in_band",
        "x-inngest-signature": signing.sign(body, KEY, now=time.time()),
    }
    reply = harness.request("PUT", "/api/inngest", headers, body)
    assert reply.status == 200
    assert reply.headers["x-inngest-sync-kind"] == "in_band"
    assert reply.json()["url"] == "https://public.example.com/api/inngest"
    assert reply.json()["framework"] == harness.framework
    unsigned = harness.request("PUT", "/api/inngest", {"x-inngest-sync-kind": "in_band"}, body)
    assert unsigned.status == 401


def test_multi_step_function_runs_to_completion(harness: Harness, kind: str) -> None:
    serve(harness, kind)
    reply, calls = drive(harness, "steps")
    assert reply.status == 200
    assert reply.json() == {"a": 21, "b": 42, "c": "21/42"}
    assert calls == 4  # one request per step, then the completion


def test_step_error_then_failure(harness: Harness, kind: str) -> None:
    serve(harness, kind)
    retry = call(harness, "flaky", {}, attempt=0, max_attempts=2)
    assert retry.status == 206
    assert retry.json()[0]["op"] == "StepError"
    assert retry.json()[0]["error"]["message"] == "transient"
    assert "x-inngest-no-retry" not in retry.headers
    final = call(harness, "flaky", {}, attempt=1, max_attempts=2)
    assert final.json()[0]["op"] == "StepFailed"
    fatal = call(harness, "fatal", {})
    assert fatal.status == 500
    assert fatal.headers["x-inngest-no-retry"] == "true"
    assert fatal.json()["code"] == "non_retriable_error"


def test_signatures_in_cloud_mode(harness: Harness, kind: str) -> None:
    serve(harness, kind, is_production=True, signing_key=KEY, api_base_url=refusing.url())
    assert call(harness, "steps", {}).status == 401
    assert call(harness, "steps", {}, key="signkey-test-00ff00ff").status == 401
    good = call(harness, "steps", {}, key=KEY)
    assert good.status == 206
    assert "x-inngest-signature" in good.headers


def test_unknown_function(harness: Harness, kind: str) -> None:
    serve(harness, kind)
    reply = call(harness, "missing", {})
    assert reply.status == 500
    assert reply.json()["code"] == "function_not_found"


def test_serve_path_is_honoured(harness: Harness, kind: str) -> None:
    serve(harness, kind, serve_path="/custom/durable")
    reply, _ = drive(harness, "steps", path="/custom/durable")
    assert reply.status == 200
    assert harness.request("GET", "/api/inngest", {}, b"").status == 404


@pytest.mark.parametrize("streaming_harness", STREAMING)
def test_streaming_where_supported(streaming_harness: str, kind: str) -> None:
    harness = HARNESSES[streaming_harness]()
    serve(harness, kind, streaming="force")
    reply = call(harness, "steps", {})
    assert reply.status == 201
    envelope = json.loads(reply.body)
    assert envelope["status"] == 206
    assert json.loads(envelope["body"])[0]["op"] == "StepRun"
