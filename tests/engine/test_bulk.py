"""Bulk cancel and bulk replay through REST, on both stores.

The engine runs in-process functions; runs are seeded straight into the store (queued,
their first call an hour away) so thousands exist in a second or two, plus a few real
runs asleep in a step. Each action is followed through ``GET /v1/bulk/{id}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest

import stepline
from stepline._status import RunStatus
from stepline.engine import Engine
from stepline.engine._events import internal
from stepline.engine._http.api import build_app
from stepline.engine._runs.starts import start_run
from stepline.engine._store import RunFilter, Tx
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.engines import finished, running
from tests._support.polling import await_until

HOUR = 3600.0


def app() -> tuple[stepline.Client, list[stepline.Function]]:
    """``t-target`` and ``t-other`` sleep an hour; ``t-flaky`` fails while ``FLAKY`` says so."""
    client = dev_client()

    @client.function(id="target", trigger=stepline.TriggerEvent(event="bulk/go"))
    async def target(ctx: stepline.Context) -> str:
        await ctx.step.sleep("nap", dt.timedelta(hours=1))
        return "woke"

    @client.function(id="other", trigger=stepline.TriggerEvent(event="bulk/other"))
    async def other(ctx: stepline.Context) -> str:
        await ctx.step.sleep("nap", dt.timedelta(hours=1))
        return "woke"

    @client.function(id="flaky", retries=0, trigger=stepline.TriggerEvent(event="bulk/flaky"))
    async def flaky(ctx: stepline.Context) -> str:
        if FLAKY["fail"]:
            raise ValueError("down")
        return "fine"

    return client, [target, other, flaky]


FLAKY = {"fail": True}


@contextlib.asynccontextmanager
async def api(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    """REST on the running engine, as a non-browser caller."""
    transport = httpx.ASGITransport(app=build_app(engine))
    headers = {"x-stepline-csrf": "1"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://127.0.0.1:8288", headers=headers, timeout=30
    ) as client:
        yield client


async def seed(engine: Engine, function_id: str, datas: list[Mapping[str, Any]]) -> list[str]:
    """Runs of a function, queued with their first call an hour away; their ids."""
    fn = engine.registry.get(function_id)
    assert fn is not None
    name = {"t-target": "bulk/go", "t-other": "bulk/other"}[function_id]
    ids: list[str] = []

    def work(tx: Tx, chunk: list[Mapping[str, Any]]) -> None:
        now = engine.clock.now()
        for data in chunk:
            event = internal(name, data, now=now)
            tx.insert_event(event)
            run = start_run(tx, fn, [event], now, start_at=now + HOUR)
            assert run is not None
            ids.append(run.run_id)

    for start in range(0, len(datas), 1000):
        chunk = datas[start : start + 1000]
        await engine.store.atomic(lambda tx, chunk=chunk: work(tx, chunk))
    return ids


async def send(engine: Engine, name: str, data: Mapping[str, Any]) -> str:
    [event_id] = await engine.send({"name": name, "data": dict(data)})

    async def linked() -> Any:
        return await engine.event_runs(event_id) or None

    links = await await_until(linked, timeout=10, message="the event's run")
    run_id = links[0].run_id
    assert run_id is not None
    return run_id


async def asleep(engine: Engine, run_ids: list[str]) -> None:
    async def all_asleep() -> bool:
        for run_id in run_ids:
            steps = await engine.run_steps(run_id)
            if not any(s.status.value == "Sleeping" for s in steps):
                return False
        return True

    await await_until(all_asleep, timeout=20, message="the runs to sleep")


async def statuses(engine: Engine, run_ids: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for run_id in run_ids:
        status = (await engine.get_run(run_id)).status.value
        counts[status] = counts.get(status, 0) + 1
    return counts


async def follow(api: httpx.AsyncClient, bulk_id: str, timeout: float = 120) -> list[Any]:
    """Every distinct view of an action until it is done (the last one: its end)."""
    seen: list[Any] = []
    deadline = time.monotonic() + timeout
    while True:
        view = (await api.get(f"/v1/bulk/{bulk_id}")).json()["data"]
        if not seen or view != seen[-1]:
            seen.append(view)
        if view["done"]:
            return seen
        assert time.monotonic() < deadline, f"bulk action never ended: {view}"
        await asyncio.sleep(0.01)


# 5,000 runs seeded, then cancelled in 25 batches of 200 (4 statements a run): the seeding
# is most of its time (bench/README.md, "Bulk cancel in batches")
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bulk_cancel_of_5000_runs_leaves_every_other_run_alone(db: str) -> None:
    client, functions = app()

    async def scenario() -> None:
        async with running(db, apps=[(client, functions)]) as engine, api(engine) as rest:
            sleeping = [await send(engine, "bulk/go", {"group": "a"}) for _ in range(3)]
            sleeping_b = [await send(engine, "bulk/go", {"group": "b"})]
            others = [await send(engine, "bulk/other", {"group": "a"}) for _ in range(2)]
            await asleep(engine, sleeping + sleeping_b + others)
            group_a = await seed(engine, "t-target", [{"group": "a", "n": i} for i in range(4997)])
            group_b = await seed(engine, "t-target", [{"group": "b", "n": i} for i in range(50)])
            other_a = await seed(engine, "t-other", [{"group": "a", "n": i} for i in range(50)])
            started = time.monotonic()
            answer = await rest.post(
                "/v1/bulk/cancel",
                json={
                    "filter": {
                        "function_id": "t-target",
                        "status": ["Queued", "Running"],
                        "if": 'event.data.group == "a"',
                    }
                },
            )
            assert answer.status_code == 202, answer.text
            action = answer.json()["data"]
            assert action["status"] == "queued"
            assert action["filter"]["if"] == 'event.data.group == "a"'
            seen = await follow(rest, action["bulk_id"])
            took = time.monotonic() - started
            store = "postgres" if "//" in db else "sqlite"
            print(f"bulk cancel of 5,000 runs on {store}: {took:.2f} s")
            end = seen[-1]
            assert end["status"] == "completed", end
            assert (end["matched"], end["applied"], end["skipped"]) == (5000, 5000, 0)
            # progress was visible on the way: counts grew batch by batch
            partial = [v for v in seen if 0 < v["applied"] < 5000]
            assert partial, seen
            assert all(v["status"] == "running" for v in partial)
            assert [v["applied"] for v in seen] == sorted(v["applied"] for v in seen)

            cancelled = await statuses(engine, group_a + sleeping)
            assert cancelled == {"Cancelled": 5000}
            run = await engine.get_run(group_a[0])
            assert run.cancel_reason == f"cancelled by bulk action {action['bulk_id']}"
            assert await statuses(engine, group_b) == {"Queued": 50}
            assert await statuses(engine, other_a) == {"Queued": 50}
            assert await statuses(engine, sleeping_b + others) == {"Running": 3}
            listed = (await rest.get("/v1/bulk")).json()
            assert [a["bulk_id"] for a in listed["data"]] == [action["bulk_id"]]

    arun(scenario())


def test_bulk_replay_starts_one_linked_run_per_ended_run(db: str) -> None:
    client, functions = app()
    FLAKY["fail"] = True

    async def scenario() -> None:
        async with (
            running(db, apps=[(client, functions)], bulk_batch_size=7) as engine,
            api(engine) as rest,
        ):
            failed = [await send(engine, "bulk/flaky", {"n": i}) for i in range(20)]
            for run_id in failed:
                assert (await finished(engine, run_id)).status.value == "Failed"
            FLAKY["fail"] = False
            answer = await rest.post(
                "/v1/bulk/replay",
                json={"filter": {"function_id": "t-flaky", "status": "failed"}},
            )
            assert answer.status_code == 202, answer.text
            end = (await follow(rest, answer.json()["data"]["bulk_id"]))[-1]
            assert (end["status"], end["matched"], end["applied"], end["skipped"]) == (
                "completed", 20, 20, 0,
            )  # fmt: skip
            runs = await engine.list_runs(RunFilter(function_id="t-flaky", limit=100))
            replays = [r for r in runs if r.origin and r.origin.startswith("replay:")]
            assert sorted(r.origin for r in replays) == sorted(f"replay:{r}" for r in failed)
            for run in replays:
                assert (await finished(engine, run.run_id)).output == '"fine"'
            view = (await rest.get(f"/v1/runs/{replays[0].run_id}")).json()["data"]
            assert view["replay_of"] == replays[0].origin.removeprefix("replay:")
            # the originals stay as they were
            assert await statuses(engine, failed) == {"Failed": 20}

            # a live run matched by a replay is skipped, not replayed twice over
            live = await send(engine, "bulk/go", {"group": "a"})
            await asleep(engine, [live])
            again = await rest.post("/v1/bulk/replay", json={"filter": {"function_id": "t-target"}})
            end = (await follow(rest, again.json()["data"]["bulk_id"]))[-1]
            assert (end["matched"], end["applied"], end["skipped"]) == (1, 0, 1)

    arun(scenario())


def test_an_idempotency_key_answers_the_same_action(db: str) -> None:
    client, functions = app()

    async def scenario() -> None:
        async with running(db, apps=[(client, functions)]) as engine, api(engine) as rest:
            await seed(engine, "t-target", [{"n": i} for i in range(10)])
            body = {"filter": {"function_id": "t-target"}, "idempotency_key": "incident-42"}
            first = await rest.post("/v1/bulk/cancel", json=body)
            second = await rest.post("/v1/bulk/cancel", json=body)
            assert (first.status_code, second.status_code) == (202, 200)
            bulk_id = first.json()["data"]["bulk_id"]
            assert second.json()["data"]["bulk_id"] == bulk_id
            end = (await follow(rest, bulk_id))[-1]
            assert end["applied"] == 10
            third = await rest.post("/v1/bulk/cancel", json=body)  # after the end, too
            assert third.json()["data"]["bulk_id"] == bulk_id
            assert third.json()["data"]["status"] == "completed"
            assert len((await rest.get("/v1/bulk")).json()["data"]) == 1

    arun(scenario())


@pytest.mark.slow
def test_cancelling_an_action_stops_it_at_the_next_batch(db: str) -> None:
    client, functions = app()

    async def scenario() -> None:
        async with (
            running(db, apps=[(client, functions)], bulk_batch_size=10, bulk_pause=0.3) as engine,
            api(engine) as rest,
        ):
            ids = await seed(engine, "t-target", [{"n": i} for i in range(100)])
            answer = await rest.post(
                "/v1/bulk/cancel", json={"filter": {"function_id": "t-target"}}
            )
            bulk_id = answer.json()["data"]["bulk_id"]

            async def begun() -> Any:
                view = (await rest.get(f"/v1/bulk/{bulk_id}")).json()["data"]
                return view if view["applied"] >= 10 else None

            await await_until(begun, timeout=20, message="the first batch")
            stopped = await rest.post(f"/v1/bulk/{bulk_id}/cancel")
            assert stopped.status_code == 200
            assert stopped.json()["data"]["status"] == "cancelled"
            assert stopped.json()["data"]["done"] is True
            applied = stopped.json()["data"]["applied"]
            assert 10 <= applied < 100
            await asyncio.sleep(1.0)  # three more pauses: no batch comes
            view = (await rest.get(f"/v1/bulk/{bulk_id}")).json()["data"]
            assert (view["status"], view["applied"]) == ("cancelled", applied)
            counts = await statuses(engine, ids)
            assert counts == {"Cancelled": applied, "Queued": 100 - applied}
            again = await rest.post(f"/v1/bulk/{bulk_id}/cancel")  # an ended one stays
            assert again.json()["data"]["status"] == "cancelled"
            assert (await rest.post("/v1/bulk/01NOPE/cancel")).status_code == 404
            assert (await rest.get("/v1/bulk/01NOPE")).status_code == 404

    arun(scenario())


@pytest.mark.slow
def test_an_engine_stopped_mid_action_resumes_from_the_cursor(db: str) -> None:
    client, functions = app()
    options: dict[str, Any] = {"bulk_batch_size": 10, "bulk_pause": 0.2, "lease_seconds": 2.0}

    async def scenario() -> None:
        async with running(db, apps=[(client, functions)], **options) as engine:
            ids = await seed(engine, "t-target", [{"n": i} for i in range(100)])
            async with api(engine) as rest:
                answer = await rest.post(
                    "/v1/bulk/cancel",
                    json={"filter": {"function_id": "t-target"}, "idempotency_key": "c"},
                )
                cancel_id = answer.json()["data"]["bulk_id"]

                async def halfway() -> bool:
                    view = (await rest.get(f"/v1/bulk/{cancel_id}")).json()["data"]
                    return bool(view["applied"] >= 30)

                await await_until(halfway, timeout=20, message="30 runs cancelled")
        # the engine stopped mid-action; another starts on the same database
        async with running(db, apps=[(client, functions)], **options) as engine:
            async with api(engine) as rest:
                view = (await rest.get(f"/v1/bulk/{cancel_id}")).json()["data"]
                assert view["status"] == "running"
                assert 30 <= view["applied"] < 100
                assert view["cursor"] is not None
                end = (await follow(rest, cancel_id))[-1]
                # a run handled twice would be skipped the second time (already ended)
                assert (end["matched"], end["applied"], end["skipped"]) == (100, 100, 0)
            assert await statuses(engine, ids) == {"Cancelled": 100}
            reasons = {(await engine.get_run(r)).cancel_reason for r in ids}
            assert reasons == {f"cancelled by bulk action {cancel_id}"}

    arun(scenario())


def test_two_engines_on_one_database_act_on_each_run_once(db: str) -> None:
    client, functions = app()
    FLAKY["fail"] = True
    options: dict[str, Any] = {"bulk_batch_size": 5, "bulk_pause": 0.0}

    async def scenario() -> None:
        async with (
            running(db, apps=[(client, functions)], **options) as one,
            running(db, apps=[(client, functions)], **options) as two,
            api(one) as rest,
        ):
            failed = [await send(one, "bulk/flaky", {"n": i}) for i in range(40)]
            for run_id in failed:
                assert (await finished(one, run_id)).status.value == "Failed"
            answer = await rest.post("/v1/bulk/replay", json={"filter": {"function_id": "t-flaky"}})
            two.worker.wake.set()
            end = (await follow(rest, answer.json()["data"]["bulk_id"]))[-1]
            assert (end["matched"], end["applied"]) == (40, 40)
            runs = await one.list_runs(RunFilter(function_id="t-flaky", limit=200))
            origins = [r.origin for r in runs if r.origin]
            assert sorted(origins) == sorted(f"replay:{r}" for r in failed)

    arun(scenario())


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"filter": {"if": "event.data.x =="}}, "filter.if: "),
        ({"filter": {"if": "nope.data.x == 1"}}, "filter.if: "),
        ({"filter": {}}, "an empty filter would match every run"),
        ({}, "filter: want an object"),
        ({"filter": {"function": "x"}}, "unknown key(s) function"),
        ({"filter": {"status": ["Sleepy"]}}, "filter.status: unknown 'Sleepy'"),
        ({"filter": {"since": "yesterday"}}, "filter.since: want an RFC 3339 time"),
        ({"filter": {"event": "a"}, "idempotency_key": ""}, "idempotency_key"),
    ],
)
def test_a_bad_filter_is_a_400_saying_why(db: str, body: dict[str, Any], message: str) -> None:
    async def scenario() -> None:
        async with running(db) as engine, api(engine) as rest:
            for action in ("cancel", "replay"):
                answer = await rest.post(f"/v1/bulk/{action}", json=body)
                assert answer.status_code == 400, answer.text
                assert message in answer.json()["error"], answer.text
            assert (await rest.get("/v1/bulk")).json()["data"] == []

    arun(scenario())


def test_a_parse_error_names_where_the_expression_broke(db: str) -> None:
    async def scenario() -> None:
        async with running(db) as engine, api(engine) as rest:
            answer = await rest.post(
                "/v1/bulk/cancel", json={"filter": {"if": "event.data.n > > 3"}}
            )
            assert answer.status_code == 400
            error = answer.json()["error"]
            assert "column" in error, error
            assert "event.data.n > > 3" in error, error

    arun(scenario())


def test_two_batches_at_once_take_turns_on_the_action(db: str) -> None:
    """Two workers holding one action's job at once (a lease that lapsed under a slow
    batch): the second batch waits for the first and starts after its cursor."""
    from stepline.engine import EngineSettings
    from stepline.engine._control import bulk
    from stepline.engine._control.bulk import BulkFilter

    client, functions = app()

    async def scenario() -> None:
        settings = EngineSettings(database_url=db, bulk_batch_size=10, bulk_pause=0.0)
        engine = Engine(settings)
        await engine.start(worker=False)  # nobody but this test runs the batches
        try:
            await engine.serve(client, functions)
            ids = await seed(engine, "t-target", [{"n": i} for i in range(20)])
            now = engine.clock.now()
            where = BulkFilter(function_id="t-target")
            action, _ = await engine.store.atomic(
                lambda tx: bulk.create(tx, "cancel", where, None, now)
            )
            job = await engine.store.read(lambda tx: tx.queue.get_job(bulk.job_id(action.bulk_id)))
            assert job is not None

            def one_batch(tx: Tx) -> None:
                bulk.batch(tx, dataclasses.replace(job), engine.transitions, settings, now)

            await asyncio.gather(engine.store.atomic(one_batch), engine.store.atomic(one_batch))
            done = await engine.store.read(lambda tx: tx.bulk.get_bulk(action.bulk_id))
            assert done is not None
            assert (done.matched, done.applied, done.skipped) == (20, 20, 0)
            assert done.cursor == max(ids)
            assert await statuses(engine, ids) == {"Cancelled": 20}
        finally:
            await engine.stop()

    arun(scenario())


@contextlib.asynccontextmanager
async def idle(db: str, **settings: Any) -> AsyncIterator[Engine]:
    """An engine with the test's functions and no worker: only the test runs batches."""
    from stepline.engine import EngineSettings

    client, functions = app()
    engine = Engine(EngineSettings(database_url=db, bulk_pause=0.0, **settings))
    await engine.start(worker=False)
    try:
        await engine.serve(client, functions)
        yield engine
    finally:
        await engine.stop()


async def first_batch(engine: Engine, work: Any = None) -> Any:
    """A cancel of every ``t-target`` run, its first batch run by the test (``work``: a
    function of the batch's ``Tx`` called first); the action after it."""
    from stepline.engine._control import bulk
    from stepline.engine._control.bulk import BulkFilter

    now = engine.clock.now()
    action, _ = await engine.store.atomic(
        lambda tx: bulk.create(tx, "cancel", BulkFilter(function_id="t-target"), None, now)
    )
    job = await engine.store.read(lambda tx: tx.queue.get_job(bulk.job_id(action.bulk_id)))
    assert job is not None

    def one_batch(tx: Tx) -> None:
        if work is not None:
            work(tx)
        bulk.batch(tx, job, engine.transitions, engine.settings, engine.clock.now())

    await engine.store.atomic(one_batch)
    return await engine.store.read(lambda tx: tx.bulk.get_bulk(action.bulk_id))


def test_a_cancel_batch_reads_its_runs_at_once(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch reads its runs, their steps, attributes and waits in a statement or two
    for the whole batch; each run's cancel then sends only its writes."""
    from stepline.engine._store.pg_tx import PostgresTx
    from stepline.engine._store.sql import SqlTx

    ours: list[Any] = []  # the batch's transaction, held: a freed one's id is reused
    sent: list[str] = []
    for cls in (SqlTx, PostgresTx):
        for name in ("execute", "execute_many"):
            original = getattr(cls, name)

            def counted(self: Any, sql: str, *args: Any, _original: Any = original) -> Any:
                if any(self is tx for tx in ours):
                    sent.append(sql.lstrip().split(None, 1)[0].upper())
                return _original(self, sql, *args)

            monkeypatch.setattr(cls, name, counted)

    async def scenario() -> None:
        async with idle(db, bulk_batch_size=100) as engine:
            ids = await seed(engine, "t-target", [{"n": i} for i in range(60)])
            end = await first_batch(engine, ours.append)
            assert (end.status, end.matched, end.applied) == ("completed", 60, 60)
            assert await statuses(engine, ids) == {"Cancelled": 60}
            reads = sent.count("SELECT")
            # the action, the runs, their steps, pauses, attributes, claims and waits: none per run
            assert reads <= 8, (reads, len(sent))
            # per run: its row, its jobs and its two events (no reads; no waits nor claims)
            assert len(sent) <= 4 * 60 + 10, len(sent)

    arun(scenario())


def test_a_run_that_ends_during_a_batch_keeps_its_end(db: str) -> None:
    """A run whose last step completes it while a batch is under way (its row locked by
    that step's transaction) stays completed as it ended; the batch cancels the rest."""

    async def scenario() -> None:
        async with idle(db, bulk_batch_size=50) as engine:
            ids = await seed(engine, "t-target", [{"n": i} for i in range(20)])
            ending = ids[7]
            locked = asyncio.Event()
            loop = asyncio.get_running_loop()

            def complete(tx: Tx) -> None:
                run = tx.get_run(ending)  # locked (Postgres) until this commits
                assert run is not None
                loop.call_soon_threadsafe(locked.set)
                time.sleep(0.5)  # the batch starts meanwhile and waits for the row
                run.status = RunStatus.COMPLETED
                run.output, run.ended_at = '"done"', 1234.5
                tx.update_run(run)

            completing = asyncio.ensure_future(engine.store.atomic(complete))
            await locked.wait()
            end = await first_batch(engine)
            await completing
            assert (end.matched, end.applied, end.skipped) == (20, 19, 1)
            run = await engine.get_run(ending)
            assert (run.status.value, run.ended_at, run.output) == ("Completed", 1234.5, '"done"')
            assert run.cancel_reason is None
            rest = [r for r in ids if r != ending]
            assert await statuses(engine, rest) == {"Cancelled": 19}

    arun(scenario())


def test_a_cancel_batch_ends_waits_claims_and_steps_as_one_cancel_does(db: str) -> None:
    """Runs waiting for an event and holding a singleton: a bulk cancel deletes their
    waits and claims and ends the waiting step, as the cancel of one run does."""
    client = dev_client()

    @client.function(
        id="waiter",
        singleton=stepline.Singleton(mode="skip", key="event.data.k"),
        trigger=stepline.TriggerEvent(event="bulk/wait"),
    )
    async def waiter(ctx: stepline.Context) -> str:
        await ctx.step.wait_for_event("hear", event="bulk/heard", timeout="1h")
        return "heard"

    async def scenario() -> None:
        async with running(db, apps=[(client, [waiter])]) as engine, api(engine) as rest:
            ids = [await send(engine, "bulk/wait", {"k": k}) for k in "abc"]

            async def waiting() -> bool:
                for run_id in ids:
                    if not await engine.store.read(lambda tx, r=run_id: tx.run_pauses(r)):
                        return False
                return True

            await await_until(waiting, timeout=20, message="the runs to wait")

            def left(tx: Tx) -> Any:
                pauses = [len(tx.run_pauses(r)) for r in ids]
                held = [tx.flow.singleton_run("t-waiter", key) for key in ('"a"', '"b"', '"c"')]
                return pauses, held

            assert await engine.store.read(left) == ([1, 1, 1], ids)
            answer = await rest.post(
                "/v1/bulk/cancel", json={"filter": {"function_id": "t-waiter"}}
            )
            end = (await follow(rest, answer.json()["data"]["bulk_id"]))[-1]
            assert (end["matched"], end["applied"]) == (3, 3)
            assert await statuses(engine, ids) == {"Cancelled": 3}
            assert await engine.store.read(left) == ([0, 0, 0], [None, None, None])
            for run_id in ids:
                steps = {s.name: s.status.value for s in await engine.run_steps(run_id)}
                assert steps.get("hear") == "Cancelled", steps
            # the keys are free again: new runs start
            again = await send(engine, "bulk/wait", {"k": "a"})
            assert again not in ids

    arun(scenario())
