"""The web-app kit under FastAPI: ``runs_router``, ``lifespan``, ``get_client``, ``serve(engine=)``.

Every route check runs twice: through FastAPI's ``TestClient`` and over real HTTP behind
uvicorn on 127.0.0.1 (a thread of this process). Runs execute on an ``EmbeddedEngine``
(SQLite in ``tmp_path``). The checks are plain functions so that ``test_asgi_kit`` runs
the same ones against the bare ASGI app. The example app (``examples/fastapi_orders``) is
tested in-process and as the one command its README gives.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
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

TOKEN = "s3cret"
AUTH = {"x-token": TOKEN}
#: What a front end sends on a body-less POST (cancel): a cross-site form cannot.
CSRF = {"x-stepline-csrf": "1"}
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fastapi_orders" / "app.py"


class AddInput(pydantic.BaseModel):
    x: int


@dataclasses.dataclass
class Kit:
    """A client, its functions and the engine running them (``hidden`` is never exposed)."""

    client: stepline.Client
    add: stepline.Function
    hold: stepline.Function
    hidden: stepline.Function
    engine: EmbeddedEngine
    seen: list[stepline.web.AccessRequest] = dataclasses.field(default_factory=list)

    @property
    def exposed(self) -> list[stepline.Function]:
        return [self.add, self.hold]


def make_kit(tmp_path: Path, app_id: str = "kit") -> Kit:
    client = stepline.Client(app_id, is_production=False, environ={})

    @client.function(id="add", trigger=stepline.TriggerEvent(event="kit/add"))
    async def add(ctx: stepline.Context) -> int:
        a = await ctx.step.run("a", lambda: int(ctx.event.data["x"]))
        return await ctx.step.run("b", lambda: a + 1)

    @client.function(id="hold", trigger=stepline.TriggerEvent(event="kit/hold"))
    async def hold(ctx: stepline.Context) -> str:
        await ctx.step.run("a", lambda: "ready")
        await ctx.step.sleep("hold", dt.timedelta(hours=1))
        return "released"

    @client.function(id="hidden", trigger=stepline.TriggerEvent(event="kit/hidden"))
    async def hidden(ctx: stepline.Context) -> str:
        await ctx.step.sleep("hold", dt.timedelta(hours=1))
        return "never shown"

    engine = EmbeddedEngine(
        client, [add, hold, hidden], database=str(tmp_path / "e.db"), poll_interval=0.05
    )
    return Kit(client, add, hold, hidden, engine)


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    made = make_kit(tmp_path)
    yield made
    made.engine.stop()


def token_of(headers: Any, kit: Kit, access: stepline.web.AccessRequest) -> bool:
    """The shared decision: 401 without a token, 403 (False) with a wrong one."""
    kit.seen.append(access)
    token = headers.get("x-token")
    if token is None:
        raise stepline.web.AccessDenied("missing x-token header", status=401)
    return bool(token == TOKEN)


def fastapi_app(kit: Kit, prefix: str = "/api") -> fastapi.FastAPI:
    async def authorize(access: stepline.web.AccessRequest) -> bool:  # async hooks work too
        return token_of(access.request.headers, kit, access)

    app = fastapi.FastAPI(lifespan=stepline.fastapi.lifespan(kit.client))
    router = stepline.fastapi.runs_router(
        kit.client, kit.exposed, authorize=authorize, inputs={kit.add: AddInput}, poll_interval=0.05
    )
    app.include_router(router, prefix=prefix)
    return app


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


# -- the checks, shared with test_asgi_kit --------------------------------------------------


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


def start(http: httpx.Client, prefix: str, function: str, data: Any, **more: Any) -> httpx.Response:
    headers = more.pop("headers", AUTH)
    body = {"function": function, "data": data, **more}
    return http.post(f"{prefix}/runs", json=body, headers=headers)


def check_start_events_result(http: httpx.Client, prefix: str, kit: Kit) -> None:
    reply = start(http, prefix, "add", {"x": 41})
    assert reply.status_code == 201, reply.text
    started = reply.json()
    run_id = started["run_id"]
    assert (started["function_id"], started["created"]) == ("kit-add", True)
    assert started["links"]["events"] == f"{prefix}/runs/{run_id}/events"
    with http.stream("GET", started["links"]["events"], headers=AUTH) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = read_events(stream.iter_lines())
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "status"
    assert kinds[-1] == "result"
    steps = [data for kind, data in events if kind == "step"]
    assert list(dict.fromkeys(step["name"] for step in steps)) == ["a", "b"]
    assert {step["name"]: step["output"] for step in steps if step["status"] == "Completed"} == {
        "a": 41,
        "b": 42,
    }
    assert kinds.index("step") < kinds.index("result")
    assert (events[-1][1]["status"], events[-1][1]["output"]) == ("Completed", 42)
    result = http.get(started["links"]["result"], params={"wait": "10"}, headers=AUTH)
    assert (result.status_code, result.json()["output"]) == (200, 42)
    status = http.get(started["links"]["self"], headers=AUTH)
    assert (status.status_code, status.json()["status"]) == (200, "Completed")
    assert [(a.action, a.function_id) for a in kit.seen] == [
        ("start", "kit-add"),
        ("events", "kit-add"),
        ("result", "kit-add"),
        ("status", "kit-add"),
    ]
    assert kit.seen[0].data == {"x": 41}
    assert {a.run_id for a in kit.seen[1:]} == {run_id}


def check_cancel_while_following(http: httpx.Client, prefix: str, kit: Kit) -> None:
    reply = start(http, prefix, "hold", {})
    assert reply.status_code == 201, reply.text
    run_id = reply.json()["run_id"]
    url = f"{prefix}/runs/{run_id}"
    with http.stream("GET", f"{url}/events", headers=AUTH) as stream:
        lines = stream.iter_lines()

        def step_a_done(kind: str, data: Any) -> bool:
            return kind == "step" and data["name"] == "a" and data["status"] == "Completed"

        before = read_events(lines, until=step_a_done)  # live progress: the run still holds
        assert step_a_done(*before[-1])
        cancelled = http.post(f"{url}/cancel", headers={**AUTH, **CSRF})
        assert (cancelled.status_code, cancelled.json()) == (
            200,
            {"run_id": run_id, "status": "Cancelled"},
        )
        after = read_events(lines)
    assert after[-1][0] == "result"
    assert after[-1][1]["status"] == "Cancelled"
    status = http.get(url, headers=AUTH).json()
    assert status["status"] == "Cancelled"
    result = http.get(f"{url}/result", headers=AUTH)
    assert (result.status_code, result.json()["status"]) == (200, "Cancelled")


def check_unknown_run(http: httpx.Client, prefix: str, kit: Kit) -> None:
    for method, path in [("GET", ""), ("POST", "/cancel"), ("GET", "/result"), ("GET", "/events")]:
        reply = http.request(method, f"{prefix}/runs/01NOSUCHRUN{path}", headers={**AUTH, **CSRF})
        assert reply.status_code == 404, (method, path)
        assert reply.json() == {"error": "run 01NOSUCHRUN not found"}


def check_authorize(http: httpx.Client, prefix: str, kit: Kit) -> None:
    missing = start(http, prefix, "add", {"x": 1}, headers={})
    assert (missing.status_code, missing.json()) == (401, {"error": "missing x-token header"})
    wrong = start(http, prefix, "add", {"x": 1}, headers={"x-token": "guess"})
    assert (wrong.status_code, wrong.json()) == (403, {"error": "forbidden"})
    assert kit.client.list_runs_sync(function=kit.add)[0] == [], "a refused start started a run"
    run_id = start(http, prefix, "hold", {}).json()["run_id"]
    for method, path in [("GET", ""), ("POST", "/cancel"), ("GET", "/result"), ("GET", "/events")]:
        url = f"{prefix}/runs/{run_id}{path}"
        assert http.request(method, url, headers=CSRF).status_code == 401, path
        # refused on a run route: the unknown run's 404, so refusals reveal no run ids
        refused = http.request(method, url, headers={"x-token": "guess", **CSRF})
        assert (refused.status_code, refused.json()) == (404, {"error": f"run {run_id} not found"})
    assert kit.client.get_run_sync(run_id).status() is not stepline.RunStatus.CANCELLED
    actions = {(a.action, a.run_id) for a in kit.seen if a.run_id}
    assert actions == {(name, run_id) for name in ("status", "cancel", "result", "events")}


def check_validation(http: httpx.Client, prefix: str, kit: Kit) -> None:
    invalid = start(http, prefix, "add", {"x": "forty"})
    assert invalid.status_code == 422
    body = invalid.json()
    assert body["error"] == "data does not match the function's input"
    [problem] = body["detail"]
    assert (problem["loc"], problem["type"]) == (["x"], "int_parsing")
    missing = start(http, prefix, "add", {})
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["type"] == "missing"
    json_type = {"content-type": "application/json"}
    broken = http.post(f"{prefix}/runs", content=b"{nope", headers={**AUTH, **json_type})
    assert broken.status_code == 400
    assert broken.json()["error"].startswith("body is not valid JSON")
    no_function = http.post(f"{prefix}/runs", json={"data": {}}, headers=AUTH)
    assert no_function.status_code == 400
    assert "function" in no_function.json()["error"]
    assert kit.client.list_runs_sync(function=kit.add)[0] == []


def check_not_exposed(http: httpx.Client, prefix: str, kit: Kit) -> None:
    refused = start(http, prefix, "hidden", {})
    assert (refused.status_code, refused.json()) == (
        404,
        {"error": "function 'hidden' cannot be started here"},
    )
    hidden = kit.client.start_sync(kit.hidden, {})
    for method, path in [("GET", ""), ("POST", "/cancel"), ("GET", "/result"), ("GET", "/events")]:
        reply = http.request(
            method, f"{prefix}/runs/{hidden.run_id}{path}", headers={**AUTH, **CSRF}
        )
        assert (reply.status_code, reply.json()) == (
            404,
            {"error": f"run {hidden.run_id} not found"},
        ), path
    assert hidden.status() is not stepline.RunStatus.CANCELLED
    # authorize decides a start before the function is looked up; on a run route it is
    # asked whether or not the run is shown here, and never told a hidden run's function
    seen = [(access.action, access.function_id) for access in kit.seen]
    assert seen == [
        ("start", "hidden"),
        *((a, None) for a in ("status", "cancel", "result", "events")),
    ]


def check_idempotency(http: httpx.Client, prefix: str, kit: Kit) -> None:
    first = start(http, prefix, "add", {"x": 1}, idempotency_key="order-7")
    again = start(http, prefix, "add", {"x": 2}, idempotency_key="order-7")
    other = start(http, prefix, "add", {"x": 3}, idempotency_key="order-8")
    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 201)
    assert again.json()["run_id"] == first.json()["run_id"]
    assert again.json()["created"] is False
    assert other.json()["run_id"] != first.json()["run_id"]
    result = http.get(f"{prefix}/runs/{first.json()['run_id']}/result?wait=10", headers=AUTH)
    assert result.json()["output"] == 2  # the first start's data: the second started nothing


CHECKS = {
    "start_events_result": check_start_events_result,
    "cancel_while_following": check_cancel_while_following,
    "unknown_run": check_unknown_run,
    "authorize": check_authorize,
    "validation": check_validation,
    "not_exposed": check_not_exposed,
    "idempotency": check_idempotency,
}


# -- runs_router ----------------------------------------------------------------------------


@pytest.mark.parametrize("check", sorted(CHECKS))
@pytest.mark.parametrize("server", SERVERS)
def test_runs_router(kit: Kit, server: str, check: str) -> None:
    with http_client(fastapi_app(kit), server) as http:
        CHECKS[check](http, "/api", kit)


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
    }
    start_op = paths["/api/runs"]["post"]
    variants = start_op["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    by_function = {tuple(v["properties"]["function"]["enum"]): v["properties"] for v in variants}
    assert set(by_function) == {("add", "kit-add"), ("hold", "kit-hold")}
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
