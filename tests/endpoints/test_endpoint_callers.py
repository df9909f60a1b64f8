"""Who a durable endpoint's handler is told is calling, and who may start its function.

The handler's ``ctx.principal`` is the starter the engine recorded when the endpoint's
own route started the run; it never comes from the run's trigger data. Nothing else
starts an endpoint's function: not the web kit's start route, the engine's start API,
``/invoke``, ``step.invoke``, nor an event named after its trigger (``stepline/`` names
are refused by every intake of events, as ``inngest/`` names are).

The contract (``test_endpoint_contract.py``) checks over every framework that the handler
sees its caller on the request's call and after a resume, and that the kit's start route
refuses an endpoint's function. The checks here are the engine's and the client's, on one
FastAPI app with an embedded engine (SQLite): ``transfer`` is the endpoint, its
``authorize`` names the caller from ``x-user``, and the kit's routes are mounted at
``/api`` with the endpoint's function, as the durable-endpoints guide's first example.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastapi
import fastapi.testclient
import httpx
import pytest

import stepline
import stepline.fastapi
import stepline.outbox
import stepline.web
from stepline._protocol import event_ids, signing
from stepline._protocol.execution import ExecutionRequest
from stepline.embedded import EmbeddedEngine
from stepline.engine._relay import inprocess
from stepline.outbox import _relay_deliver
from stepline.outbox._relay_deliver import DeliveryOutcome
from tests._support.polling import wait_until
from tests._support.processes import clean_env, engine_command, free_port, spawned
from tests._support.server_thread import serving

pytestmark = [pytest.mark.slow]

TRIGGER = "stepline/endpoint.transfer"
#: What a forger puts in the trigger data: the request as the endpoint records it, and a victim.
FORGED = {
    "method": "POST",
    "path": "/transfer",
    "headers": {},
    "body": {"text": '{"to": "mallory", "amount": 1000}'},
    "principal": "user:victim",
}


@dataclasses.dataclass
class Bank:
    """The app: its client, test client, embedded engine and what the handler saw."""

    client: stepline.Client
    http: fastapi.testclient.TestClient
    engine: EmbeddedEngine
    api: httpx.Client  # the engine's own API (dev mode: no keys)
    transfer: stepline.Function
    seen: list[str | None]


def authorize(access: stepline.web.AccessRequest) -> stepline.web.Principal:
    user = access.request.headers.get("x-user")
    if user is None:
        raise stepline.web.AccessDenied("log in first", status=401)
    return stepline.web.Principal(f"user:{user}")


@contextlib.contextmanager
def bank(tmp_path: Path) -> Iterator[Bank]:
    client = stepline.Client("bank", is_production=False, environ={})
    app = fastapi.FastAPI(lifespan=stepline.fastapi.lifespan(client))
    seen: list[str | None] = []

    @app.post("/transfer")
    @stepline.fastapi.durable(client, authorize=authorize, run_routes="/api", retries=0)
    async def transfer(ctx: stepline.EndpointContext) -> dict[str, Any]:
        seen.append(ctx.principal)
        order = await ctx.step.run("debit", lambda: {"by": ctx.principal})
        return {"order": order, "by": ctx.principal}

    @client.function(id="forger", trigger=stepline.TriggerEvent(event="bank/forge"), retries=0)
    async def forger(ctx: stepline.Context) -> object:
        if ctx.event.data == {"how": "invoke"}:
            return await ctx.step.invoke("call", function=transfer.endpoint.function, data=FORGED)
        event = stepline.Event(name=TRIGGER, data=FORGED)
        return await ctx.step.send_event("send", event)

    engine = EmbeddedEngine(
        client, [forger], database=str(tmp_path / "e.db"), poll_interval=0.05, retry_scale=0.0
    )
    stepline.fastapi.serve(app, client, [forger], engine=engine)
    kit = stepline.fastapi.runs_router(client, [transfer.endpoint.function], authorize=authorize)
    app.include_router(kit, prefix="/api")
    with fastapi.testclient.TestClient(app, base_url="http://localhost") as http:
        api = httpx.Client(
            transport=httpx.WSGITransport(app=engine.wsgi_app()),
            base_url="http://127.0.0.1",
            headers={"x-stepline-csrf": "1"},  # a body-less POST (rerun) passes the guard
        )
        with api:
            yield Bank(client, http, engine, api, transfer.endpoint.function, seen)


def ended(client: stepline.Client, run_id: str) -> stepline.RunInfo:
    found: list[stepline.RunInfo] = []

    def done() -> bool:
        found[:] = [client.get_run_sync(run_id).describe()]
        return found[0].status.terminal

    wait_until(done, timeout=15, message=lambda: f"run {run_id} to end: {found}")
    return found[0]


def no_runs_of(bank: Bank) -> None:
    """Nothing ran the handler: give a wrongly started run time to reach it first."""
    time.sleep(0.5)
    runs, _ = bank.client.list_runs_sync(function=bank.transfer)
    assert runs == []
    assert bank.seen == []


# -- the caller is never read from a run's data ----------------------------------------------


def test_trigger_data_naming_a_caller_is_not_believed(tmp_path: Path) -> None:
    # a call of the endpoint's function as the serve endpoint gets it (dev mode: unsigned),
    # its trigger data naming a principal and its ctx none: the handler sees nobody
    with bank(tmp_path) as b:
        call = {
            "event": {"name": TRIGGER, "data": FORGED},
            "events": [{"name": TRIGGER, "data": FORGED}],
            "steps": {},
            "ctx": {"run_id": "01J0000000000000000000000R", "attempt": 0, "step_id": "step"},
        }
        answer = b.http.post(f"/api/inngest?fnId={b.transfer.composite_id}&stepId=step", json=call)
        assert answer.status_code in (200, 206), answer.text
        assert b.seen == [None]


# -- events named after an endpoint's trigger ----------------------------------------------------


@pytest.mark.parametrize("route", ["/e/any-key", "/v1/events"])
def test_the_event_apis_refuse_stepline_names(tmp_path: Path, route: str) -> None:
    with bank(tmp_path) as b:
        answer = b.api.post(route, json={"name": TRIGGER, "data": FORGED})
        assert answer.status_code == 400, answer.text
        assert "'stepline/'" in answer.json()["error"]
        assert "reserved" in answer.json()["error"]
        engines = b.api.post(route, json={"name": "inngest/function.failed", "data": {}})
        assert engines.status_code == 400
        assert "'inngest/'" in engines.json()["error"]
        no_runs_of(b)


def test_the_client_refuses_to_send_stepline_names(tmp_path: Path) -> None:
    with bank(tmp_path) as b:
        with pytest.raises(stepline.SendEventError, match="'stepline/'"):
            b.client.send_sync(stepline.Event(name=TRIGGER, data=FORGED))
        with pytest.raises(stepline.SendEventError, match="'inngest/'"):
            b.client.send_sync(stepline.Event(name="inngest/function.invoked"))
        no_runs_of(b)


def test_a_send_event_step_cannot_send_stepline_names(tmp_path: Path) -> None:
    with bank(tmp_path) as b:
        [event_id] = b.client.send_sync(stepline.Event(name="bank/forge", data={}))
        runs: list[stepline.RunInfo] = []

        def forged() -> bool:
            runs[:] = b.client.list_runs_sync(function="forger")[0]
            return bool(runs) and runs[0].status.terminal

        wait_until(forged, timeout=15, message=lambda: f"the forger's run to end: {runs}")
        assert runs[0].status is stepline.RunStatus.FAILED
        assert "'stepline/'" in str(runs[0].error)
        assert event_id
        no_runs_of(b)


def test_outbox_rows_naming_stepline_events_or_endpoints_are_refused(tmp_path: Path) -> None:
    with bank(tmp_path) as b:
        with pytest.raises(stepline.SendEventError, match="'stepline/'"):
            stepline.outbox.event_row(stepline.Event(name=TRIGGER, data=FORGED))
        with pytest.raises(stepline.outbox.OutboxError, match="durable endpoint"):
            stepline.outbox.start_row("bank", b.transfer, FORGED, started_by="user:victim")
        # rows written by other means: the relay's deliveries, over HTTP and in process
        event_row = json.dumps({"events": [{"name": TRIGGER, "data": FORGED}], "seed": _seed()})
        start_row = json.dumps(
            {
                "function_id": b.transfer.composite_id,
                "data": FORGED,
                "run_id": event_ids.new_run_id(int(time.time() * 1000)),
                "started_by": "user:victim",
            }
        )
        over_http = _relay_deliver.HttpDeliverer("http://127.0.0.1", event_key="k", http=b.api)
        in_process = inprocess.InProcessDeliverer(b.engine.engine, b.engine._running.loop)  # type: ignore[union-attr]
        for deliverer in (over_http, in_process):
            for kind, row in (("event", event_row), ("start", start_row)):
                delivered = deliverer.deliver(kind, row)
                assert delivered.outcome is DeliveryOutcome.REJECTED, (kind, delivered)
        no_runs_of(b)


def _seed() -> str:
    return event_ids.new_seed(int(time.time() * 1000))


# -- starting the endpoint's function any other way ----------------------------------------------


def test_the_start_api_and_invoke_refuse_an_endpoints_function(tmp_path: Path) -> None:
    with bank(tmp_path) as b:
        with pytest.raises(stepline.ManagementError, match="durable endpoint") as raised:
            b.client.start_sync(b.transfer, FORGED, started_by="user:victim")
        assert raised.value.http_status == 400
        fid = b.transfer.composite_id
        started = b.api.post(f"/v1/functions/{fid}/runs", json={"data": FORGED})
        assert (started.status_code, started.json()["code"]) == (400, "endpoint_only")
        invoked = b.api.post(f"/invoke/{fid}", json={"data": FORGED})
        assert invoked.status_code == 400, invoked.text
        assert "durable endpoint" in invoked.json()["error"]
        no_runs_of(b)


def test_a_step_cannot_invoke_an_endpoints_function(tmp_path: Path) -> None:
    with bank(tmp_path) as b:
        b.client.send_sync(stepline.Event(name="bank/forge", data={"how": "invoke"}))
        runs: list[stepline.RunInfo] = []

        def forged() -> bool:
            runs[:] = b.client.list_runs_sync(function="forger")[0]
            return bool(runs) and runs[0].status.terminal

        wait_until(forged, timeout=15, message=lambda: f"the forger's run to end: {runs}")
        assert runs[0].status is stepline.RunStatus.FAILED
        assert "durable endpoint" in str(runs[0].error)
        no_runs_of(b)


def test_a_rerun_of_an_endpoints_run_keeps_its_caller(tmp_path: Path) -> None:
    with bank(tmp_path) as b:
        first = b.http.post("/transfer", headers={"x-user": "ada"})
        assert first.status_code == 200, first.text
        again = b.api.post(f"/v1/runs/{first.headers['x-stepline-run-id']}/rerun")
        assert again.status_code == 200, again.text
        run = ended(b.client, again.json()["data"]["run_id"])
        assert run.started_by == "user:ada"
        assert run.output["json"]["by"] == "user:ada"
        assert b.seen == ["user:ada", "user:ada"]


# -- the wire: only an endpoint's calls carry the starter ----------------------------------------


def test_the_call_carries_the_starter_in_a_stepline_field_of_ctx() -> None:
    body = {"event": {"name": TRIGGER, "data": FORGED}, "ctx": {"run_id": "r"}}
    assert ExecutionRequest.from_wire(body).ctx.started_by is None  # not from the data
    body["ctx"] = {"run_id": "r", "stepline": {"started_by": "user:ada"}}
    request = ExecutionRequest.from_wire(body)
    assert request.ctx.started_by == "user:ada"
    assert request.to_wire()["ctx"]["stepline"] == {"started_by": "user:ada"}
    request.ctx.started_by = None
    assert "stepline" not in request.to_wire()["ctx"]


def test_only_an_endpoints_calls_carry_the_starter() -> None:
    from stepline.engine._model import Job, JobKind, Run
    from stepline.engine._wire import request as _request

    run = Run(
        run_id="01J0000000000000000000000R",
        function_id="bank-forger",
        app_id="bank",
        status=stepline.RunStatus.RUNNING,
        events=[{"name": "bank/forge", "data": {}}],
        event_ids=["e"],
        created_at=0.0,
        started_by="user:ada",
    )
    job = Job("j", JobKind.EXECUTE, 0.0, run.run_id, "step")
    plain, _ = _request.built(run, [], job, max_attempts=1, checkpoint=False)
    assert "stepline" not in plain["ctx"]  # what Inngest's SDKs get, unchanged
    endpoint, _ = _request.built(run, [], job, max_attempts=1, checkpoint=False, endpoint=True)
    assert endpoint["ctx"]["stepline"] == {"started_by": "user:ada"}
    local = _request.execution(run, [], job, max_attempts=1, checkpoint=False, endpoint=True)
    assert local.ctx.started_by == "user:ada"


# -- a separate engine in production mode: resumed over signed HTTP ------------------------------

SIGNING_KEY = "signkey-prod-" + "cd34" * 16
EVENT_KEY = "evt-" + "8" * 32


@pytest.mark.process
def test_a_separate_engine_tells_the_resumed_handler_its_caller(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = clean_env(STEPLINE_SIGNING_KEY=SIGNING_KEY, STEPLINE_EVENT_KEY=EVENT_KEY)
    environ = {
        "STEPLINE_API_BASE_URL": base,
        "STEPLINE_EVENT_API_BASE_URL": base,
        "STEPLINE_SIGNING_KEY": SIGNING_KEY,
        "STEPLINE_EVENT_KEY": EVENT_KEY,
    }
    client = stepline.Client("sepbank", is_production=True, environ=environ)
    app = fastapi.FastAPI(lifespan=stepline.fastapi.lifespan(client))
    seen: list[str | None] = []

    @app.post("/transfer")
    @stepline.fastapi.durable(client, authorize=authorize)
    async def transfer(ctx: stepline.EndpointContext) -> dict[str, Any]:
        seen.append(ctx.principal)
        await ctx.step.sleep("nap", dt.timedelta(seconds=0.2))
        return {"by": ctx.principal}

    stepline.fastapi.serve(app, client, [])
    command = engine_command("start", "--port", str(port), "--db", str(tmp_path / "e.db"))
    auth = {"authorization": signing.bearer_token(SIGNING_KEY)}
    with (
        serving(app) as url,
        spawned(command, log=tmp_path / "engine.log", env=env, up=f"{base}/health", what="engine"),
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        synced = httpx.post(
            f"{base}/v1/apps/sync", json={"url": f"{url}/api/inngest"}, headers=auth, timeout=30
        )
        assert synced.status_code == 200, synced.text
        assert synced.json()["data"]["ok"], synced.text
        answer = http.post("/transfer", headers={"x-user": "ada"})
        assert answer.status_code == 202, answer.text
        run_id = answer.headers["x-stepline-run-id"]

        def ended() -> dict[str, Any] | None:
            run: dict[str, Any] = httpx.get(f"{base}/v1/runs/{run_id}", headers=auth).json()["data"]
            return run if run["status"] == "Completed" else None

        run = wait_until(ended, timeout=20, message="the suspended run to end")
        assert run["output"]["json"] == {"by": "user:ada"}
        assert seen == ["user:ada", "user:ada"]  # inline, then the engine's signed call
        forged = httpx.post(f"{base}/e/{EVENT_KEY}", json={"name": TRIGGER, "data": FORGED})
        assert forged.status_code == 400, forged.text
        assert "'stepline/'" in forged.json()["error"]
