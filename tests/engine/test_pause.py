"""Pausing and resuming a function (run control): both stores.

While a function is paused its runs are created but none of its calls runs: a run
mid-way stops before its next step, timers keep going and park the call they make due,
cron ticks start waiting runs or none. Resuming releases the calls oldest first, with
flow control applied. Counters kept by the functions prove what ran.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx
import pytest

import stepline
from stepline.engine import Engine, ManualClock, RunStatus
from stepline.engine._http.api import build_app
from stepline.engine._store import RunFilter
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.databases import postgres_schema
from tests._support.engines import advance, finished, only_run, quiet, running
from tests._support.polling import await_until

FN = "t-steps"
_BASE = "http://127.0.0.1"  # a dev-mode engine answers loopback names only
_CSRF = {"x-stepline-csrf": "1"}  # the cross-site guard, for POSTs without a body


def _steps_app() -> tuple[stepline.Client, stepline.Function, list[str], asyncio.Event]:
    """A 3-step function with a concurrency limit of 1; ``order`` logs each step run."""
    client = dev_client()
    order: list[str] = []
    gate = asyncio.Event()
    gate.set()

    async def step(label: str) -> str:
        order.append(label)
        if label == "A:a":
            await gate.wait()
        return label

    @client.function(id="steps", trigger=stepline.TriggerEvent(event="t/steps"), concurrency=1)
    async def steps(ctx: stepline.Context) -> list[str]:
        who = dict(ctx.event.data)["who"]
        return [await ctx.step.run(name, step, f"{who}:{name}") for name in ("a", "b", "c")]

    return client, steps, order, gate


async def _runs(engine: Engine, function_id: str = FN) -> dict[str, Any]:
    runs = await engine.list_runs(RunFilter(function_id=function_id, limit=100))
    return {str(r.events[0]["data"].get("who")): r for r in runs}


def _rest(engine: Engine) -> httpx.AsyncClient:
    """The engine's REST API, in process."""
    transport = httpx.ASGITransport(app=build_app(engine))
    return httpx.AsyncClient(transport=transport, base_url=_BASE, headers=_CSRF)


async def _parked(engine: Engine, key: str) -> int:
    def count(tx: Any) -> int:
        return int(
            tx.execute("SELECT COUNT(*) FROM jobs WHERE parked_on = ?", (key,)).fetchone()[0]
        )

    return await engine.store.read(count)


@pytest.mark.slow
def test_pausing_holds_new_and_in_flight_runs_and_resuming_releases_them_in_order(
    db: str,
) -> None:
    client, steps, order, gate = _steps_app()

    async def scenario() -> None:
        clock = ManualClock()
        # one step per call: a call in flight runs the steps its SDK runs in it (with
        # checkpointing, up to its bounds); the run stops at its next call
        apps = [(client, [steps])]
        async with running(db, clock=clock, apps=apps, checkpointing=False) as engine:
            gate.clear()
            await engine.send({"name": "t/steps", "data": {"who": "A"}})
            for _ in range(500):  # A's first step is running (and blocked)
                if order:
                    break
                await asyncio.sleep(0.01)
            assert order == ["A:a"]
            state = await engine.pause(FN, reason="payments are down")
            assert state.reason == "payments are down"
            assert state.crons == "queue"
            gate.set()  # A's step a ends; A stops before step b
            clock.advance(1)
            await quiet(engine)
            for who in ("B", "C"):  # new runs are created, and wait
                clock.advance(1)
                await engine.send({"name": "t/steps", "data": {"who": who}})
            await advance(engine, clock, 3600)  # an hour: rechecks re-park, nothing runs
            assert order == ["A:a"]
            runs = await _runs(engine)
            assert sorted(runs) == ["A", "B", "C"]
            assert runs["A"].status is RunStatus.RUNNING
            assert runs["B"].status is RunStatus.QUEUED
            assert runs["C"].status is RunStatus.QUEUED
            assert all(r.waiting and r.waiting["reason"] == "paused" for r in runs.values())
            assert await _parked(engine, f"paused:{FN}") == 3
            assert (await engine.paused()).keys() == {FN}

            assert await engine.resume(FN) is True
            for who in ("A", "B", "C"):
                run = await finished(engine, runs[who].run_id, clock)
                assert run.status is RunStatus.COMPLETED
            # oldest first: A's step b (parked first), then B's and C's first steps
            assert order[:4] == ["A:a", "A:b", "B:a", "C:a"]
            assert sorted(order) == sorted(f"{w}:{s}" for w in "ABC" for s in "abc")
            assert await engine.paused() == {}
            assert await engine.resume(FN) is False  # not paused any more
            for run in runs.values():
                assert (await engine.get_run(run.run_id)).waiting is None

    arun(scenario())


@pytest.mark.slow
def test_a_sleeping_run_keeps_its_timer_and_parks_when_it_comes_due(db: str) -> None:
    client = dev_client()
    ran: list[str] = []

    @client.function(id="sleeper", trigger=stepline.TriggerEvent(event="t/sleep"))
    async def sleeper(ctx: stepline.Context) -> str:
        await ctx.step.run("before", ran.append, "before")
        await ctx.step.sleep("nap", dt.timedelta(hours=1))
        await ctx.step.run("after", ran.append, "after")
        return "done"

    async def scenario() -> None:
        clock = ManualClock()
        async with running(db, clock=clock, apps=[(client, [sleeper])]) as engine:
            await engine.send({"name": "t/sleep"})
            run_id = await only_run(engine, "t-sleeper")
            await advance(engine, clock, 60)
            assert ran == ["before"]
            await engine.pause("t-sleeper")
            await advance(engine, clock, 3 * 3600)  # the sleep ends while paused
            assert ran == ["before"]
            run = await engine.get_run(run_id)
            assert run.status is RunStatus.RUNNING
            assert run.waiting is not None
            assert run.waiting["reason"] == "paused"
            assert await _parked(engine, "paused:t-sleeper") == 1
            await engine.resume("t-sleeper")
            assert (await finished(engine, run_id, clock)).output == '"done"'
            assert ran == ["before", "after"]

    arun(scenario())


def test_cron_ticks_are_skipped_or_queued_per_the_pause(db: str) -> None:
    client = dev_client()
    ticks: list[str] = []

    @client.function(id="ticker", trigger=stepline.TriggerCron(cron="*/15 * * * *"))
    def ticker(ctx: stepline.SyncContext) -> str:
        ticks.append(str(ctx.event.ts))
        return "tick"

    async def count_runs(engine: Engine) -> int:
        return len(await engine.list_runs(RunFilter(function_id="t-ticker", limit=100)))

    async def scenario() -> None:
        clock = ManualClock(start=1_800_000_000.0)  # on a quarter hour
        async with running(db, clock=clock, apps=[(client, [ticker])]) as engine:
            await engine.pause("t-ticker", crons="skip")
            await advance(engine, clock, 15 * 60 + 1)
            assert await count_runs(engine) == 0  # the tick started nothing
            events = await engine.list_events()
            assert [e.name for e in events] == ["inngest/scheduled.timer"]
            links = await engine.store.read(lambda tx: tx.event_links(events[0].internal_id))
            assert [(link.run_id, link.reason) for link in links] == [(None, "paused")]

            state = await engine.pause("t-ticker", crons="queue")  # options change
            assert state.crons == "queue"
            await advance(engine, clock, 15 * 60)
            assert await count_runs(engine) == 1  # the tick's run is created, and waits
            assert ticks == []
            await engine.resume("t-ticker")
            run_id = (await engine.list_runs(RunFilter(function_id="t-ticker")))[0].run_id
            assert (await finished(engine, run_id, clock)).status is RunStatus.COMPLETED
            assert len(ticks) == 1
            await advance(engine, clock, 15 * 60)  # not paused: ticks run again
            assert len(ticks) == 2

    arun(scenario())


def test_other_functions_run_while_one_is_paused(db: str) -> None:
    client = dev_client()
    ran: list[str] = []

    @client.function(id="held", trigger=stepline.TriggerEvent(event="t/go"))
    def held(ctx: stepline.SyncContext) -> str:
        ran.append("held")
        return "held"

    @client.function(id="free", trigger=stepline.TriggerEvent(event="t/go"))
    def free(ctx: stepline.SyncContext) -> str:
        ran.append("free")
        return "free"

    async def scenario() -> None:
        clock = ManualClock()
        async with running(db, clock=clock, apps=[(client, [held, free])]) as engine:
            await engine.pause("t-held")
            await engine.send({"name": "t/go"})
            run_id = await only_run(engine, "t-free")
            assert (await finished(engine, run_id, clock)).status is RunStatus.COMPLETED
            await advance(engine, clock, 60)
            assert ran == ["free"]
            with pytest.raises(LookupError):
                await engine.pause("t-nope")
            with pytest.raises(LookupError):
                await engine.resume("t-nope")
            with pytest.raises(ValueError, match="crons"):
                await engine.pause("t-held", crons="never")  # type: ignore[arg-type]

    arun(scenario())


# -- REST ----------------------------------------------------------------------------------


def test_rest_pause_resume_and_the_function_views(db: str) -> None:
    client, steps, order, _gate = _steps_app()

    async def scenario() -> None:
        clock = ManualClock()
        apps = [(client, [steps])]
        async with running(db, clock=clock, apps=apps) as engine, _rest(engine) as http:
            listed = (await http.get("/v1/functions")).json()["data"]
            assert [f["paused"] for f in listed] == [None]
            paused = await http.post(
                f"/v1/functions/{FN}/pause", json={"crons": "skip", "reason": "incident 7"}
            )
            assert paused.status_code == 200, paused.text
            state = paused.json()["data"]
            assert state["function_id"] == FN
            assert state["paused"]["crons"] == "skip"
            assert state["paused"]["reason"] == "incident 7"
            assert state["paused"]["at"].endswith("Z")
            listed = (await http.get("/v1/functions")).json()["data"]
            assert listed[0]["paused"] == state["paused"]

            sent = await http.post("/v1/events", json={"name": "t/steps", "data": {"who": "R"}})
            assert sent.status_code == 200, sent.text
            await advance(engine, clock, 60)
            assert order == []

            empty = await http.post(f"/v1/functions/{FN}/pause")  # no body: crons=queue
            assert empty.json()["data"]["paused"]["crons"] == "queue"
            assert empty.json()["data"]["paused"]["at"] == state["paused"]["at"]

            resumed = await http.post(f"/v1/functions/{FN}/resume")
            assert resumed.status_code == 200, resumed.text
            done = {"function_id": FN, "paused": None, "resumed": True}
            assert resumed.json()["data"] == done
            run_id = (await _runs(engine))["R"].run_id
            assert (await finished(engine, run_id, clock)).status is RunStatus.COMPLETED
            listed = (await http.get("/v1/functions")).json()["data"]
            assert listed[0]["paused"] is None
            again = await http.post(f"/v1/functions/{FN}/resume")
            assert again.json()["data"]["resumed"] is False

            for path in ("/v1/functions/t-nope/pause", "/v1/functions/t-nope/resume"):
                missing = await http.post(path, json={})
                assert missing.status_code == 404, missing.text
                assert "t-nope" in missing.json()["error"]
            bodies: list[object] = [
                [],
                "skip",
                {"crons": "never"},
                {"crons": ["skip"]},
                {"reason": 7},
                {"reason": "x" * 1001},
                {"reason": "nul\u0000"},
                {"crons": "skip", "why": "?"},
            ]
            for body in bodies:
                bad = await http.post(f"/v1/functions/{FN}/pause", json=body)
                assert bad.status_code == 400, (body, bad.text)
            bad_json = await http.post(
                f"/v1/functions/{FN}/pause",
                content=b"{",
                headers={"content-type": "application/json"},
            )
            assert bad_json.status_code == 400
            assert await engine.paused() == {}  # no bad request paused it

    arun(scenario())


def test_a_durable_endpoint_of_a_paused_function_is_not_run_inline(db: str) -> None:
    client, steps, order, _gate = _steps_app()

    async def scenario() -> None:
        clock = ManualClock()
        apps = [(client, [steps])]
        async with running(db, clock=clock, apps=apps) as engine, _rest(engine) as http:
            await engine.pause(FN)
            body = {"data": {"who": "E"}}
            started = await http.post(f"/v1/functions/{FN}/inline", json=body)
            assert started.status_code in (200, 201), started.text
            data = started.json()["data"]
            assert data["inline"] is None  # the endpoint answers 202: no lease to run
            run_id = data["run"]["run_id"]
            assert data["run"]["status"] == "Queued"
            await advance(engine, clock, 60)
            assert order == []
            await engine.resume(FN)
            assert (await finished(engine, run_id, clock)).status is RunStatus.COMPLETED
            assert order == ["E:a", "E:b", "E:c"]  # the engine ran it, once resumed

    arun(scenario())


@pytest.mark.postgres
def test_two_nodes_on_one_postgres_share_the_pause() -> None:
    client = dev_client()
    ran: list[str] = []

    async def once() -> str:
        ran.append("x")
        return "ran"

    @client.function(id="shared", trigger=stepline.TriggerEvent(event="t/shared"))
    async def shared(ctx: stepline.Context) -> str:
        return await ctx.step.run("only", once)

    async def scenario(url: str) -> None:
        apps = [(client, [shared])]
        async with running(url, apps=apps) as one, running(url, apps=apps) as two:
            await one.pause("t-shared")
            assert (await two.paused()).keys() == {"t-shared"}
            await two.send([{"name": "t/shared", "data": {"n": n}} for n in range(4)])
            runs = await await_until(
                lambda: _listed(two, 4), timeout=10, message="the 4 runs", interval=0.02
            )

            async def all_parked() -> bool:
                return await _parked(one, "paused:t-shared") == 4

            # the workers lease a call before they park it: all 4 parked, so none ran
            await await_until(all_parked, timeout=10, message="the 4 calls to be parked")
            assert ran == []
            assert await two.resume("t-shared") is True
            for run in runs:
                assert (await one.wait_for_run(run.run_id, timeout=20)).output == '"ran"'
            assert ran == ["x"] * 4

    with postgres_schema() as url:
        arun(scenario(url))


async def _listed(engine: Engine, count: int) -> list[Any] | None:
    runs = await engine.list_runs(RunFilter(function_id="t-shared"))
    return runs if len(runs) == count else None
