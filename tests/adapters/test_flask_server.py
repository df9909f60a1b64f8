"""The Flask adapter behind a real server process (werkzeug) on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import StubServer

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def flask_server(stub_server: StubServer) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "STEPLINE_DEV": "1",
        "STEPLINE_API_BASE_URL": stub_server.url,
        "PYTHONWARNINGS": "ignore",  # werkzeug's "development server" banner is not ours
    }
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "flask" / "app.py")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(base + "/", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the Flask example did not start") from None
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def body(steps: dict[str, Any]) -> dict[str, Any]:
    event = {"name": "example/greet", "data": {"name": "Ada"}, "id": "e", "ts": 1}
    ctx = {"run_id": "r", "attempt": 0, "stack": {"stack": list(steps)}}
    return {"event": event, "events": [event], "steps": steps, "ctx": ctx, "use_api": False}


def test_sync_and_run_over_real_http(flask_server: str, stub_server: StubServer) -> None:
    stub_server.answer = lambda _req: (200, {"ok": True})
    sync = httpx.put(flask_server + "/api/inngest", timeout=10)
    assert sync.status_code == 200
    [register] = stub_server.requests
    assert register["body"]["url"] == flask_server + "/api/inngest"
    assert register["body"]["framework"] == "flask"

    url = flask_server + "/api/inngest?fnId=flask-example-greet&stepId=step"
    steps: dict[str, Any] = {}
    for _ in range(5):
        reply = httpx.post(url, json=body(steps), timeout=10)
        if reply.status_code == 200:
            break
        assert reply.status_code == 206
        for op in reply.json():
            steps[op["id"]] = {"data": op["data"]}
    assert reply.json() == {"text": "Hello, Ada!"}
    assert reply.headers["x-inngest-framework"] == "flask"
