"""What only the bare ASGI app of the web kit does: ``stepline.asgi.runs_app``.

The routes' behaviour (the app mounted in Starlette through its ``TestClient``, and the
bare app behind uvicorn) is the contract of ``test_kit_contract``. Here: paths and methods
outside its routes, ``root_path``, lifespan and other scopes, and leaving clients.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import starlette.applications
import starlette.datastructures
import starlette.routing
import starlette.testclient

import stepline
import stepline.asgi
import stepline.web
from tests._support.server_thread import serving

from .kit_harness import VARIANTS, Kit, hook_for, make_kit
from .test_fastapi_kit import read_events

AUTH = {"x-user": "alice"}
SERVERS = ["testclient", "uvicorn"]


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    made = make_kit(tmp_path)
    yield made
    made.engine.stop()


def runs_app(kit: Kit, **options: float) -> stepline.asgi.RunsApp:
    options.setdefault("poll_interval", 0.05)
    authorize = hook_for(VARIANTS["asgi-testclient"], kit)  # a sync hook, on the scope
    return stepline.asgi.runs_app(kit.client, kit.exposed, authorize=authorize, **options)


@contextlib.contextmanager
def http_client(app: Any, server: str) -> Iterator[httpx.Client]:
    """Starlette's TestClient on ``app``, or httpx against uvicorn."""
    if server == "testclient":
        with starlette.testclient.TestClient(app, base_url="http://localhost") as http:
            yield http
        return
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield http


def mounted(app: Any, path: str = "/api") -> starlette.applications.Starlette:
    return starlette.applications.Starlette(routes=[starlette.routing.Mount(path, app)])


@pytest.mark.parametrize("server", SERVERS)
def test_other_paths_and_methods(kit: Kit, server: str) -> None:
    with http_client(mounted(runs_app(kit)), server) as http:
        assert http.get("/api/other", headers=AUTH).json() == {"error": "no route /other"}
        assert http.get("/api/runs", headers=AUTH).status_code == 405
        assert http.get("/api/runs/x/cancel", headers=AUTH).status_code == 405
        json_auth = {**AUTH, "content-type": "application/json"}
        too_big = http.post("/api/runs", content=b"x" * (1024 * 1024 + 10), headers=json_auth)
        assert too_big.status_code == 413
        assert http.get("/elsewhere").status_code == 404  # Starlette's own 404


def test_links_follow_root_path(kit: Kit) -> None:
    http = starlette.testclient.TestClient(runs_app(kit), root_path="/shop")
    reply = http.post("/runs", json={"function": "add", "data": {"x": 1}}, headers=AUTH)
    assert reply.status_code == 201, reply.text
    assert reply.json()["links"]["result"] == f"/shop/runs/{reply.json()['run_id']}/result"
    # Starlette routes on the full path (root_path included), as uvicorn sends it
    outer = starlette.testclient.TestClient(mounted(runs_app(kit), "/kit"), root_path="/shop")
    again = outer.post("/shop/kit/runs", json={"function": "add", "data": {"x": 1}}, headers=AUTH)
    assert again.json()["links"]["self"] == f"/shop/kit/runs/{again.json()['run_id']}"


def test_a_client_leaving_a_stream_stops_it(kit: Kit) -> None:
    # uvicorn's shutdown (in serving) waits for every response: it would hang here
    # if the stream of a run held for an hour kept polling after its client left (no
    # keepalive is due to notice it by a failed send).
    app = runs_app(kit, keepalive=600)
    with serving(app) as url, httpx.Client(base_url=url, timeout=30, headers=AUTH) as http:
        run_id = http.post("/runs", json={"function": "hold"}).json()["run_id"]
        with http.stream("GET", f"/runs/{run_id}/events") as stream:
            first = read_events(stream.iter_lines(), until=lambda kind, _data: kind == "status")
        assert first[0][1]["run_id"] == run_id
        assert http.get(f"/runs/{run_id}").json()["status"] in ("Queued", "Running")


def test_lifespan_and_other_scopes(kit: Kit) -> None:
    app = runs_app(kit)
    with starlette.testclient.TestClient(app) as http:  # lifespan startup and shutdown
        assert http.get("/runs/01NOSUCHRUN", headers=AUTH).status_code == 404

    async def never() -> dict[str, Any]:
        raise AssertionError("not reached")

    async def ignore(_message: Any) -> None:
        raise AssertionError("not reached")

    with pytest.raises(ValueError, match="websocket"):
        asyncio.run(app({"type": "websocket", "path": "/runs"}, never, ignore))


def test_runs_app_needs_authorize_and_functions(kit: Kit) -> None:
    with pytest.raises(stepline.ConfigError, match="allow_all"):
        stepline.asgi.runs_app(kit.client, kit.exposed, authorize=None)  # type: ignore[arg-type]
    with pytest.raises(stepline.ConfigError, match="at least one function"):
        stepline.asgi.runs_app(kit.client, [], authorize=stepline.web.allow_all)
