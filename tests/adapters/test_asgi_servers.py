"""The async adapters behind real servers on 127.0.0.1, plus what the contract suite omits.

The examples run in subprocesses (uvicorn for FastAPI and bare ASGI, ``web.run_app`` for
aiohttp) with ``-W error``, so a deprecation in the server stack fails loudly; aiohttp's
``AppRunner`` + ``TCPSite`` also runs in-process on a thread. Starlette's adapter and the
serve()-time checks are tested in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastapi
import fastapi.testclient
import flask
import httpx
import pytest
import starlette.applications
import starlette.routing
import starlette.testclient
from aiohttp import web

import stepline
import stepline.aiohttp
import stepline.asgi
import stepline.fastapi
import stepline.starlette
from tests._support.processes import answers, free_port, spawned
from tests._support.stub_server import StubServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FRAMEWORKS = {"fastapi": "fast_api", "asgi": "asgi", "aiohttp": "aiohttp"}


def command(example: str, port: int) -> list[str]:
    if example == "aiohttp":
        return [str(EXAMPLES / "aiohttp" / "app.py")]
    module = "main:app" if example == "fastapi" else "app:app"
    return [
        *("-m", "uvicorn", module, "--app-dir", str(EXAMPLES / example)),
        *("--host", "127.0.0.1", "--port", str(port), "--lifespan", "on", "--no-access-log"),
    ]


@contextlib.contextmanager
def run_example(example: str, stub: StubServer, log: Path, **env: str) -> Iterator[str]:
    """Start ``examples/<example>`` in a subprocess; yields its base URL once it answers."""
    port = free_port()
    environ = {
        **os.environ,
        "PORT": str(port),
        "STEPLINE_DEV": "1",
        "STEPLINE_API_BASE_URL": stub.url,
        **env,
    }
    base = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-W", "error", *command(example, port)]
    up = f"{base}/api/inngest"
    with spawned(args, log=log, env=environ, up=up, ready=answers, timeout=20, what=example):
        yield base
    assert "Traceback" not in log.read_text(), log.read_text()


def call_body(name: str, data: dict[str, Any], steps: dict[str, Any]) -> dict[str, Any]:
    event = {"name": name, "data": data, "id": "e", "ts": 1}
    ctx = {"run_id": "r", "attempt": 0, "stack": {"stack": list(steps)}}
    return {"event": event, "events": [event], "steps": steps, "ctx": ctx, "use_api": False}


def drive(base: str, fn_id: str, name: str, data: dict[str, Any]) -> httpx.Response:
    """POST like the engine until the function completes."""
    url = f"{base}/api/inngest?fnId={fn_id}&stepId=step"
    steps: dict[str, Any] = {}
    for _ in range(5):
        reply = httpx.post(url, json=call_body(name, data, steps), timeout=10)
        if reply.status_code != 206:
            return reply
        for op in reply.json():
            steps[op["id"]] = {"data": op["data"]}
    raise AssertionError("function did not complete")


@pytest.mark.process
@pytest.mark.parametrize("example", sorted(FRAMEWORKS))
def test_example_syncs_and_runs_over_real_http(
    example: str, stub_server: StubServer, tmp_path: Path
) -> None:
    stub_server.answer = lambda _req: (200, {"ok": True})
    app_id = f"{example}-example"
    with run_example(example, stub_server, tmp_path / "server.log") as base:
        assert httpx.put(base + "/api/inngest?deployId=d-1", timeout=10).status_code == 200
        [register] = stub_server.requests
        assert register["path"] == "/fn/register?deployId=d-1"
        assert register["body"]["url"] == base + "/api/inngest"
        assert register["body"]["framework"] == FRAMEWORKS[example]

        greeted = drive(base, f"{app_id}-greet", "example/greet", {"name": "Ada"})
        assert (greeted.status_code, greeted.json()) == (200, {"text": "Hello, Ada!"})
        assert greeted.headers["x-inngest-framework"] == FRAMEWORKS[example]
        counted = drive(base, f"{app_id}-count", "example/count", {"n": 4})
        assert (counted.status_code, counted.json()) == (200, 6)


@pytest.mark.process
@pytest.mark.parametrize("example", ["aiohttp", "asgi", "fastapi"])
def test_streaming_sends_keepalives_then_the_envelope(
    example: str, stub_server: StubServer, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    with run_example(example, stub_server, log, STEPLINE_STREAMING="force") as base:
        url = f"{base}/api/inngest?fnId={example}-example-count&stepId=step"
        body = call_body("example/count", {"n": 3, "delay": 4.5}, {})  # keepalive at 3 s
        chunks: list[tuple[float, bytes]] = []
        with httpx.stream("POST", url, json=body, timeout=20) as reply:
            assert reply.status_code == 201
            assert reply.headers["x-inngest-framework"] == FRAMEWORKS[example]
            chunks.extend((time.monotonic(), chunk) for chunk in reply.iter_raw() if chunk)
    first_at, first = chunks[0]
    assert first.strip() == b"", "the first bytes must be a keepalive"
    assert chunks[-1][0] - first_at > 0.5, "the keepalive must arrive before the result"
    envelope = json.loads(b"".join(chunk for _, chunk in chunks))
    assert envelope["status"] == 206
    assert envelope["headers"]["x-inngest-framework"] == FRAMEWORKS[example]
    [op] = json.loads(envelope["body"])
    assert (op["op"], op["data"]) == ("StepRun", [0, 1, 2])


# -- where functions run ---------------------------------------------------------------


def thread_functions(client: stepline.Client, seen: dict[str, Any]) -> list[stepline.Function]:
    """A sync and an async function that record the thread they ran on."""

    @client.function(id="sync", trigger=stepline.TriggerEvent(event="t/sync"))
    def on_sync(ctx: stepline.SyncContext) -> int:
        seen["sync"] = threading.current_thread().name
        try:
            asyncio.get_running_loop()
            seen["sync_has_loop"] = True
        except RuntimeError:
            seen["sync_has_loop"] = False
        return len(ctx.event.data.get("blob", ""))

    @client.function(id="async", trigger=stepline.TriggerEvent(event="t/async"))
    async def on_async(ctx: stepline.Context) -> int:
        seen["async"] = threading.current_thread().name
        return len(ctx.event.data.get("blob", ""))

    return [on_sync, on_async]


def test_sync_functions_run_on_a_worker_thread_under_fastapi() -> None:
    seen: dict[str, Any] = {}
    client = stepline.Client("threads", is_production=False, environ={})
    app = fastapi.FastAPI()
    stepline.fastapi.serve(app, client, thread_functions(client, seen))
    http = fastapi.testclient.TestClient(app)
    for kind in ("sync", "async"):
        reply = http.post(f"/api/inngest?fnId=threads-{kind}", json=call_body("t", {}, {}))
        assert (reply.status_code, reply.json()) == (200, 0)
    assert seen["sync"].startswith("stepline")
    assert seen["sync_has_loop"] is False
    assert seen["async"] != seen["sync"]
    assert "/api/inngest" not in app.openapi()["paths"]


def test_aiohttp_runner_on_a_thread_takes_large_bodies_off_the_loop() -> None:
    seen: dict[str, Any] = {}
    client = stepline.Client("threads", is_production=False, environ={})
    app = web.Application()
    stepline.aiohttp.serve(app, client, thread_functions(client, seen))
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
    host, port = runner.addresses[0][:2]
    thread = threading.Thread(target=loop.run_forever, name="aiohttp-loop", daemon=True)
    thread.start()
    try:
        blob = "x" * (3 * 1024 * 1024)  # over aiohttp's default client_max_size of 1 MiB
        for kind in ("sync", "async"):
            url = f"http://{host}:{port}/api/inngest?fnId=threads-{kind}"
            reply = httpx.post(url, json=call_body("t", {"blob": blob}, {}), timeout=20)
            assert (reply.status_code, reply.json()) == (200, len(blob))
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.run_until_complete(runner.cleanup())
        loop.close()
    assert seen["sync"].startswith("stepline")
    assert seen["sync_has_loop"] is False
    assert seen["async"] == "aiohttp-loop"


# -- Starlette and the bare ASGI app in-process ----------------------------------------


def steps_function(client: stepline.Client) -> stepline.Function:
    @client.function(id="steps", trigger=stepline.TriggerEvent(event="t/steps"))
    async def steps(ctx: stepline.Context) -> int:
        a = await ctx.step.run("a", lambda: 20)
        return await ctx.step.run("b", lambda: a + 1)

    return steps


def drive_in_process(http: httpx.Client, path: str) -> httpx.Response:
    steps: dict[str, Any] = {}
    for _ in range(5):
        reply = http.post(f"{path}?fnId=st-steps", json=call_body("t", {}, steps))
        if reply.status_code != 206:
            return reply
        for op in reply.json():
            steps[op["id"]] = {"data": op["data"]}
    raise AssertionError("function did not complete")


@pytest.mark.parametrize("target", ["app", "router"])
def test_starlette_serves_at_the_route_path(target: str) -> None:
    client = stepline.Client("st", is_production=False, environ={})
    router = starlette.routing.Router()
    app = starlette.applications.Starlette(routes=[starlette.routing.Mount("/jobs", router)])
    where, prefix = (app, "") if target == "app" else (router, "/jobs")
    handler = stepline.starlette.serve(where, client, [steps_function(client)])
    assert handler.framework == "starlette"
    http = starlette.testclient.TestClient(app)
    done = drive_in_process(http, f"{prefix}/api/inngest")
    assert (done.status_code, done.json()) == (200, 21)
    assert done.headers["x-inngest-framework"] == "starlette"
    assert http.get(f"{prefix}/api/inngest").json()["function_count"] == 1
    assert http.get(f"{prefix}/api/inngest/extra").status_code == 404
    assert http.delete(f"{prefix}/api/inngest").status_code == 405


def test_starlette_streaming() -> None:
    client = stepline.Client("st", is_production=False, environ={})
    app = starlette.applications.Starlette()
    stepline.starlette.serve(app, client, [steps_function(client)], streaming="force")
    reply = starlette.testclient.TestClient(app).post(
        "/api/inngest?fnId=st-steps", json=call_body("t", {}, {})
    )
    assert reply.status_code == 201
    assert json.loads(reply.content)["status"] == 206


def test_bare_asgi_app_as_a_starlette_route_or_mount() -> None:
    client = stepline.Client("st", is_production=False, environ={})
    asgi_app = stepline.asgi.serve(client, [steps_function(client)])
    route = starlette.routing.Route("/api/inngest", asgi_app, methods=["GET", "POST", "PUT"])
    mount = starlette.routing.Mount("/mounted", asgi_app)
    app = starlette.applications.Starlette(routes=[route, mount])
    http = starlette.testclient.TestClient(app, follow_redirects=False)
    done = drive_in_process(http, "/api/inngest")
    assert (done.status_code, done.json()) == (200, 21)
    assert done.headers["x-inngest-framework"] == "asgi"
    assert http.get("/api/inngest/extra").status_code == 404
    # A Mount answers at its root, but Starlette redirects the bare path to "path/".
    assert http.get("/mounted/").status_code == 200
    assert http.get("/mounted").status_code == 307
    assert http.get("/mounted/api/inngest").status_code == 200
    assert http.get("/mounted/other").status_code == 404


@pytest.mark.slow
def test_bare_asgi_app_reports_the_public_url_under_a_root_path(stub_server: StubServer) -> None:
    client = stepline.Client("st", is_production=False, environ={}, api_base_url=stub_server.url)
    asgi_app = stepline.asgi.serve(client, [steps_function(client)])
    http = starlette.testclient.TestClient(asgi_app, root_path="/prefix")
    assert http.put("/api/inngest?x=1").status_code == 200
    assert stub_server.requests[0]["body"]["url"] == "http://testserver/prefix/api/inngest"
    assert http.get("/other").status_code == 404


def test_bare_asgi_app_refuses_websockets() -> None:
    client = stepline.Client("st", is_production=False, environ={})
    asgi_app = stepline.asgi.serve(client, [])

    async def never() -> dict[str, Any]:
        raise AssertionError("not reached")

    async def ignore(_message: Any) -> None:
        raise AssertionError("not reached")

    with pytest.raises(ValueError, match="websocket"):
        asyncio.run(asgi_app({"type": "websocket", "path": "/api/inngest"}, never, ignore))


# -- serve()-time checks ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("serve", "app"),
    [
        (stepline.fastapi.serve, flask.Flask("x")),
        (stepline.fastapi.serve, starlette.applications.Starlette()),
        (stepline.starlette.serve, flask.Flask("x")),
        (stepline.aiohttp.serve, fastapi.FastAPI()),
    ],
)
def test_wrong_app_type_is_rejected_at_serve(serve: Any, app: Any) -> None:
    client = stepline.Client("st", is_production=False, environ={})
    with pytest.raises(stepline.ConfigError, match="needs"):
        serve(app, client, [])


def test_aiohttp_app_that_already_started_is_rejected() -> None:
    client = stepline.Client("st", is_production=False, environ={})
    app = web.Application()
    app.freeze()
    with pytest.raises(stepline.ConfigError, match="before the app starts"):
        stepline.aiohttp.serve(app, client, [])
