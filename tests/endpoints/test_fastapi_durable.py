"""Durable endpoints under FastAPI: through ``TestClient`` and behind uvicorn, and a crash.

The app (``fastapi_durable_app``) runs an embedded engine on SQLite; its kit routes are
mounted at ``/api`` so a suspended request's ``Location`` can be followed.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import fastapi.testclient
import httpx
import pytest

import stepline.fastapi
from tests._support.polling import wait_until
from tests._support.processes import clean_env, free_port, spawn, stop, wait_until_up
from tests._support.server_thread import serving
from tests.endpoints import crash
from tests.endpoints.fastapi_durable_app import build

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SERVERS = ["testclient", "uvicorn"]


@contextlib.contextmanager
def http_client(tmp_path: Path, server: str) -> Iterator[tuple[httpx.Client, Path]]:
    markers = tmp_path / "markers"
    app = build(str(tmp_path / "e.db"), markers)
    if server == "testclient":
        with fastapi.testclient.TestClient(app, base_url="http://localhost") as http:
            yield http, markers
        return
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield http, markers


def ran(markers: Path) -> list[str]:
    return markers.read_text().split() if markers.exists() else []


def follow(http: httpx.Client, location: str) -> httpx.Response:
    """The kit's result route at ``location``, held until the run ends."""
    answer = http.get(location, params={"wait": "10"})
    assert answer.status_code == 200, answer.text
    return answer


@pytest.mark.parametrize("server", SERVERS)
def test_a_route_that_finishes_answers_inline(tmp_path: Path, server: str) -> None:
    with http_client(tmp_path, server) as (http, markers):
        answer = http.post("/three/42", json={"n": 1})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"steps": ["a", "b", "c"], "oid": "42"}
        run_id = answer.headers["x-stepline-run-id"]
        assert ran(markers) == ["a", "b", "c"]
        run = http.get(f"/api/runs/{run_id}").json()
        assert run["status"] == "Completed"
        assert run["output"]["json"] == {"steps": ["a", "b", "c"], "oid": "42"}


@pytest.mark.parametrize("server", SERVERS)
def test_a_sleep_answers_202_and_the_result_route_answers_once_it_ends(
    tmp_path: Path, server: str
) -> None:
    with http_client(tmp_path, server) as (http, markers):
        answer = http.post("/nap", json={})
        assert answer.status_code == 202, answer.text
        run_id = answer.headers["x-stepline-run-id"]
        assert answer.headers["location"] == f"/api/runs/{run_id}/result"
        assert answer.json()["links"]["events"] == f"/api/runs/{run_id}/events"
        assert ran(markers) == ["first"]
        result = follow(http, answer.headers["location"]).json()
        assert result["status"] == "Completed"
        assert result["output"] == {
            "status": 201,
            "headers": {"x-nap": "1", "content-type": "application/json"},
            "json": {"ran": ["first", "then"]},
        }
        assert ran(markers) == ["first", "then"]  # the recorded step did not run again


@pytest.mark.parametrize("server", SERVERS)
def test_a_retried_request_with_the_same_idempotency_key_gets_the_same_run(
    tmp_path: Path, server: str
) -> None:
    with http_client(tmp_path, server) as (http, markers):
        key = {"idempotency-key": "order-7"}
        first = http.post("/nap", json={}, headers=key)
        assert first.status_code == 202
        again = http.post("/nap", json={}, headers=key)
        assert again.status_code == 202
        run_id = first.headers["x-stepline-run-id"]
        assert again.headers["x-stepline-run-id"] == run_id
        follow(http, first.headers["location"])
        ended = http.post("/nap", json={}, headers=key)  # the stored response, run again
        assert ended.status_code == 201
        assert ended.headers["x-nap"] == "1"
        assert ended.headers["x-stepline-run-id"] == run_id
        assert ended.headers["idempotent-replayed"] == "true"
        assert ended.json() == {"ran": ["first", "then"]}
        assert ran(markers) == ["first", "then"]
        other = http.post("/nap", json={}, headers={"idempotency-key": "order-8"})
        assert other.headers["x-stepline-run-id"] != run_id


def test_a_body_past_the_limit_is_413_and_starts_no_run(tmp_path: Path) -> None:
    with http_client(tmp_path, "testclient") as (http, markers):
        answer = http.post("/three/1", content=b"x" * (1024 * 1024 + 1))
        assert answer.status_code == 413
        assert "larger than" in answer.json()["error"]
        assert ran(markers) == []
        assert http.get("/api/runs/x").status_code == 404


def test_the_router_pins_durable() -> None:
    assert stepline.fastapi.__all__ == [
        "ENGINE_PATH",
        "ClientDep",
        "durable",
        "get_client",
        "lifespan",
        "runs_router",
        "serve",
    ]


@pytest.mark.process
def test_a_killed_app_process_is_finished_by_the_engine_without_rerunning_a_step(
    tmp_path: Path,
) -> None:
    """SIGKILL after steps a and b were recorded (c running): the restarted app's engine
    takes the call back when its lease lapses and finishes the run from the checkpoints."""
    port, database, markers = free_port(), str(tmp_path / "e.db"), tmp_path / "markers"
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "tests.endpoints.fastapi_durable_app", str(port)]
    command += [database, str(markers)]
    log = tmp_path / "app.log"
    proc = spawn(command, log=log, env=clean_env(BLOCK="1"), cwd=ROOT)
    try:
        wait_until_up(f"{base}/api/runs/none", proc, log=log, ready=lambda r: True)
        # the request hangs in step c until the kill: sent from a thread never joined
        threading.Thread(target=crash.post_quietly, args=(f"{base}/three/9",), daemon=True).start()
        wait_until(lambda: "c-started" in ran(markers), timeout=20, message="step c to start")
        proc.kill()
        proc.wait(10)
        assert ran(markers) == ["a", "b", "c-started"]
        proc = spawn(command, log=log, env=clean_env(BLOCK="0"), cwd=ROOT, append=True)
        wait_until_up(f"{base}/api/runs/none", proc, log=log, ready=lambda r: True)

        def ended() -> bool:
            runs = httpx.get(f"{base}/stepline/v1/runs", timeout=5).json()["data"]
            return bool(runs) and runs[0]["status"] == "Completed"

        wait_until(ended, timeout=30, message=lambda: f"the run to end: {ran(markers)}")
        run = httpx.get(f"{base}/stepline/v1/runs", timeout=5).json()["data"][0]
        assert run["output"]["json"] == {"steps": ["a", "b", "c"], "oid": "9"}
        assert ran(markers) == ["a", "b", "c-started", "c"]  # a and b ran once
    finally:
        stop(proc)
