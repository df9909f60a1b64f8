"""Durable routes on Flask: ``stepline.flask.durable``.

Each scenario runs twice: through Flask's test client and behind a real threaded werkzeug
server on 127.0.0.1 (called with httpx). The app (``flask_durable_app``) runs an
``EmbeddedEngine`` on SQLite in ``tmp_path`` with the kit's run routes at ``/api``; each
step writes a marker line, so a test sees how many times each step ran. The crash test
runs that app as a process, SIGKILLs it mid-request and starts it again on the same file.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flask
import httpx
import pytest
import werkzeug.serving

import stepline
import stepline.flask
from stepline.embedded import EmbeddedEngine

from . import crash
from .flask_durable_app import Built, build

pytestmark = [pytest.mark.process]

ROOT = Path(__file__).resolve().parents[2]
WAIT = 20.0


@pytest.fixture(autouse=True)
def _no_stepline_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("STEPLINE_", "INNGEST_")):
            monkeypatch.delenv(name)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self) -> Any:
        return httpx.Response(200, content=self.body).json()


class Site:
    """The app, its engine and a way in (Flask's test client or a real server)."""

    def __init__(self, built: Built, markers: Path, transport: str) -> None:
        self.built = built
        self.markers = markers
        self.server: Any = None
        if transport == "server":
            self.server = werkzeug.serving.make_server("127.0.0.1", 0, built.app, threaded=True)
            self.thread = threading.Thread(
                target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            self.thread.start()
            self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.server.port}", timeout=WAIT)

    def call(self, method: str, path: str, **kwargs: Any) -> Reply:
        if self.server is not None:
            response = self.http.request(method, path, **kwargs)
            headers = {k.lower(): v for k, v in response.headers.items()}
            return Reply(response.status_code, headers, response.content)
        if "content" in kwargs:
            kwargs["data"] = kwargs.pop("content")
        answer = self.built.app.test_client().open(path, method=method, **kwargs)
        headers = {k.lower(): v for k, v in answer.headers.items()}
        return Reply(answer.status_code, headers, answer.get_data())

    def marks(self, run_id: str) -> list[str]:
        """The steps that ran for ``run_id``, in order."""
        if not self.markers.exists():
            return []
        lines = [line.split() for line in self.markers.read_text().splitlines()]
        return [name for name, run in lines if run == run_id]

    def close(self) -> None:
        if self.server is not None:
            self.http.close()
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(WAIT)
        self.built.engine.stop()


@pytest.fixture(params=["test_client", "server"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    markers = tmp_path / "marks"
    made = Site(build(str(tmp_path / "e.db"), markers), markers, request.param)
    try:
        yield made
    finally:
        made.close()


def test_finishes_inline_with_the_handlers_body(site: Site) -> None:
    reply = site.call("POST", "/orders/42?x=1", json={"qty": 2})
    assert reply.status == 200, reply.body
    assert reply.json() == {
        "steps": ["a", "b", "c"],
        "oid": "42",
        "sent": {"qty": 2},
        "path": "/orders/42",
    }
    assert reply.headers["content-type"] == "application/json"
    run_id = reply.headers["x-stepline-run-id"]
    assert site.marks(run_id) == ["a", "b", "c"]  # each once, in the request
    run = site.built.client.get_run_sync(run_id).describe()
    assert run.status is stepline.RunStatus.COMPLETED
    assert run.function_id == "flask-durable-orders"


def test_suspends_on_sleep_then_the_result_route_answers(site: Site) -> None:
    reply = site.call("POST", "/nap", json={})
    assert reply.status == 202, reply.body
    run_id = reply.headers["x-stepline-run-id"]
    assert reply.headers["location"] == f"/api/runs/{run_id}/result"
    assert reply.json()["links"]["events"] == f"/api/runs/{run_id}/events"
    assert site.marks(run_id) == ["first"]  # "then" waits for the engine

    done = site.call("GET", reply.headers["location"] + "?wait=10")
    assert done.status == 200, done.body
    result = done.json()
    assert result["status"] == "Completed"
    assert result["output"]["status"] == 201
    assert result["output"]["json"] == {"ran": ["first", "then"]}
    assert site.marks(run_id) == ["first", "then"]


def test_the_same_idempotency_key_answers_the_same_run(site: Site) -> None:
    key = {"idempotency-key": "order-7"}
    first = site.call("POST", "/orders/7", json={"qty": 1}, headers=key)
    assert first.status == 200, first.body
    assert "idempotent-replayed" not in first.headers
    again = site.call("POST", "/orders/7", json={"qty": 1}, headers=key)
    assert again.status == 200
    assert again.headers["x-stepline-run-id"] == first.headers["x-stepline-run-id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert again.body == first.body
    assert site.marks(first.headers["x-stepline-run-id"]) == ["a", "b", "c"]  # not re-run

    napping = site.call("POST", "/nap", json={}, headers={"idempotency-key": "nap-1"})
    assert napping.status == 202
    run_id = napping.headers["x-stepline-run-id"]
    while_running = site.call("POST", "/nap", json={}, headers={"idempotency-key": "nap-1"})
    assert (while_running.status, while_running.headers["x-stepline-run-id"]) == (202, run_id)
    site.built.client.get_run_sync(run_id).result(timeout=10)
    ended = site.call("POST", "/nap", json={}, headers={"idempotency-key": "nap-1"})
    assert ended.status == 201  # the stored response
    assert ended.json() == {"ran": ["first", "then"]}
    assert (ended.headers["x-nap"], ended.headers["idempotent-replayed"]) == ("1", "true")
    assert ended.headers["x-stepline-run-id"] == run_id
    assert site.marks(run_id) == ["first", "then"]


def test_an_endpoint_response_sets_status_and_headers(site: Site) -> None:
    reply = site.call("POST", "/made/7")
    assert reply.status == 201, reply.body
    assert reply.headers["x-order"] == "7"
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    assert reply.body == b"order 7 made"
    assert site.marks(reply.headers["x-stepline-run-id"]) == ["make"]


def test_a_body_over_max_body_is_413_and_starts_nothing(site: Site) -> None:
    small = site.built.views["small"].endpoint.function
    fits = site.call("POST", "/small", content=b"x" * 16)
    assert (fits.status, fits.json()) == (200, {"echo": "x" * 16})
    refused = site.call("POST", "/small", content=b"y" * 17)
    assert refused.status == 413
    assert refused.json() == {"error": "the request body is larger than 16 bytes"}
    runs, _ = site.built.client.list_runs_sync(function=small)
    assert len(runs) == 1  # the one that fit


def test_an_async_handler_runs_on_a_private_loop(tmp_path: Path) -> None:
    client = stepline.Client("flask-async", is_production=False, environ={})
    app = flask.Flask("flask-async")
    engine = EmbeddedEngine(client, [], database=str(tmp_path / "a.db"), poll_interval=0.05)
    stepline.flask.serve(app, client, [], engine=engine)
    try:

        @app.post("/pay/<oid>")
        @stepline.flask.durable(client)
        async def pay(ctx: stepline.EndpointContext) -> dict[str, str]:
            charge = await ctx.step.run("charge", lambda: f"ch-{ctx.request.path_params['oid']}")
            return {"charge": charge}

        with app.test_client() as http:
            for oid in ("1", "2"):  # a second request reuses the loop and its connections
                answer = http.post(f"/pay/{oid}")
                assert answer.status_code == 200, answer.get_data(as_text=True)
                assert answer.get_json() == {"charge": f"ch-{oid}"}
    finally:
        engine.stop()


def test_sigkill_mid_request_the_engine_finishes_the_run(tmp_path: Path) -> None:
    crash.orders_app_survives_sigkill(["tests.endpoints.flask_durable_app"], tmp_path)
