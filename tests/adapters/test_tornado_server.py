"""The Tornado adapter behind a real server process (``examples/tornado/app.py``).

The contract suite (``harness_tornado.py``) covers the protocol; these tests add a real
process, the non-blocking guarantee, and ``serve()``-time checks.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tornado.web

import stepline
import stepline.tornado
from tests._support.processes import answers, free_port, spawned
from tests._support.stub_server import StubServer

from .harness_tornado import TornadoHarness

ROOT = Path(__file__).resolve().parents[2]
#: a blocked ioloop answers the inspection only after the slow step (over 4 s later); a
#: free one at once, within this margin on a loaded machine
INSPECT_BUDGET_SECONDS = 2.5
SLOW_STEP_SECONDS = 5.0


@pytest.fixture
def tornado_server(stub_server: StubServer, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "STEPLINE_DEV": "1",
        "STEPLINE_API_BASE_URL": stub_server.url,
    }
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, str(ROOT / "examples" / "tornado" / "app.py")]
    log = tmp_path / "tornado.log"
    with spawned(command, log=log, env=env, up=f"{base}/", ready=answers, timeout=20):
        yield base


def body(data: dict[str, Any], steps: dict[str, Any]) -> dict[str, Any]:
    event = {"name": "example/any", "data": data, "id": "e", "ts": 1}
    ctx = {"run_id": "r", "attempt": 0, "stack": {"stack": list(steps)}}
    return {"event": event, "events": [event], "steps": steps, "ctx": ctx, "use_api": False}


def run(base: str, fn: str, data: dict[str, Any]) -> httpx.Response:
    """Call a function the way the engine does until it completes."""
    url = f"{base}/api/inngest?fnId=tornado-example-{fn}&stepId=step"
    steps: dict[str, Any] = {}
    for _ in range(5):
        reply = httpx.post(url, json=body(data, steps), timeout=10)
        if reply.status_code != 206:
            return reply
        for op in reply.json():
            assert op["op"] == "StepRun", op
            steps[op["id"]] = {"data": op["data"]}
    raise AssertionError(f"{fn} did not complete")


@pytest.mark.process
def test_sync_and_run_over_real_http(tornado_server: str, stub_server: StubServer) -> None:
    stub_server.answer = lambda _req: (200, {"ok": True})
    sync = httpx.put(tornado_server + "/api/inngest", timeout=10)
    assert sync.status_code == 200
    assert sync.headers["x-inngest-sync-kind"] == "out_of_band"
    # dev mode: the app also registers itself on its first request (the fixture's GET /),
    # on a thread of its own: one or two registrations, each the same
    registers = stub_server.requests
    assert 1 <= len(registers) <= 2
    for register in registers:
        assert register["body"]["url"] == tornado_server + "/api/inngest"
        assert register["body"]["framework"] == "tornado"
        assert len(register["body"]["functions"]) == 2

    greeted = run(tornado_server, "greet", {"name": "Ada"})
    assert greeted.status_code == 200
    assert greeted.json() == {"text": "Hello, Ada!"}
    assert greeted.headers["x-inngest-framework"] == "tornado"
    counted = run(tornado_server, "count", {"n": 5})
    assert (counted.status_code, counted.json()) == (200, 10)


@pytest.mark.process
def test_slow_sync_function_does_not_block_the_ioloop(tornado_server: str) -> None:
    url = f"{tornado_server}/api/inngest?fnId=tornado-example-greet&stepId=step"
    slow = body({"name": "Ada", "delay": SLOW_STEP_SECONDS}, {})
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        started = time.monotonic()
        pending = pool.submit(httpx.post, url, json=slow, timeout=30)
        time.sleep(0.5)  # let the slow step start on the server's thread pool
        inspected = httpx.get(tornado_server + "/api/inngest", timeout=10)
        answered_after = time.monotonic() - started
        assert not pending.done(), "the slow call finished early; the test proves nothing"
        reply = pending.result()
    assert inspected.status_code == 200
    assert answered_after < 0.5 + INSPECT_BUDGET_SECONDS
    assert time.monotonic() - started >= SLOW_STEP_SECONDS
    assert reply.status_code == 206
    [op] = reply.json()
    assert (op["op"], op["data"]) == ("StepRun", "Ada")


# -- the same adapter in process (harness server), for what the example app cannot show ----


def make_client(app_id: str = "tornado-app") -> stepline.Client:
    return stepline.Client(app_id, is_production=False, environ={})


def one_function(client: stepline.Client) -> list[stepline.Function]:
    @client.function(id="hello", trigger=stepline.TriggerEvent(event="t/hello"))
    def hello(ctx: stepline.SyncContext) -> str:
        return "hello"

    return [hello]


def test_an_xsrf_protected_app_still_accepts_engine_calls() -> None:
    harness = TornadoHarness(xsrf_cookies=True)
    client = make_client()
    harness.serve(client, one_function(client))
    reply = harness.request(
        "POST",
        "/api/inngest?fnId=tornado-app-hello&stepId=step",
        {"content-type": "application/json"},
        json.dumps(body({}, {})).encode(),
    )
    assert (reply.status, reply.json()) == (200, "hello")


def test_other_methods_get_405_and_inspection_is_not_cached() -> None:
    harness = TornadoHarness()
    client = make_client()
    harness.serve(client, one_function(client))
    assert harness.request("DELETE", "/api/inngest", {}, b"").status == 405
    inspected = harness.request("GET", "/api/inngest", {}, b"")
    assert inspected.status == 200
    assert "etag" not in inspected.headers


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"streaming": "sometimes"}, "streaming must be"),
        ({"thread_pool_max_workers": -1}, "thread_pool_max_workers must be"),
        ({"serve_path": "api/inngest"}, "must start with '/'"),
    ],
)
def test_misconfiguration_is_rejected_at_serve(options: dict[str, Any], message: str) -> None:
    client = make_client()
    with pytest.raises(stepline.ConfigError, match=message):
        stepline.tornado.serve(tornado.web.Application(), client, one_function(client), **options)


def test_function_of_another_app_is_rejected_at_serve() -> None:
    client, other = make_client(), make_client("other")
    with pytest.raises(stepline.ConfigError, match="belongs to app"):
        stepline.tornado.serve(tornado.web.Application(), client, one_function(other))
