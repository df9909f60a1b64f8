"""The Flask adapter behind a real server process (werkzeug) on 127.0.0.1."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests._support.processes import answers, free_port, spawned
from tests._support.stub_server import StubServer

pytestmark = [pytest.mark.process]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def flask_server(stub_server: StubServer, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "STEPLINE_DEV": "1",
        "STEPLINE_API_BASE_URL": stub_server.url,
        "PYTHONWARNINGS": "ignore",  # werkzeug's "development server" banner is not ours
    }
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, str(ROOT / "examples" / "flask" / "app.py")]
    log = tmp_path / "flask.log"
    with spawned(command, log=log, env=env, up=f"{base}/", ready=answers, timeout=20):
        yield base


def body(steps: dict[str, Any]) -> dict[str, Any]:
    event = {"name": "example/greet", "data": {"name": "Ada"}, "id": "e", "ts": 1}
    ctx = {"run_id": "r", "attempt": 0, "stack": {"stack": list(steps)}}
    return {"event": event, "events": [event], "steps": steps, "ctx": ctx, "use_api": False}


def test_sync_and_run_over_real_http(flask_server: str, stub_server: StubServer) -> None:
    stub_server.answer = lambda _req: (200, {"ok": True})
    sync = httpx.put(flask_server + "/api/inngest", timeout=10)
    assert sync.status_code == 200
    # dev mode: the app also registers itself on its first request (the fixture's GET /),
    # on a thread of its own: one or two registrations, each the same
    registers = stub_server.requests
    assert 1 <= len(registers) <= 2
    for register in registers:
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
