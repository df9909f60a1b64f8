"""Durable routes on Tornado: ``stepline.tornado.durable``.

Each scenario runs twice: through ``tornado.testing.AsyncHTTPTestCase`` (its IOLoop,
server and client) and behind a Tornado ``HTTPServer`` in a process of its own (this
module run as ``python -m tests.endpoints.test_tornado_durable PORT DATABASE MARKERS``),
called with httpx. The app runs an ``EmbeddedEngine`` on SQLite in ``tmp_path`` with the
kit's run routes at ``/api`` and the engine's API at ``/stepline``; each step appends a
line to a markers file, so a test sees how many times each step ran. The crash test
SIGKILLs that process mid-request and starts it again on the same file.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
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
from tests._support.processes import answers, clean_env, free_port, spawn, stop, wait_until_up
from tests.endpoints import crash

ROOT = Path(__file__).resolve().parents[2]
WAIT = 30.0  # an upper bound: the tests end far sooner


# -- the app under test ------------------------------------------------------------------


def build(database: str, markers: Path, *, xsrf: bool = False) -> tornado.web.Application:
    """Durable routes ``/three/{oid}`` (3 steps), ``/nap`` (a sleep), ``/made/{0}/{1}``
    (201, GET or POST), ``/small`` (``max_body=64``); the kit at ``/api/runs``."""
    client = stepline.Client("tornado-durable", is_production=False, environ={})

    def mark(name: str) -> str:
        with markers.open("a") as out:
            out.write(name + "\n")
        return name

    @stepline.tornado.durable(client, run_routes="/api")
    async def three(ctx: stepline.EndpointContext) -> dict[str, Any]:
        a = await ctx.step.run("a", mark, "a")
        b = await ctx.step.run("b", mark, "b")

        def c() -> str:
            if os.environ.get("BLOCK") == "1":  # the crash test's first process
                mark("c-started")
                time.sleep(3600)
            return mark("c")

        return {"steps": [a, b, await ctx.step.run("c", c)], "oid": ctx.request.path_params["oid"]}

    @stepline.tornado.durable(client, run_routes="/api")
    def nap(ctx: stepline.SyncEndpointContext) -> stepline.EndpointResponse:
        first = ctx.step.run("first", mark, "first")
        ctx.step.sleep("nap", dt.timedelta(seconds=1))
        then = ctx.step.run("then", mark, "then")
        return stepline.EndpointResponse({"ran": [first, then]}, status=201, headers={"x-nap": "1"})

    @stepline.tornado.durable(client, methods=("GET", "post"))
    def made(ctx: stepline.SyncEndpointContext) -> stepline.EndpointResponse:
        request = ctx.request
        seen = {"method": request.method, "path": request.path, "query": dict(request.query)}
        seen["params"] = dict(request.path_params)
        return stepline.EndpointResponse(seen, status=201, headers={"X-Made": "yes"})

    @stepline.tornado.durable(client, max_body=64)
    async def small(ctx: stepline.EndpointContext) -> int:
        return len(ctx.request.body)

    rules: list[Any] = [(r"/three/(?P<oid>[^/]+)", three), (r"/nap", nap), (r"/small", small)]
    rules.append((r"/made/([^/]+)/([^/]+)", made))  # positional groups
    app = tornado.web.Application(rules, xsrf_cookies=xsrf)
    engine = EmbeddedEngine(client, [], database=database, poll_interval=0.05, lease_seconds=2)
    stepline.tornado.serve(app, client, [], engine=engine)
    functions = [view.endpoint.function for view in (three, nap, made, small)]
    kit = stepline.tornado.runs_handlers(
        client, functions, authorize=stepline.web.allow_all, prefix="/api"
    )
    app.add_handlers(r".*", kit)
    return app


def main(port: int, database: str, markers: Path) -> None:
    """Serve ``build(...)`` on 127.0.0.1:``port`` until killed."""

    async def serve() -> None:
        server = tornado.httpserver.HTTPServer(build(database, markers))
        server.listen(port, "127.0.0.1")
        await asyncio.Event().wait()

    asyncio.run(serve())


# -- two ways in -------------------------------------------------------------------------


Headers = dict[str, str] | None


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Site:
    """The app and a way in; ``markers`` lists the steps run so far."""

    markers: Path

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: Headers = None
    ) -> Reply:
        raise NotImplementedError

    def ran(self) -> list[str]:
        return self.markers.read_text().split() if self.markers.exists() else []

    def close(self) -> None:
        raise NotImplementedError


class _Case(tornado.testing.AsyncHTTPTestCase):
    """``AsyncHTTPTestCase`` driven by a fixture (set up and torn down by hand)."""

    __test__ = False

    def __init__(self, app: tornado.web.Application) -> None:
        super().__init__("noop")
        self.app = app

    def noop(self) -> None:
        pass

    def get_app(self) -> tornado.web.Application:
        return self.app


class CaseSite(Site):
    def __init__(self, tmp_path: Path, **options: Any) -> None:
        self.markers = tmp_path / "markers"
        self.app = build(str(tmp_path / "e.db"), self.markers, **options)
        self.case = _Case(self.app)
        self.case.setUp()

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: Headers = None
    ) -> Reply:
        if body is None and method in ("POST", "PUT", "PATCH"):
            body = b""
        answer = self.case.fetch(
            path, method=method, body=body, headers=headers, follow_redirects=False
        )
        return Reply(answer.code, {k.lower(): v for k, v in answer.headers.get_all()}, answer.body)

    def close(self) -> None:
        self.case.tearDown()
        self.app.settings["stepline_engine"].stop()


class ProcessSite(Site):
    """A Tornado ``HTTPServer`` in a process of its own."""

    def __init__(self, tmp_path: Path, block: bool = False) -> None:
        self.markers = tmp_path / "markers"
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.command = [sys.executable, "-m", "tests.endpoints.test_tornado_durable", str(port)]
        self.command += [str(tmp_path / "e.db"), str(self.markers)]
        self.log = tmp_path / "app.log"
        self.http = httpx.Client(base_url=self.base, timeout=WAIT)
        self.proc = self.start(block=block, append=False)

    def start(self, *, block: bool, append: bool) -> Any:
        env = clean_env(BLOCK="1" if block else "0")
        proc = spawn(self.command, log=self.log, env=env, cwd=ROOT, append=append)
        try:  # the kit's route starts the embedded engine (it starts on first use)
            wait_until_up(f"{self.base}/api/runs/none", proc, log=self.log, ready=answers)
        except BaseException:
            stop(proc)
            self.http.close()
            raise
        return proc

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: Headers = None
    ) -> Reply:
        answer = self.http.request(method, path, content=body, headers=headers)
        return Reply(answer.status_code, dict(answer.headers), answer.content)

    def close(self) -> None:
        self.http.close()
        stop(self.proc)


@pytest.fixture(params=["tornado.testing", "process"])
def site(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Site]:
    monkeypatch.setenv("ASYNC_TEST_TIMEOUT", str(WAIT))  # per fetch; the default is 5 s
    made: Site = CaseSite(tmp_path) if request.param == "tornado.testing" else ProcessSite(tmp_path)
    try:
        yield made
    finally:
        made.close()


JSON = {"Content-Type": "application/json"}


def follow(site: Site, location: str) -> Reply:
    """The kit's result route at ``location``, held until the run ends."""
    answer = site.request("GET", f"{location}?wait=10")
    assert answer.status == 200, answer.body
    return answer


# -- scenarios (each on both transports) -------------------------------------------------


@pytest.mark.process
def test_a_route_that_finishes_answers_inline(site: Site) -> None:
    answer = site.request("POST", "/three/42", b'{"n": 1}', JSON)
    assert answer.status == 200, answer.body
    assert answer.json() == {"steps": ["a", "b", "c"], "oid": "42"}
    assert answer.headers["content-type"] == "application/json"
    run_id = answer.headers["x-stepline-run-id"]
    assert site.ran() == ["a", "b", "c"]  # each step once
    run = site.request("GET", f"/api/runs/{run_id}").json()
    assert run["status"] == "Completed"
    assert run["output"]["json"] == {"steps": ["a", "b", "c"], "oid": "42"}


@pytest.mark.process
def test_a_sleep_answers_202_and_the_run_ends_in_the_engine(site: Site) -> None:
    answer = site.request("POST", "/nap", b"{}", JSON)
    assert answer.status == 202, answer.body
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
    key = {**JSON, "Idempotency-Key": "order-7"}
    first = site.request("POST", "/nap", b"{}", key)
    assert first.status == 202, first.body
    again = site.request("POST", "/nap", b"{}", key)
    assert again.status == 202, again.body
    run_id = first.headers["x-stepline-run-id"]
    assert again.headers["x-stepline-run-id"] == run_id
    follow(site, first.headers["location"])
    ended = site.request("POST", "/nap", b"{}", key)  # the stored response, not a new run
    assert ended.status == 201, ended.body
    assert ended.headers["x-nap"] == "1"
    assert ended.headers["x-stepline-run-id"] == run_id
    assert ended.headers["idempotent-replayed"] == "true"
    assert ended.json() == {"ran": ["first", "then"]}
    assert site.ran() == ["first", "then"]
    other = site.request("POST", "/nap", b"{}", {**JSON, "Idempotency-Key": "order-8"})
    assert other.headers["x-stepline-run-id"] != run_id


@pytest.mark.process
def test_an_endpoint_response_sets_status_and_headers_and_positional_groups(site: Site) -> None:
    got = site.request("GET", "/made/acme/7?color=red")
    assert got.status == 201, got.body
    assert got.headers["x-made"] == "yes"
    assert got.json() == {
        "method": "GET",
        "path": "/made/acme/7",
        "query": {"color": "red"},
        "params": {"0": "acme", "1": "7"},  # positional groups, by index
    }
    posted = site.request("POST", "/made/a%20b/8", b"")
    assert posted.status == 201, posted.body
    assert posted.json()["params"] == {"0": "a b", "1": "8"}  # decoded as Tornado does
    assert posted.headers["x-stepline-run-id"] != got.headers["x-stepline-run-id"]
    # methods not listed: 405 once the body is read (the connection stays usable), no run
    put = site.request("PUT", "/made/a/b", b"{}", JSON)
    assert (put.status, put.headers["allow"]) == (405, "GET, POST"), put.body
    assert put.json() == {"error": "method PUT not allowed"}
    assert site.request("GET", "/three/1").headers["allow"] == "POST"
    assert site.request("DELETE", "/three/1").status == 405
    assert site.ran() == []
    runs = site.request("GET", "/stepline/v1/runs").json()["data"]
    assert len(runs) == 2


@pytest.mark.process
def test_a_body_past_max_body_is_413_and_starts_no_run(site: Site) -> None:
    assert site.request("POST", "/small", b"x" * 64).json() == 64
    refused = site.request("POST", "/small", b"x" * 65)
    assert refused.status == 413, refused.body
    assert "larger than 64 bytes" in refused.json()["error"]
    default = site.request("POST", "/three/1", b"x" * (1024 * 1024 + 1))
    assert default.status == 413, default.body
    assert site.ran() == []
    runs = site.request("GET", "/stepline/v1/runs").json()["data"]
    assert len(runs) == 1  # the 64-byte one only


# -- what only Tornado has --------------------------------------------------------------


def test_an_xsrf_protected_app_checks_the_token(tmp_path: Path) -> None:
    site = CaseSite(tmp_path, xsrf=True)
    try:
        refused = site.request("POST", "/three/1", b"{}", JSON)
        assert refused.status == 403
        assert site.request("GET", "/stepline/v1/runs").json()["data"] == []
        token = {"Cookie": "_xsrf=tok", "X-XSRFToken": "tok", **JSON}
        assert site.request("POST", "/three/1", b"{}", token).status == 200
    finally:
        site.close()


def test_the_decorator_makes_a_request_handler_with_the_endpoint(tmp_path: Path) -> None:
    client = stepline.Client("tornado-durable", is_production=False, environ={})

    @stepline.tornado.durable(client, retries=2)
    def pay_order(ctx: stepline.SyncEndpointContext) -> str:
        """Pay."""
        return "paid"

    assert issubclass(pay_order, tornado.web.RequestHandler)
    assert pay_order.__name__ == "pay_order"
    assert pay_order.__doc__ == "Pay."
    assert pay_order.allowed == ("POST",)
    assert pay_order.endpoint.function.id == "pay-order"
    with pytest.raises(stepline.ConfigError, match="methods must be some of"):
        stepline.tornado.durable(client, methods=("FETCH",))
    with pytest.raises(stepline.ConfigError, match="methods must be some of"):
        stepline.tornado.durable(client, methods=())


@pytest.mark.process
def test_a_killed_app_process_is_finished_by_the_engine_without_rerunning_a_step(
    tmp_path: Path,
) -> None:
    """SIGKILL after steps a and b were recorded (c running): the restarted process's
    engine takes the call back when its lease lapses and finishes the run."""
    site = ProcessSite(tmp_path, block=True)
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
            runs = site.request("GET", "/stepline/v1/runs").json()["data"]
            return runs[0] if runs and runs[0]["status"] == "Completed" else None

        run = wait_until(ended, timeout=WAIT, message=lambda: f"the run to end: {site.ran()}")
        assert run["output"]["json"] == {"steps": ["a", "b", "c"], "oid": "9"}
        assert site.ran() == ["a", "b", "c-started", "c"]  # a and b ran once
    finally:
        site.close()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
