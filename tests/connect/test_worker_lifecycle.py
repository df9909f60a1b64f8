"""Stepline's worker in this process: stopping before it ever connected, and an engine
that refuses its app (``ConnectError``: retrying would not help)."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

import stepline
import stepline.connect
from tests._support import refusing
from tests._support.polling import wait_until
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


def test_a_worker_stopped_while_the_engine_is_down_returns_at_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="stepline.connect")
    # a long backoff, so a stop that waited it out could not pass the bound below
    monkeypatch.setattr("stepline._connect.link.backoff", lambda failures: 60.0)
    client, functions = _client(f"http://127.0.0.1:{free_port()}", "lonely")
    worker = stepline.connect.Worker(client, functions, instance_id="lonely-1")
    done = threading.Event()
    thread = threading.Thread(target=lambda: (worker.run(), done.set()), daemon=True)
    thread.start()
    wait_until(  # a refused start call, and the worker backing off
        lambda: any("connecting again in 60.0s" in r.getMessage() for r in caplog.records),
        message="the worker to back off",
    )
    assert not worker.connected.is_set()
    stopped = time.monotonic()
    worker.stop()
    assert done.wait(30), "the worker did not stop"
    assert time.monotonic() - stopped < 20, "the stop waited for the backoff"


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


def test_a_worker_that_cannot_reach_the_engine_names_the_url_it_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="stepline.connect")
    client, functions = _client(refusing.url(), "unreachable")
    worker = stepline.connect.Worker(client, functions)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        lines = wait_until(
            lambda: (
                [r.getMessage() for r in caplog.records if "connecting again" in r.getMessage()]
                or None
            ),
            message="a retry line",
        )
    finally:
        worker.stop()
        thread.join(10)
    assert lines[0].startswith(
        f"Connect: cannot reach {refusing.url()}/v0/connect/start (ConnectError: "
    ), lines[0]
    assert "; connecting again in " in lines[0]


def test_a_worker_logs_the_gateway_and_the_app_once_connected(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="stepline.connect")
    with node(str(tmp_path / "e.db")) as engine:
        client, functions = _client(engine.url, "greeter")
        worker = stepline.connect.Worker(client, functions)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        try:
            assert worker.connected.wait(20), "the worker did not connect"
            said = wait_until(
                lambda: [r for r in caplog.records if "connected to" in r.getMessage()] or None,
                message="the connected line",
            )
        finally:
            worker.stop()
            thread.join(10)
    [record] = said
    assert record.levelno == logging.INFO
    gateway = engine.url.replace("http://", "ws://") + "/v0/connect/gateway"
    assert record.getMessage().startswith(
        f"Connect: connected to {gateway}: serving app greeter (connection "
    ), record.getMessage()
