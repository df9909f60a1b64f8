"""What the web-app kit does only on Tornado: ``runs_handlers``' mounting, its XSRF check,
``serve(engine=...)``, ``ClientMixin`` and the orders example.

The routes' behaviour (through ``AsyncHTTPTestCase`` and a real ``HTTPServer``) is the
contract of ``test_kit_contract``. Here a real ``HTTPServer`` runs on 127.0.0.1 on a
thread of its own, called with httpx; functions run on an ``EmbeddedEngine`` over SQLite.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import tornado.httpserver
import tornado.testing
import tornado.web

import stepline
import stepline.tornado
import stepline.web
from stepline.embedded import EmbeddedEngine
from tests._support.polling import wait_until
from tests._support.processes import answers, free_port, wait_until_up

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "let-me-in"
WAIT = 30.0  # upper bound for anything to happen; tests end far sooner


# -- the app under test --------------------------------------------------------------------


@dataclass
class Kit:
    client: stepline.Client
    order: stepline.Function
    park: stepline.Function
    hidden: stepline.Function
    engine: EmbeddedEngine


def make_kit(database: Path) -> Kit:
    client = stepline.Client("tornado-kit", is_production=False, environ={})

    @client.function(id="order", trigger=stepline.TriggerEvent(event="kit/order"))
    def order(ctx: stepline.SyncContext) -> dict[str, Any]:
        data: Any = ctx.event.data
        sku = ctx.step.run("reserve", lambda: str(data["sku"]))
        total = ctx.step.run("charge", lambda: int(data["qty"]) * 5)
        return {"sku": sku, "total": total}

    @client.function(id="park", trigger=stepline.TriggerEvent(event="kit/park"))
    async def park(ctx: stepline.Context) -> str:
        await ctx.step.run("begin", lambda: "begun")
        await ctx.step.sleep("hold", dt.timedelta(hours=1))
        return "woke"

    @client.function(id="hidden", trigger=stepline.TriggerEvent(event="kit/hidden"))
    def hidden(ctx: stepline.SyncContext) -> str:
        return "secret"

    functions = [order, park, hidden]
    engine = EmbeddedEngine(client, functions, database=str(database), poll_interval=0.05)
    return Kit(client, order, park, hidden, engine)


async def authorize(access: stepline.web.AccessRequest) -> bool:
    """Async on purpose: a bearer token; no header is 401, a wrong one 403."""
    handler = access.request
    assert isinstance(handler, tornado.web.RequestHandler)
    header = handler.request.headers.get("Authorization")
    if header is None:
        raise stepline.web.AccessDenied("send Authorization: Bearer <token>", status=401)
    return header == f"Bearer {TOKEN}"


AUTH = {"Authorization": f"Bearer {TOKEN}"}


# -- a real server ------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class ServerHttp:
    """A real ``HTTPServer`` on 127.0.0.1 served by a thread of its own; httpx calls it."""

    def __init__(self, app: tornado.web.Application) -> None:
        sock, port = tornado.testing.bind_unused_port()
        self.base = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(base_url=self.base, timeout=WAIT)
        started = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping: asyncio.Event | None = None

        async def serve() -> None:
            server = tornado.httpserver.HTTPServer(app)
            server.add_sockets([sock])
            self.loop, self.stopping = asyncio.get_running_loop(), asyncio.Event()
            started.set()
            await self.stopping.wait()
            server.stop()
            await server.close_all_connections()

        self.thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
        self.thread.start()
        assert started.wait(WAIT)

    def close(self) -> None:
        self.http.close()
        assert self.loop is not None
        assert self.stopping is not None
        self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(WAIT)
        assert not self.thread.is_alive()

    def request(
        self, method: str, path: str, body: object = None, headers: dict[str, str] | None = None
    ) -> Reply:
        content = body if isinstance(body, bytes) else None
        payload = None if body is None or isinstance(body, bytes) else body
        reply = self.http.request(method, path, json=payload, content=content, headers=headers)
        return Reply(reply.status_code, dict(reply.headers), reply.content)


def parse_sse(raw: bytes) -> list[tuple[str, Any]]:
    events = []
    for block in raw.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    made = make_kit(tmp_path / "e.db")
    yield made
    made.engine.stop()


# -- Tornado specifics -------------------------------------------------------------------------


def test_events_stop_polling_when_the_reader_leaves(kit: Kit) -> None:
    app = tornado.web.Application()
    # keepalive far beyond the test: only on_connection_close can end the stream early
    rule, _approvals = stepline.tornado.runs_handlers(
        kit.client, [kit.park], authorize=stepline.web.allow_all, poll_interval=0.05, keepalive=600
    )
    app.add_handlers(r".*", [rule])
    routes: stepline.web.RunRoutes = rule.target_kwargs["routes"]
    stopped = threading.Event()
    chunks_async = routes.chunks_async

    async def watched(response: stepline.web.WebResponse) -> AsyncIterator[bytes]:
        try:
            async for chunk in chunks_async(response):
                yield chunk
        finally:
            stopped.set()

    routes.chunks_async = watched  # type: ignore[method-assign]
    handle = kit.client.start_sync(kit.park, {})
    wait_until(
        lambda: ("hold", "Sleeping") in {(s.name, s.status) for s in handle.steps()},
        timeout=WAIT,
        interval=0.05,
        message="the run to reach its sleep",
    )
    # the run is now quiet: no new event would make the server write, and fail, again
    server = ServerHttp(app)
    try:
        with server.http.stream("GET", f"/runs/{handle.run_id}/events") as reply:
            chunks = reply.iter_raw()  # held: dropping it would close the connection now
            seen = b""
            while b'"Sleeping"' not in seen:
                seen += next(chunks)
            assert not stopped.is_set()
        assert stopped.wait(10), "the server kept polling for a reader who had left"
    finally:
        server.close()


def test_xsrf_protected_app_checks_the_token_on_kit_posts(kit: Kit) -> None:
    rules = stepline.tornado.runs_handlers(kit.client, [kit.order], authorize=authorize)
    app = tornado.web.Application(rules, xsrf_cookies=True, cookie_secret="s")
    server = ServerHttp(app)
    try:
        body = {"function": "order", "data": {"sku": "a", "qty": 1}}
        refused = server.request("POST", "/runs", body, AUTH)
        assert refused.status == 403
        token = "2|00000000|" + "0" * 32 + "|1"
        token_headers = {**AUTH, "X-XSRFToken": token, "Cookie": f"_xsrf={token}"}
        accepted = server.request("POST", "/runs", body, token_headers)
        assert accepted.status == 201, accepted.body
        assert accepted.json()["links"]["self"].startswith("/runs/")
    finally:
        server.close()


def test_serve_with_embedded_engine_mounts_api_and_shares_the_client(tmp_path: Path) -> None:
    kit = make_kit(tmp_path / "e.db")

    class Orders(stepline.tornado.ClientMixin, tornado.web.RequestHandler):
        async def post(self) -> None:
            handle = await self.stepline_client.start("order", {"sku": "pen", "qty": 2})
            self.write({"run_id": handle.run_id, "output": await handle.result(timeout=WAIT)})

    app = tornado.web.Application([(r"/orders", Orders)])
    stepline.tornado.serve(app, kit.client, [kit.order, kit.park, kit.hidden], engine=kit.engine)
    assert app.settings["stepline_client"] is kit.client
    assert app.settings["stepline_engine"] is kit.engine
    server = ServerHttp(app)
    try:
        made = server.request("POST", "/orders", b"")
        assert made.status == 200, made.body
        assert made.json()["output"] == {"sku": "pen", "total": 10}
        run = server.request("GET", f"/stepline/v1/runs/{made.json()['run_id']}")
        assert run.status == 200
        assert run.json()["data"]["status"] == "Completed"
        moved = server.request("GET", "/stepline")
        assert (moved.status, moved.headers["location"]) == (302, "/stepline/")
        dashboard = server.request("GET", "/stepline/")
        assert dashboard.status == 200
        assert dashboard.headers["content-type"].startswith("text/html")
        asset = server.request("GET", "/stepline/dashboard/app.css")
        assert asset.status == 200
        again = server.request(
            "GET", "/stepline/dashboard/app.css", headers={"If-None-Match": asset.headers["etag"]}
        )
        assert (again.status, again.body) == (304, b"")
        # functions go to the engine in-process: no HTTP endpoint for them
        assert server.request("GET", "/api/inngest").status == 404
    finally:
        server.close()
    assert kit.engine.running
    asyncio.run(stepline.tornado.shutdown(app))
    assert not kit.engine.running
    assert "stepline_served" not in app.settings


def test_embedded_shorthand_and_production_client_keeps_api_private(tmp_path: Path) -> None:
    client = stepline.Client(
        "prod-kit", is_production=True, environ={}, signing_key="signkey-prod-0123456789abcdef"
    )

    @client.function(id="noop", trigger=stepline.TriggerEvent(event="kit/noop"))
    def noop(ctx: stepline.SyncContext) -> int:
        return 1

    app = tornado.web.Application()
    database = str(tmp_path / "short.db")
    stepline.tornado.serve(app, client, [noop], engine="embedded", database=database)
    engine = app.settings["stepline_engine"]
    assert isinstance(engine, EmbeddedEngine)
    assert engine.database == database
    server = ServerHttp(app)
    try:  # no /stepline: the API would be open to anyone
        assert server.request("GET", "/stepline/v1/runs").status == 404
        assert server.request("GET", "/api/inngest").status == 404
    finally:
        server.close()
    asyncio.run(stepline.tornado.shutdown(app))


def test_client_mixin_without_serve_says_what_to_do() -> None:
    class Page(stepline.tornado.ClientMixin, tornado.web.RequestHandler):
        def get(self) -> None:
            self.write({"app": self.stepline_client.app_id})

    app = tornado.web.Application([(r"/", Page)])
    server = ServerHttp(app)
    try:
        assert server.request("GET", "/").status == 500
    finally:
        server.close()
    mixin = stepline.tornado.ClientMixin()
    mixin.application = app
    with pytest.raises(stepline.ConfigError, match=r"stepline\.tornado\.serve"):
        mixin.stepline_client  # noqa: B018


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"prefix": "api"}, "must be '' or start with '/'"),
        ({"authorize": None}, "authorize"),
    ],
)
def test_runs_handlers_misconfiguration(kit: Kit, call: dict[str, Any], message: str) -> None:
    options: dict[str, Any] = {"authorize": stepline.web.allow_all, **call}
    with pytest.raises(stepline.ConfigError, match=message):
        stepline.tornado.runs_handlers(kit.client, [kit.order], **options)


def test_serve_rejects_a_bad_engine_option(kit: Kit) -> None:
    other = make_kit_client_only()
    app = tornado.web.Application()
    with pytest.raises(stepline.ConfigError, match="'embedded' or an EmbeddedEngine"):
        stepline.tornado.serve(app, kit.client, [kit.order], engine="sqlite")  # type: ignore[arg-type]
    with pytest.raises(stepline.ConfigError, match="another client"):
        stepline.tornado.serve(app, other, [], engine=kit.engine)
    with pytest.raises(stepline.ConfigError, match="database= goes with"):
        stepline.tornado.serve(app, kit.client, [kit.order], database="x.db")
    with pytest.raises(stepline.ConfigError, match="engine_path"):
        stepline.tornado.serve(app, kit.client, [kit.order], engine=kit.engine, engine_path="x")


def make_kit_client_only() -> stepline.Client:
    return stepline.Client("tornado-kit", is_production=False, environ={})


def test_public_names() -> None:
    assert set(stepline.tornado.__all__) == {
        "CLIENT_SETTING",
        "ENGINE_SETTING",
        "ClientMixin",
        "durable",
        "runs_handlers",
        "serve",
        "shutdown",
    }


# -- the example app, as its README runs it ------------------------------------------------------


@pytest.fixture
def orders_app(tmp_path: Path) -> Iterator[tuple[httpx.Client, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPLINE_", "INNGEST_"))}
    env.update({"PORT": str(port), "ORDERS_API_TOKEN": TOKEN})
    log = tmp_path / "app.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "tornado_orders" / "app.py")],
            cwd=tmp_path,  # its SQLite file goes to ./.stepline/ here
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=WAIT)
    try:
        up = f"http://127.0.0.1:{port}/"
        wait_until_up(up, proc, log=log, timeout=WAIT, ready=answers, what="the example")
        yield http, proc
    finally:
        http.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=WAIT)


def wait_for(http: httpx.Client, path: str, status: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        order: dict[str, Any] = http.get(path).json()
        return order if order["status"] == status else None

    found: dict[str, Any] = wait_until(
        reached, timeout=WAIT, interval=0.1, message=f"{path} to be {status}"
    )
    return found


@pytest.mark.process
def test_example_orders_app(
    orders_app: tuple[httpx.Client, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    http, proc = orders_app
    placed = http.post("/orders", json={"item": "teapot", "quantity": 2, "ship_after": 0})
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["id"]
    order = wait_for(http, f"/orders/{order_id}", "Completed")
    assert order["status"] == "Completed", order
    assert order["result"]["item"] == "teapot"
    assert order["result"]["total_cents"] == 2 * 1999
    assert (tmp_path / ".stepline" / "embedded.db").exists()

    same = http.post(
        "/orders", json={"item": "teapot", "quantity": 1}, headers={"Idempotency-Key": "k"}
    )
    again = http.post(
        "/orders", json={"item": "teapot", "quantity": 1}, headers={"Idempotency-Key": "k"}
    )
    assert (same.status_code, again.status_code) == (201, 200)
    assert same.json()["id"] == again.json()["id"]

    slow = http.post("/orders", json={"item": "sofa", "quantity": 1, "ship_after": 3600})
    slow_id = slow.json()["id"]
    cancelled = http.post(f"/orders/{slow_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "Cancelled"
    assert http.get(f"/orders/{slow_id}").json()["status"] == "Cancelled"

    invalid = http.post("/orders", json={"item": "teapot", "quantity": 0})
    assert invalid.status_code == 422
    assert invalid.json()["detail"][0]["loc"] == ["quantity"]
    assert http.get("/orders/nope").status_code == 404
    assert http.post("/orders/nope/cancel").status_code == 404

    # the kit under /api/runs, behind the app's bearer token
    body = {"function": "process-order", "data": {"item": "mug", "quantity": 3}}
    assert http.post("/api/runs", json=body).status_code == 401
    started = http.post("/api/runs", json=body, headers=AUTH)
    assert started.status_code == 201, started.text
    with http.stream("GET", started.json()["links"]["events"], headers=AUTH) as stream:
        events = parse_sse(b"".join(stream.iter_raw()))
    assert events[-1][0] == "result"
    assert events[-1][1]["output"]["total_cents"] == 3 * 899
    assert {data["name"] for kind, data in events if kind == "step"} >= {"reserve-stock"}

    # the embedded engine's API and dashboard
    assert http.get("/stepline/").status_code == 200
    runs = http.get("/stepline/v1/runs")
    assert runs.status_code == 200
    assert len(runs.json()["data"]) >= 4

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=WAIT) == 0, (tmp_path / "app.log").read_text()
    assert "Traceback" not in (tmp_path / "app.log").read_text()
