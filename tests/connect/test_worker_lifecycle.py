"""Stepline's worker in this process: stopping before it ever connected, and an engine
that refuses its app (``ConnectError``: retrying would not help)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import stepline
import stepline.connect
from tests._support.processes import free_port

from .harness import node

pytestmark = pytest.mark.timeout(60)


def _client(url: str, app_id: str) -> tuple[stepline.Client, list[stepline.Function]]:
    client = stepline.Client(
        app_id, is_production=False, api_base_url=url, event_api_base_url=url, environ={}
    )

    @client.function(id="f", trigger=stepline.TriggerEvent(event=f"{app_id}/f"))
    async def f(ctx: stepline.Context) -> str:
        return "f"

    return client, [f]


def test_a_worker_stopped_while_the_engine_is_down_returns_at_once() -> None:
    client, functions = _client(f"http://127.0.0.1:{free_port()}", "lonely")
    worker = stepline.connect.Worker(client, functions, instance_id="lonely-1")
    done = threading.Event()
    thread = threading.Thread(target=lambda: (worker.run(), done.set()), daemon=True)
    thread.start()
    time.sleep(1.5)  # a few refused start calls, backing off
    assert not worker.connected.is_set()
    stopped = time.monotonic()
    worker.stop()
    assert done.wait(10), "the worker did not stop"
    assert time.monotonic() - stopped < 2


def test_a_refused_registration_stops_the_worker(tmp_path: Path) -> None:
    with node(str(tmp_path / "e.db")) as engine:
        # another app took the id this worker's function registers under
        taken = {
            "appName": "thief",
            "url": "http://127.0.0.1:9/api",
            "functions": [
                {
                    "id": "victim-f",
                    "name": "f",
                    "triggers": [{"event": "thief/f"}],
                    "steps": {"step": {"id": "step", "runtime": {"url": "http://127.0.0.1:9/a"}}},
                }
            ],
        }
        assert engine.http.post("/fn/register", json=taken).status_code == 200
        client, functions = _client(engine.url, "victim")
        worker = stepline.connect.Worker(client, functions)
        with pytest.raises(stepline.connect.ConnectError, match="belong to another app"):
            worker.run()
        assert engine.engine.connect.workers() == []
