"""``GET /v1/runs/{run_id}/export``: a run as one ``stepline.run/1`` journal, on both stores.

Real functions on an engine with a manual clock: an ended run's document parses with
``Journal.from_json`` and holds the memos the function received on its last call, the
steps in completion order, the output (the return value, or the error of a failed run)
and the trigger event; a run asleep exports live, its sleep pending. ``drop_output`` and
``redact_key`` take outputs and values out; a step name the run has none of is 400, an
unknown run the 404 of ``GET /v1/runs/{run_id}``; in production the route wants the
signing key (or a dashboard session).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
from starlette.testclient import TestClient

import stepline
from stepline._protocol import signing
from stepline._replay.journal import REDACTED, Journal
from stepline._status import RunStatus
from stepline.engine import Engine, EngineSettings, ManualClock
from stepline.engine._http.api import build_app
from stepline.engine._model import StepStatus
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.engines import finished, only_run, running
from tests._support.polling import await_until

SIGNING_KEY = "signkey-prod-" + "c3d4" * 16


def journey_app(client: stepline.Client, received: dict[str, Any]) -> list[stepline.Function]:
    @client.function(id="journey", trigger=stepline.TriggerEvent(event="t/journey"), retries=2)
    def journey(ctx: stepline.SyncContext) -> dict[str, Any]:
        fetched = ctx.step.run("fetch", lambda: {"user": "ada", "token": "s3cret"})
        ctx.step.sleep("nap", "1h")

        def charge() -> int:
            if ctx.attempt < 1:
                raise RuntimeError("card declined once")
            return 42

        charged = ctx.step.run("charge", charge)
        received.update(fetch=fetched, charge=charged)  # what the last call was given
        return {"charged": charged, "user": fetched["user"]}

    @client.function(id="doomed", trigger=stepline.TriggerEvent(event="t/doomed"), retries=0)
    def doomed(ctx: stepline.SyncContext) -> None:
        def never() -> None:
            raise ValueError("still broken")

        ctx.step.run("never", never)

    @client.function(id="dozer", trigger=stepline.TriggerEvent(event="t/dozer"))
    def dozer(ctx: stepline.SyncContext) -> str:
        ctx.step.run("before", lambda: "awake")
        ctx.step.sleep("long", "1d")
        return "rested"

    return [journey, doomed, dozer]


@contextlib.asynccontextmanager
async def exporting(db: str) -> AsyncIterator[tuple[Engine, ManualClock, httpx.AsyncClient, Any]]:
    client = dev_client()
    clock = ManualClock(start=time.time())  # the SDK times a sleep by the wall clock
    received: dict[str, Any] = {}
    apps = [(client, journey_app(client, received))]
    async with running(db, clock=clock, apps=apps, retry_scale=0.0) as engine:
        transport = httpx.ASGITransport(app=build_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            yield engine, clock, http, received


async def export(http: httpx.AsyncClient, run_id: str, **params: Any) -> Journal:
    answer = await http.get(f"/v1/runs/{run_id}/export", params=params)
    assert answer.status_code == 200, answer.text
    return Journal.from_json(answer.json())


def test_an_ended_run_exports_its_memos_stack_and_output(db: str) -> None:
    async def scenario() -> None:
        async with exporting(db) as (engine, clock, http, received):
            await engine.send({"name": "t/journey", "data": {"order": 7}})
            run = await finished(engine, await only_run(engine, "t-journey"), clock)
            assert run.status is RunStatus.COMPLETED
            answer = await http.get(f"/v1/runs/{run.run_id}/export")
            assert answer.status_code == 200, answer.text
            assert "content-disposition" not in answer.headers
            doc = Journal.from_json(answer.json())

            assert (doc.run_id, doc.function_id, doc.app_id) == (run.run_id, "t-journey", "t")
            assert doc.status == "Completed"
            assert doc.output == {"charged": 42, "user": "ada"}
            assert [e["name"] for e in doc.events] == ["t/journey"]
            assert doc.events[0]["data"] == {"order": 7}
            assert doc.stack == tuple(run.stack)
            assert [s.name for s in doc.steps] == ["fetch", "nap", "charge"]
            assert [s.id for s in doc.steps] == list(run.stack), "done steps in completion order"
            fetch, nap, charge = doc.steps
            assert fetch.memo == {"data": received["fetch"]}
            assert charge.memo == {"data": received["charge"]} == {"data": 42}
            assert (nap.op, nap.status, nap.memo) == ("Sleep", "Completed", None)
            assert (charge.attempts, fetch.attempts) == (2, 1), "charge failed once, retried"
            assert doc.memos() == {s.step_id: s.memo for s in await engine.run_steps(run.run_id)}
            assert doc.created_at is not None
            assert doc.ended_at is not None
            assert doc.exported_at is not None
            assert doc.started_at is not None
            assert charge.started_at is not None
            assert charge.ended_at is not None
            assert not doc.live
            assert doc.redacted == ()

            downloaded = await http.get(f"/v1/runs/{run.run_id}/export", params={"download": 1})
            assert downloaded.status_code == 200
            assert downloaded.headers["content-disposition"] == (
                f'attachment; filename="run-{run.run_id}.json"'
            )
            assert Journal.from_json(downloaded.json()).steps == doc.steps

            await engine.send({"name": "t/doomed"})
            failed = await finished(engine, await only_run(engine, "t-doomed"), clock)
            assert failed.status is RunStatus.FAILED
            broken = await export(http, failed.run_id)
            assert broken.status == "Failed"
            assert broken.output["message"] == "still broken"  # the error object
            [never] = broken.steps
            assert never.status == "Failed"
            assert never.memo["error"]["message"] == "still broken"

    arun(scenario())


def test_a_sleeping_run_exports_live_with_its_sleep_pending(db: str) -> None:
    async def scenario() -> None:
        async with exporting(db) as (engine, _clock, http, _received):
            await engine.send({"name": "t/dozer"})
            run_id = await only_run(engine, "t-dozer")

            async def asleep() -> bool:
                steps = await engine.run_steps(run_id)
                return any(s.status is StepStatus.SLEEPING for s in steps)

            await await_until(asleep, message="the run to sleep")
            doc = await export(http, run_id)
            assert doc.status == "Running"
            assert doc.live
            assert doc.output is None
            assert doc.ended_at is None
            before, long = doc.steps
            assert (before.name, before.status, before.memo) == (
                "before",
                "Completed",
                {"data": "awake"},
            )
            assert (long.name, long.op, long.status) == ("long", "Sleep", "Sleeping")
            assert long.memo is None
            assert doc.pending() == [long]
            assert doc.stack == (before.id,)
            assert "memo" not in (await http.get(f"/v1/runs/{run_id}/export")).json()["steps"][1]

    arun(scenario())


def test_outputs_dropped_and_keys_redacted_by_the_query(db: str) -> None:
    async def scenario() -> None:
        async with exporting(db) as (engine, clock, http, _received):
            await engine.send({"name": "t/journey", "data": {"card": {"token": "tok_1"}}})
            run = await finished(engine, await only_run(engine, "t-journey"), clock)

            dropped = await export(http, run.run_id, drop_output="fetch")
            fetch = dropped.steps[0]
            assert (fetch.name, fetch.dropped, fetch.memo) == ("fetch", True, None)
            assert dropped.steps[2].memo == {"data": 42}, "other steps keep their outputs"
            assert fetch.id not in dropped.memos()
            assert dropped.redacted == ("output:fetch",)

            both = await export(http, run.run_id, drop_output=["fetch", "charge"])
            assert [s.dropped for s in both.steps] == [True, False, True]

            masked = await export(http, run.run_id, redact_key=["TOKEN", "user"])
            assert masked.events[0]["data"] == {"card": {"token": REDACTED}}
            assert masked.steps[0].memo == {"data": {"user": REDACTED, "token": REDACTED}}
            assert masked.output == {"charged": 42, "user": REDACTED}
            assert masked.redacted == ("key:token", "key:user")

            combined = await export(http, run.run_id, drop_output="charge", redact_key="user")
            assert combined.steps[2].dropped
            assert combined.output["user"] == REDACTED

            unknown = await http.get(f"/v1/runs/{run.run_id}/export?drop_output=refund")
            assert unknown.status_code == 400
            error = unknown.json()["error"]
            assert "no step named refund" in error
            assert "charge, fetch, nap" in error, "the message names the run's steps"

            missing = await http.get("/v1/runs/01NOSUCHRUN0000000000000000/export")
            plain = await http.get("/v1/runs/01NOSUCHRUN0000000000000000")
            assert missing.status_code == plain.status_code == 404
            assert missing.json() == plain.json()

    arun(scenario())


@contextlib.contextmanager
def production(db: Path) -> Iterator[TestClient]:
    settings = EngineSettings(
        mode="start", database_url=str(db), signing_keys=(SIGNING_KEY,), poll_interval=0.05
    )
    with TestClient(build_app(Engine(settings))) as http:
        yield http


def test_in_production_the_export_wants_the_signing_key(tmp_path: Path) -> None:
    with production(tmp_path / "e.db") as http:
        path = "/v1/runs/01NOSUCHRUN0000000000000000/export"
        assert http.get(path).status_code == 401
        assert http.get(path, headers={"authorization": "Bearer wrong"}).status_code == 401
        keyed = http.get(path, headers={"authorization": signing.bearer_token(SIGNING_KEY)})
        assert keyed.status_code == 404, keyed.text  # let in: the run is unknown
