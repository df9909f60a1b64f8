"""Durable routes as bare ASGI apps: ``stepline.asgi.durable``.

The scenarios run on a Starlette app routing to the durable apps (``Route`` and
``Mount``) twice: through Starlette's ``TestClient`` and behind uvicorn in a process of
its own (``uvicorn --factory tests.endpoints.test_asgi_durable:app_from_env``), called
with httpx. The app runs an ``EmbeddedEngine`` on SQLite in ``tmp_path`` with the kit's
``runs_app`` at ``/api`` and the engine's API at ``/stepline``; each step appends a line
to a markers file, so a test sees how many times each step ran. Then the app alone (no
router), and a crash: the uvicorn process SIGKILLed mid-request, started again on the
same file.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import starlette.applications
import starlette.routing
import starlette.testclient

import stepline
import stepline.asgi
import stepline.web
from stepline.embedded import EmbeddedEngine
from tests._support.polling import wait_until
from tests._support.processes import answers, clean_env, free_port, spawn, stop, wait_until_up
from tests.endpoints import crash

ROOT = Path(__file__).resolve().parents[2]
WAIT = 30.0  # an upper bound: the tests end far sooner


# -- the app under test ------------------------------------------------------------------


def endpoints(client: stepline.Client, markers: Path) -> dict[str, stepline.asgi.DurableApp]:
    """``three`` (3 steps, async), ``nap`` (a sleep, sync), ``made`` (201, what it saw),
    ``small`` (``max_body=64``); Location points at the kit under ``/api``."""

    def mark(name: str) -> str:
        with markers.open("a") as out:
            out.write(name + "\n")
        return name

    @stepline.asgi.durable(client, run_routes="/api")
    async def three(ctx: stepline.EndpointContext) -> dict[str, Any]:
        a = await ctx.step.run("a", mark, "a")
        b = await ctx.step.run("b", mark, "b")

        def c() -> str:
            if os.environ.get("BLOCK") == "1":  # the crash test's first process
                mark("c-started")
                time.sleep(3600)
            return mark("c")

        oid = ctx.request.path_params.get("oid")
        return {"steps": [a, b, await ctx.step.run("c", c)], "oid": oid}

    @stepline.asgi.durable(client, run_routes="/api")
    def nap(ctx: stepline.SyncEndpointContext) -> stepline.EndpointResponse:
        first = ctx.step.run("first", mark, "first")
        ctx.step.sleep("nap", dt.timedelta(seconds=1))
        then = ctx.step.run("then", mark, "then")
        return stepline.EndpointResponse({"ran": [first, then]}, status=201, headers={"x-nap": "1"})

    @stepline.asgi.durable(client)
    def made(ctx: stepline.SyncEndpointContext) -> stepline.EndpointResponse:
        request = ctx.request
        seen = {"method": request.method, "path": request.path, "query": dict(request.query)}
        seen["params"] = dict(request.path_params)
        return stepline.EndpointResponse(seen, status=201, headers={"X-Made": "yes"})

    @stepline.asgi.durable(client, max_body=64)
    async def small(ctx: stepline.EndpointContext) -> int:
        return len(ctx.request.body)

    return {"three": three, "nap": nap, "made": made, "small": small}


def build(database: str, markers: Path) -> starlette.applications.Starlette:
    """``POST /three/{oid}``, ``POST /nap``, ``/made/{shop}/...`` (a ``Mount``, any method),
    ``POST /small``; the kit at ``/api``, the engine's API at ``/stepline``."""
    client = stepline.Client("asgi-durable", is_production=False, environ={})
    apps = endpoints(client, markers)
    engine = EmbeddedEngine(client, [], database=database, poll_interval=0.05, lease_seconds=2)
    functions = [app.endpoint.function for app in apps.values()]
    kit = stepline.asgi.runs_app(client, functions, authorize=stepline.web.allow_all)
    routes = [
        starlette.routing.Route("/three/{oid}", apps["three"], methods=["POST"]),
        starlette.routing.Route("/nap", apps["nap"], methods=["POST"]),
        starlette.routing.Mount("/made/{shop}", apps["made"]),
        starlette.routing.Route("/small", apps["small"], methods=["POST"]),
        starlette.routing.Mount("/api", kit),
        starlette.routing.Mount("/stepline", engine.asgi_app()),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(engine.stop)

    return starlette.applications.Starlette(routes=routes, lifespan=lifespan)


def app_from_env() -> starlette.applications.Starlette:
    """The uvicorn factory: ``build`` with ``DURABLE_DATABASE`` and ``DURABLE_MARKERS``."""
    return build(os.environ["DURABLE_DATABASE"], Path(os.environ["DURABLE_MARKERS"]))


# -- two ways in -------------------------------------------------------------------------


class Site:
    """The app and an httpx-like client; ``ran()`` lists the steps run so far."""

    def __init__(self, tmp_path: Path) -> None:
        self.markers = tmp_path / "markers"
        self.http: httpx.Client | starlette.testclient.TestClient

    def ran(self) -> list[str]:
        return self.markers.read_text().split() if self.markers.exists() else []

    def close(self) -> None:
        self.http.close()


class StarletteSite(Site):
    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        app = build(str(tmp_path / "e.db"), self.markers)
        self.http = starlette.testclient.TestClient(app, base_url="http://localhost")
        self.http.__enter__()  # lifespan: the engine stops at the exit

    def close(self) -> None:
        self.http.__exit__(None, None, None)


class UvicornSite(Site):
    """uvicorn in a process of its own, serving ``app_from_env``."""

    def __init__(self, tmp_path: Path, block: bool = False) -> None:
        super().__init__(tmp_path)
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.command = [sys.executable, "-m", "uvicorn", "--factory", "--host", "127.0.0.1"]
        self.command += ["--port", str(port), "--log-level", "warning"]
        self.command += ["tests.endpoints.test_asgi_durable:app_from_env"]
        self.database = str(tmp_path / "e.db")
        self.log = tmp_path / "app.log"
        self.http = httpx.Client(base_url=self.base, timeout=WAIT)
        self.proc = self.start(block=block, append=False)

    def start(self, *, block: bool, append: bool) -> Any:
        env = clean_env(
            BLOCK="1" if block else "0",
            DURABLE_DATABASE=self.database,
            DURABLE_MARKERS=str(self.markers),
        )
        proc = spawn(self.command, log=self.log, env=env, cwd=ROOT, append=append)
        try:  # the kit's route starts the embedded engine (it starts on first use)
            wait_until_up(f"{self.base}/api/runs/none", proc, log=self.log, ready=answers)
        except BaseException:
            stop(proc)
            self.http.close()
            raise
        return proc

    def close(self) -> None:
        super().close()
        stop(self.proc)


@pytest.fixture(params=["testclient", "uvicorn"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    made = StarletteSite(tmp_path) if request.param == "testclient" else UvicornSite(tmp_path)
    try:
        yield made
    finally:
        made.close()


def follow(site: Site, location: str) -> Any:
    """The kit's result route at ``location``, held until the run ends."""
    answer = site.http.get(location, params={"wait": "10"})
    assert answer.status_code == 200, answer.text
    return answer


# -- scenarios (each on both transports) -------------------------------------------------


@pytest.mark.process
def test_a_route_that_finishes_answers_inline(site: Site) -> None:
    answer = site.http.post("/three/42", json={"n": 1})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"steps": ["a", "b", "c"], "oid": "42"}
    assert answer.headers["content-type"] == "application/json"
    run_id = answer.headers["x-stepline-run-id"]
    assert site.ran() == ["a", "b", "c"]  # each step once
    run = site.http.get(f"/api/runs/{run_id}").json()
    assert run["status"] == "Completed"
    assert run["output"]["json"] == {"steps": ["a", "b", "c"], "oid": "42"}


@pytest.mark.process
def test_a_sleep_answers_202_and_the_run_ends_in_the_engine(site: Site) -> None:
    answer = site.http.post("/nap", json={})
    assert answer.status_code == 202, answer.text
    run_id = answer.headers["x-stepline-run-id"]
    assert answer.headers["location"] == f"/api/runs/{run_id}/result"
    assert answer.json()["links"]["events"] == f"/api/runs/{run_id}/events"
    assert site.ran() == ["first"]
    result = follow(site, answer.headers["location"]).json()
    assert result["status"] == "Completed"
    assert result["output"] == {
        "status": 201,
        "headers": {"x-nap": "1", "content-type": "application/json"},
        "json": {"ran": ["first", "then"]},
    }
    assert site.ran() == ["first", "then"]  # the recorded step did not run again


@pytest.mark.process
def test_a_retried_request_with_the_same_idempotency_key_gets_the_same_run(site: Site) -> None:
    key = {"idempotency-key": "order-7"}
    first = site.http.post("/nap", json={}, headers=key)
    assert first.status_code == 202, first.text
    again = site.http.post("/nap", json={}, headers=key)
    assert again.status_code == 202, again.text
    run_id = first.headers["x-stepline-run-id"]
    assert again.headers["x-stepline-run-id"] == run_id
    follow(site, first.headers["location"])
    ended = site.http.post("/nap", json={}, headers=key)  # the stored response, not a new run
    assert ended.status_code == 201, ended.text
    assert ended.headers["x-nap"] == "1"
    assert ended.headers["x-stepline-run-id"] == run_id
    assert ended.headers["idempotent-replayed"] == "true"
    assert ended.json() == {"ran": ["first", "then"]}
    assert site.ran() == ["first", "then"]
    other = site.http.post("/nap", json={}, headers={"idempotency-key": "order-8"})
    assert other.headers["x-stepline-run-id"] != run_id


@pytest.mark.process
def test_an_endpoint_response_under_a_mount_sets_status_and_headers(site: Site) -> None:
    got = site.http.get("/made/acme/orders/7", params={"color": "red"})
    assert got.status_code == 201, got.text
    assert got.headers["x-made"] == "yes"
    assert got.json() == {
        "method": "GET",
        "path": "/made/acme/orders/7",  # the full path, the mount's included
        "query": {"color": "red"},
        "params": {"shop": "acme"},  # the Mount's
    }
    posted = site.http.post("/made/a%20b/x", content=b"")
    assert posted.status_code == 201, posted.text
    assert posted.json()["params"] == {"shop": "a b"}
    assert posted.headers["x-stepline-run-id"] != got.headers["x-stepline-run-id"]
    assert site.http.get("/three/1").status_code == 405  # the Route's methods
    assert site.ran() == []


@pytest.mark.process
def test_a_body_past_max_body_is_413_and_starts_no_run(site: Site) -> None:
    assert site.http.post("/small", content=b"x" * 64).json() == 64
    refused = site.http.post("/small", content=b"x" * 65)
    assert refused.status_code == 413, refused.text
    assert "larger than 64 bytes" in refused.json()["error"]
    default = site.http.post("/three/1", content=b"x" * (1024 * 1024 + 1))
    assert default.status_code == 413, default.text
    assert site.ran() == []
    runs = site.http.get("/stepline/v1/runs").json()["data"]
    assert len(runs) == 1  # the 64-byte one only


# -- the app alone -----------------------------------------------------------------------


@pytest.fixture
def alone(tmp_path: Path) -> Iterator[tuple[dict[str, stepline.asgi.DurableApp], Site]]:
    client = stepline.Client("asgi-durable-alone", is_production=False, environ={})
    site = Site(tmp_path)
    apps = endpoints(client, site.markers)
    engine = EmbeddedEngine(
        client, [], database=str(tmp_path / "e.db"), poll_interval=0.05, lease_seconds=2
    )
    try:
        yield apps, site
    finally:
        engine.stop()


def test_the_app_alone_answers_at_any_path_with_no_path_params(
    alone: tuple[dict[str, stepline.asgi.DurableApp], Site],
) -> None:
    apps, site = alone
    with starlette.testclient.TestClient(apps["made"]) as http:  # lifespan answered too
        got = http.put("/any/where", params={"q": "1"}, content=b"{}")
        assert got.status_code == 201, got.text
        assert got.headers["x-made"] == "yes"
        seen = {"method": "PUT", "path": "/any/where", "query": {"q": "1"}, "params": {}}
        assert got.json() == seen
        refused = pytest.raises(ValueError, match="stepline serves http, not 'websocket'")
        with refused, http.websocket_connect("/ws"):
            pass
    with starlette.testclient.TestClient(apps["three"]) as http:
        answer = http.post("/", json={})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"steps": ["a", "b", "c"], "oid": None}
        assert site.ran() == ["a", "b", "c"]


@pytest.mark.slow
def test_the_app_alone_under_httpx_suspends_and_the_engine_finishes_the_run(
    alone: tuple[dict[str, stepline.asgi.DurableApp], Site],
) -> None:
    apps, site = alone
    nap = apps["nap"]

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=nap)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            first = await http.post("/nap", json={}, headers={"idempotency-key": "k"})
            assert first.status_code == 202, first.text
            handle = nap.endpoint.client.get_run(first.headers["x-stepline-run-id"])
            assert await handle.result(timeout=10) == {
                "status": 201,
                "headers": {"x-nap": "1", "content-type": "application/json"},
                "json": {"ran": ["first", "then"]},
            }
            return first, await http.post("/nap", json={}, headers={"idempotency-key": "k"})

    first, replayed = asyncio.run(scenario())
    assert replayed.status_code == 201, replayed.text
    assert replayed.headers["x-stepline-run-id"] == first.headers["x-stepline-run-id"]
    assert replayed.headers["idempotent-replayed"] == "true"
    assert site.ran() == ["first", "then"]


def test_the_decorator_keeps_the_endpoint() -> None:
    client = stepline.Client("asgi-durable", is_production=False, environ={})

    @stepline.asgi.durable(client, retries=2)
    def pay_order(ctx: stepline.SyncEndpointContext) -> str:
        return "paid"

    assert isinstance(pay_order, stepline.asgi.DurableApp)
    assert pay_order.endpoint.function.id == "pay-order"
    assert pay_order.endpoint.client is client


# -- a crash -----------------------------------------------------------------------------


@pytest.mark.process
def test_a_killed_app_process_is_finished_by_the_engine_without_rerunning_a_step(
    tmp_path: Path,
) -> None:
    """SIGKILL after steps a and b were recorded (c running): the restarted process's
    engine takes the call back when its lease lapses and finishes the run."""
    site = UvicornSite(tmp_path, block=True)
    try:
        # the request hangs in step c until the kill: sent from a thread never joined
        url = f"{site.base}/three/9"
        threading.Thread(target=crash.post_quietly, args=(url,), daemon=True).start()
        wait_until(lambda: "c-started" in site.ran(), timeout=WAIT, message="step c to start")
        site.proc.kill()
        site.proc.wait(10)
        assert site.ran() == ["a", "b", "c-started"]
        site.proc = site.start(block=False, append=True)

        def ended() -> dict[str, Any] | None:
            runs = site.http.get("/stepline/v1/runs").json()["data"]
            return runs[0] if runs and runs[0]["status"] == "Completed" else None

        run = wait_until(ended, timeout=WAIT, message=lambda: f"the run to end: {site.ran()}")
        assert run["output"]["json"] == {"steps": ["a", "b", "c"], "oid": "9"}
        assert site.ran() == ["a", "b", "c-started", "c"]  # a and b ran once
    finally:
        site.close()
