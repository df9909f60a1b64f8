"""What the web-app kit does only under FastAPI: ``runs_router``'s mounting and OpenAPI,
``lifespan``, ``get_client``, ``serve(engine=)`` and the orders example.

The routes' behaviour (through FastAPI's ``TestClient`` and behind uvicorn) is the contract
of ``test_kit_contract``. Runs execute on an ``EmbeddedEngine`` (SQLite in ``tmp_path``).
The example app (``examples/fastapi_orders``) is tested in-process and as the one command
its README gives.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import fastapi
import fastapi.testclient
import httpx
import pydantic
import pytest

import stepline
import stepline.fastapi
import stepline.web
from stepline.embedded import EmbeddedEngine
from tests._support.processes import answers, free_port, wait_until_up
from tests._support.server_thread import serving

from .kit_harness import CSRF, Kit, make_kit

TOKEN = "s3cret"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fastapi_orders" / "app.py"


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    made = make_kit(tmp_path)
    yield made
    made.engine.stop()


# -- servers -------------------------------------------------------------------------------


@contextlib.contextmanager
def http_client(app: Any, server: str) -> Iterator[httpx.Client]:
    """An HTTP client on ``app``: FastAPI's TestClient, or httpx against uvicorn."""
    if server == "testclient":
        with fastapi.testclient.TestClient(app, base_url="http://localhost") as http:
            yield http
        return
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield http


SERVERS = ["testclient", "uvicorn"]


def read_events(lines: Iterable[str], until: Callable[[str, Any], bool] | None = None) -> list:
    """Parse SSE ``event:``/``data:`` lines into ``(event, data)``; stop after ``until``."""
    events: list[tuple[str, Any]] = []
    name = "message"
    for line in lines:
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            events.append((name, json.loads(line.removeprefix("data: "))))
            if until is not None and until(*events[-1]):
                break
    return events


# -- runs_router ----------------------------------------------------------------------------


@pytest.mark.parametrize("server", SERVERS)
def test_runs_router_prefix_and_sync_authorize(kit: Kit, server: str) -> None:
    app = fastapi.FastAPI()
    router = stepline.fastapi.runs_router(
        kit.client, [kit.add], authorize=stepline.web.allow_all, prefix="/jobs"
    )
    app.include_router(router, prefix="/v2")
    with http_client(app, server) as http:
        reply = http.post("/v2/jobs/runs", json={"function": "kit-add", "data": {"x": 1}})
        assert reply.status_code == 201, reply.text
        assert reply.json()["links"]["self"].startswith("/v2/jobs/runs/")
        result = http.get(reply.json()["links"]["result"], params={"wait": "10"})
        assert result.json()["output"] == 2
        assert http.get("/v2/jobs/runs").status_code == 405


def test_a_client_leaving_a_stream_stops_it(kit: Kit) -> None:
    # uvicorn's shutdown (in serving) waits for every response: it would hang here
    # if the stream of a run held for an hour kept polling after its client left (no
    # keepalive is due to notice it by a failed send).
    app = fastapi.FastAPI()
    router = stepline.fastapi.runs_router(
        kit.client, kit.exposed, authorize=stepline.web.allow_all, poll_interval=0.05, keepalive=600
    )
    app.include_router(router)
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        run_id = http.post("/runs", json={"function": "hold"}).json()["run_id"]
        with http.stream("GET", f"/runs/{run_id}/events") as stream:
            first = read_events(stream.iter_lines(), until=lambda kind, _data: kind == "status")
        assert first[0][1]["run_id"] == run_id
    assert kit.client.get_run_sync(run_id).status() is not stepline.RunStatus.CANCELLED


def test_openapi_documents_the_routes(kit: Kit) -> None:
    class Line(pydantic.BaseModel):
        sku: str

    class Order(pydantic.BaseModel):
        lines: list[Line]

    app = fastapi.FastAPI()
    router = stepline.fastapi.runs_router(
        kit.client, kit.exposed, authorize=stepline.web.allow_all, inputs={kit.add: Order}
    )
    app.include_router(router, prefix="/api")
    paths = fastapi.testclient.TestClient(app).get("/openapi.json").json()["paths"]
    summaries = {
        (path, method): op["summary"] for path, ops in paths.items() for method, op in ops.items()
    }
    assert summaries == {
        ("/api/runs", "post"): "Start a run",
        ("/api/runs/{run_id}", "get"): "Get a run's status",
        ("/api/runs/{run_id}/cancel", "post"): "Cancel a run",
        ("/api/runs/{run_id}/result", "get"): "Get a run's result",
        ("/api/runs/{run_id}/events", "get"): "Follow a run (Server-Sent Events)",
        ("/api/approvals", "get"): "List the pending approvals",
        ("/api/approvals/{approval_id}", "get"): "Get an approval",
        ("/api/approvals/{approval_id}/approve", "post"): "Approve a tool call",
        ("/api/approvals/{approval_id}/reject", "post"): "Reject a tool call",
    }
    start_op = paths["/api/runs"]["post"]
    variants = start_op["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    by_function = {tuple(v["properties"]["function"]["enum"]): v["properties"] for v in variants}
    assert set(by_function) == {("add", "kit-add"), ("hold", "kit-hold"), ("ask", "kit-ask")}
    data = by_function[("add", "kit-add")]["data"]
    assert data["required"] == ["lines"]
    assert data["properties"]["lines"]["items"]["properties"]["sku"]["type"] == "string"
    assert "$ref" not in json.dumps(start_op)
    assert by_function[("hold", "kit-hold")]["data"] == {"type": "object"}
    assert {"201", "200", "401", "403", "404", "422"} <= set(start_op["responses"])
    events_op = paths["/api/runs/{run_id}/events"]["get"]
    assert "text/event-stream" in events_op["responses"]["200"]["content"]
    wait = paths["/api/runs/{run_id}/result"]["get"]["parameters"]
    assert [p["name"] for p in wait] == ["run_id", "wait"]


def test_runs_router_needs_authorize(kit: Kit) -> None:
    with pytest.raises(stepline.ConfigError, match="allow_all"):
        stepline.fastapi.runs_router(kit.client, kit.exposed, authorize=None)  # type: ignore[arg-type]


# -- lifespan, get_client, serve(engine=) ---------------------------------------------------


def client_route(app: fastapi.FastAPI) -> None:
    @app.get("/whoami")
    async def whoami(client: stepline.fastapi.ClientDep) -> dict[str, str]:
        return {"app_id": client.app_id}


def test_lifespan_owns_the_client_and_an_embedded_engine(tmp_path: Path) -> None:
    client = stepline.Client("life", is_production=False, environ={})

    @client.function(id="twice", trigger=stepline.TriggerEvent(event="life/twice"))
    def twice(ctx: stepline.SyncContext) -> int:
        return ctx.step.run("double", lambda: 2 * int(ctx.event.data["n"]))

    lifespan = stepline.fastapi.lifespan(
        client, functions=[twice], engine="embedded", database=str(tmp_path / "l.db")
    )
    app = fastapi.FastAPI(lifespan=lifespan)
    client_route(app)

    @app.post("/double/{n}")
    async def double(n: int, client: stepline.fastapi.ClientDep) -> Any:
        handle = await client.start(twice, {"n": n})
        return await handle.result(timeout=20)

    for round_ in (1, 2):  # a second startup restarts the same engine
        with fastapi.testclient.TestClient(app, base_url="http://localhost") as http:
            engine = app.state.stepline_engine
            assert isinstance(engine, EmbeddedEngine)
            assert engine.running
            assert engine.database == str(tmp_path / "l.db")
            assert http.get("/whoami").json() == {"app_id": "life"}
            assert http.post(f"/double/{round_}").json() == 2 * round_
        assert not engine.running, "shutdown stops the engine"
        assert app.state.stepline_engine is engine


def test_lifespan_without_engine_and_its_errors() -> None:
    client = stepline.Client("life", is_production=False, environ={})
    app = fastapi.FastAPI(lifespan=stepline.fastapi.lifespan(client))
    client_route(app)
    with fastapi.testclient.TestClient(app, base_url="http://localhost") as http:
        assert http.get("/whoami").json() == {"app_id": "life"}
        assert not hasattr(app.state, "stepline_engine")
    with pytest.raises(stepline.ConfigError, match="engine='embedded'"):
        stepline.fastapi.lifespan(client, database="x.db")
    with pytest.raises(stepline.ConfigError, match="want 'embedded'"):
        stepline.fastapi.lifespan(client, engine="remote")  # type: ignore[arg-type]


def test_lifespan_with_your_own_engine(kit: Kit) -> None:
    app = fastapi.FastAPI(lifespan=stepline.fastapi.lifespan(kit.client, engine=kit.engine))
    kit.engine.stop()
    with fastapi.testclient.TestClient(app):
        assert app.state.stepline_engine is kit.engine
        assert kit.engine.running
        assert kit.client.start_sync(kit.add, {"x": 1}).result(timeout=20) == 2
    assert not kit.engine.running
    other = stepline.Client("other", is_production=False, environ={})
    with pytest.raises(stepline.ConfigError, match="another client"):
        stepline.fastapi.lifespan(other, engine=kit.engine)
    with pytest.raises(stepline.ConfigError, match="your own EmbeddedEngine"):
        stepline.fastapi.lifespan(kit.client, engine=kit.engine, poll_interval=1)


def test_get_client_without_lifespan_says_what_to_do() -> None:
    app = fastapi.FastAPI()
    client_route(app)
    with pytest.raises(stepline.ConfigError, match="lifespan"):
        fastapi.testclient.TestClient(app).get("/whoami")


def test_serve_with_an_embedded_engine_mounts_it_and_runs_it(kit: Kit) -> None:
    app = fastapi.FastAPI()
    client_route(app)
    stepline.fastapi.serve(app, kit.client, [kit.add, kit.hold, kit.hidden], engine=kit.engine)
    assert app.state.stepline_engine is kit.engine
    with fastapi.testclient.TestClient(app, base_url="http://localhost") as http:
        assert kit.engine.running, "the app's startup starts the engine"
        assert http.get("/whoami").json() == {"app_id": "kit"}  # serve stores the client too
        handle = kit.client.start_sync(kit.add, {"x": 9})
        assert handle.result(timeout=20) == 10
        runs = http.get("/stepline/v1/runs").json()["data"]
        assert [run["run_id"] for run in runs] == [handle.run_id]
        assert http.get("/stepline/health").status_code == 200
        assert (
            http.get("/stepline", follow_redirects=False).headers["location"].endswith("/stepline/")
        )
        assert http.get("/stepline/").headers["content-type"].startswith("text/html")
        assert http.get("/api/inngest").json()["function_count"] == 3
        assert "/stepline" not in app.openapi()["paths"]
    assert not kit.engine.running, "the app's shutdown stops the engine"


def test_serve_engine_embedded_makes_one_and_lifespan_reuses_it(tmp_path: Path) -> None:
    client = stepline.Client("once", is_production=False, environ={})
    fn = client.function(id="one", trigger=stepline.TriggerEvent(event="o/one"))(
        lambda ctx: ctx.step.run("s", lambda: 1)
    )
    app = fastapi.FastAPI(
        lifespan=stepline.fastapi.lifespan(client, functions=[fn], engine="embedded")
    )
    stepline.fastapi.serve(app, client, [fn], engine="embedded", database=str(tmp_path / "o.db"))
    engine = app.state.stepline_engine
    assert engine.database == str(tmp_path / "o.db")
    with fastapi.testclient.TestClient(app, base_url="http://localhost") as http:
        assert app.state.stepline_engine is engine, "lifespan reused serve's engine"
        assert engine.running
        assert client.start_sync(fn).result(timeout=20) == 1
        assert http.get("/stepline/health").status_code == 200
    assert not engine.running


def test_serve_engine_checks_at_serve_time(kit: Kit, tmp_path: Path) -> None:
    with pytest.raises(stepline.ConfigError, match="needs the FastAPI app"):
        stepline.fastapi.serve(fastapi.APIRouter(), kit.client, [kit.add], engine="embedded")
    with pytest.raises(stepline.ConfigError, match="want 'embedded'"):
        stepline.fastapi.serve(fastapi.FastAPI(), kit.client, [kit.add], engine="sqlite")  # type: ignore[arg-type]
    with pytest.raises(stepline.ConfigError, match="need engine='embedded'"):
        stepline.fastapi.serve(fastapi.FastAPI(), kit.client, [kit.add], database="x.db")
    with pytest.raises(stepline.ConfigError, match="your own EmbeddedEngine"):
        stepline.fastapi.serve(
            fastapi.FastAPI(), kit.client, [kit.add], engine=kit.engine, database="x.db"
        )


def test_serve_does_not_mount_a_production_engine(tmp_path: Path) -> None:
    client = stepline.Client(
        "prod", is_production=True, signing_key="signkey-prod-" + "00" * 32, environ={}
    )
    fn = client.function(id="one", trigger=stepline.TriggerEvent(event="o/one"))(lambda ctx: 1)
    app = fastapi.FastAPI()
    engine = EmbeddedEngine(client, [fn], database=str(tmp_path / "p.db"))
    stepline.fastapi.serve(app, client, [fn], engine=engine)
    with fastapi.testclient.TestClient(app, base_url="http://localhost") as http:
        assert engine.running
        assert http.get("/stepline/health").status_code == 404
    assert not engine.running


# -- the example app --------------------------------------------------------------------------


def load_example(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    monkeypatch.setenv("STEPLINE_DATABASE_URL", str(tmp_path / "orders.db"))
    monkeypatch.setenv("ORDERS_API_TOKEN", TOKEN)
    spec = importlib.util.spec_from_file_location(f"orders_{tmp_path.name}", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # pydantic resolves names through it
    spec.loader.exec_module(module)
    return module


ORDER = {
    "customer": "ada",
    "items": [{"sku": "book", "quantity": 2}, {"sku": "mug", "quantity": 1}],
}


def test_example_places_tracks_and_cancels_orders(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    example = load_example(monkeypatch, tmp_path)
    api = {"x-api-token": TOKEN}
    with fastapi.testclient.TestClient(example.app, base_url="http://localhost") as http:
        placed = http.post("/orders", json={**ORDER, "hold_seconds": 0})
        assert placed.status_code == 201, placed.text
        order_id = placed.json()["order_id"]
        done = http.get(f"/api/runs/{order_id}/result", params={"wait": "30"}, headers=api)
        assert done.json()["status"] == "Completed", done.text
        status = http.get(f"/orders/{order_id}").json()
        assert status["status"] == "Completed"
        assert [s["name"] for s in status["steps"]] == [
            "reserve-inventory",
            "charge-payment",
            "wait-for-warehouse",
            "ship-order",
        ]
        assert status["result"]["status"] == "shipped"
        assert status["result"]["cents"] == 2 * 1250 + 800

        held = http.post("/orders", json={**ORDER, "hold_seconds": 3600}).json()["order_id"]
        cancelled = http.post(f"/orders/{held}/cancel")
        assert cancelled.json() == {"order_id": held, "status": "Cancelled"}
        assert http.get(f"/orders/{held}").json()["status"] == "Cancelled"

        key = {"idempotency-key": "cart-42"}
        first = http.post("/orders", json={**ORDER, "hold_seconds": 3600}, headers=key).json()
        again = http.post("/orders", json={**ORDER, "hold_seconds": 3600}, headers=key).json()
        assert (again["order_id"], again["created"]) == (first["order_id"], False)

        assert http.get("/orders/01NOSUCHORDER").status_code == 404
        assert http.post("/orders/01NOSUCHORDER/cancel").status_code == 404
        assert http.post("/orders", json={"customer": "ada", "items": []}).status_code == 422

        kit_start = {"function": "process-order", "data": {**ORDER, "hold_seconds": 3600}}
        assert http.post("/api/runs", json=kit_start).status_code == 401
        assert (
            http.post("/api/runs", json=kit_start, headers={"x-api-token": "no"}).status_code == 403
        )
        started = http.post("/api/runs", json=kit_start, headers=api)
        assert started.status_code == 201, started.text
        kit_id = started.json()["run_id"]
        assert http.get(f"/orders/{kit_id}").json()["status"] in ("Queued", "Running")
        cancelled = http.post(f"/api/runs/{kit_id}/cancel", headers={**api, **CSRF})
        assert cancelled.json()["status"] == "Cancelled"
        bad = http.post("/api/runs", json={"function": "process-order", "data": {}}, headers=api)
        assert bad.status_code == 422
        assert {tuple(e["loc"]) for e in bad.json()["detail"]} == {("customer",), ("items",)}
        assert http.get("/stepline/health").status_code == 200


@pytest.mark.process
def test_example_runs_with_one_command(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "ORDERS_API_TOKEN": TOKEN}
    env["STEPLINE_DATABASE_URL"] = str(tmp_path / "orders.db")
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-W", "error", str(EXAMPLE)],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{base}/docs", proc, log=log, ready=answers)
        with httpx.Client(base_url=base, timeout=40) as http:
            order_id = http.post("/orders", json={**ORDER, "hold_seconds": 0}).json()["order_id"]
            done = http.get(
                f"/api/runs/{order_id}/result",
                params={"wait": "30"},
                headers={"x-api-token": TOKEN},
            )
            assert done.json()["output"]["status"] == "shipped", done.text
            held = http.post("/orders", json={**ORDER, "hold_seconds": 3600}).json()["order_id"]
            assert http.post(f"/orders/{held}/cancel").json()["status"] == "Cancelled"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = log.read_text()
    assert "Traceback" not in text, text
    # uvicorn shuts down cleanly, then re-raises SIGTERM so the exit status tells of it
    assert proc.returncode in (0, -signal.SIGTERM), text
    assert "Application shutdown complete." in text, text
