"""``stepline start`` as a process (the CLI's own uvicorn) serving the official worker.

The worker holds the engine's signing key (production mode); events go in with an event
key and results come back through the bearer-authorized REST API, as in a deployment.
A SIGTERM lets the step in flight finish over its socket, tells the worker
(GATEWAY_CLOSING) and stops the engine promptly; back on the same port, the worker
reconnects and the run goes on from what was recorded.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from stepline._protocol import signing
from tests._support.polling import wait_until
from tests._support.processes import clean_env, engine_command, free_port, spawned
from tests.apps.connect_official_worker import event

from .harness import APP_ID, workers

pytestmark = [pytest.mark.process, pytest.mark.timeout(90)]
KEY = "signkey-prod-" + "9e0f" * 16
EVENT_KEY = "connect-event-key"


def test_stepline_start_serves_the_official_worker_and_drains_it_on_sigterm(
    tmp_path: Path,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = clean_env(STEPLINE_SIGNING_KEY=KEY, STEPLINE_EVENT_KEY=EVENT_KEY)
    command = engine_command("start", "--port", str(port), "--db", str(tmp_path / "e.db"))
    auth = {"authorization": signing.bearer_token(KEY)}
    log = tmp_path / "engine.log"
    with (
        workers(tmp_path) as found,
        httpx.Client(base_url=base, headers=auth, timeout=30) as http,
    ):
        with spawned(command, log=log, env=env, up=f"{base}/health") as engine:
            found.spawn(base, "w1", KEY, debug=True)

            def synced() -> bool:
                apps = http.get("/v1/apps").json()["data"]
                return any(a["app_id"] == APP_ID for a in apps)

            wait_until(synced, message=lambda: f"the worker's app:\n{found.output('w1')}")
            run = _run(http, "steps", {"n": 6})
            assert (run["status"], run["output"]) == ("Completed", 60)
            assert found.ran("steps.one") == ["w1"]

            gate = tmp_path / "gate"
            event_id = _send(http, "fragile", {"seconds": 60, "gate": str(gate)})
            wait_until(lambda: found.ran("fragile.work.start") or None, message="the step")
            stopping = time.monotonic()
            engine.terminate()  # the step in flight finishes over its socket, then it closes
            wait_until(lambda: _closed(base), message="the engine to stop listening")
            assert engine.poll() is None, "it waits for the call in flight"
            gate.touch()
            assert engine.wait(20) == 0
            assert time.monotonic() - stopping < 10
            assert found.ran("fragile.work.end") == ["w1"]
            # told GATEWAY_CLOSING before the server closed the socket
            wait_until(lambda: "DEBUG:worker:Draining" in found.output("w1"), timeout=5)
        # back on the same port: the worker reconnects, the run goes on from what was recorded
        with spawned(command, log=log, env=env, up=f"{base}/health"):
            run = _ended(http, event_id, timeout=40)
            assert (run["status"], run["output"]) == ("Completed", "after")
            assert found.ran("fragile.work.start") == ["w1"], "the drained step was recorded"
            assert found.ran("fragile.after") == ["w1"]
    assert "Traceback" not in log.read_text()


def _closed(base: str) -> bool:
    """Whether the engine at ``base`` no longer listens."""
    try:
        httpx.get(f"{base}/health", timeout=5)
    except httpx.ConnectError:
        return True
    return False


def _send(http: httpx.Client, name: str, data: dict[str, Any]) -> str:
    sent = http.post(f"/e/{EVENT_KEY}", json={"name": event(name), "data": data})
    assert sent.status_code == 200, sent.text
    return str(sent.json()["ids"][0])


def _ended(http: httpx.Client, event_id: str, timeout: float = 30) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        runs = http.get(f"/v1/events/{event_id}/runs").json()["data"]
        ok = runs and runs[0]["status"] in ("Completed", "Failed")
        return dict(runs[0]) if ok else None

    return wait_until(ended, timeout=timeout, message=f"the run of event {event_id}")


def _run(http: httpx.Client, name: str, data: dict[str, Any]) -> dict[str, Any]:
    return _ended(http, _send(http, name, data))
