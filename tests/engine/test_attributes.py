"""Searchable run attributes: set at start, from inside a run and from outside; filters
return exactly the matching runs. Both stores, through the REST API and the client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

import stepline
from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app
from tests._support.aio import arun
from tests._support.in_process import to_engine


def _client_and_functions() -> tuple[stepline.Client, list[stepline.Function]]:
    client = stepline.Client("attrs", is_production=False, environ={})

    @client.function(id="tag", trigger=stepline.TriggerEvent(event="attrs/tag"))
    async def tag(ctx: stepline.Context) -> str:
        await ctx.set_attributes({"stage": "tagged", "size": len(ctx.event.data.get("items", []))})
        await ctx.step.run("work", lambda: "done")
        return "ok"

    @client.function(id="tag-sync", trigger=stepline.TriggerEvent(event="attrs/tag-sync"))
    def tag_sync(ctx: stepline.SyncContext) -> str:
        ctx.step.run("first", lambda: 1)
        ctx.set_attributes({"stage": "sync", "vip": True})
        return ctx.step.run("second", lambda: "done")

    @client.function(id="idle", trigger=stepline.TriggerEvent(event="attrs/idle"))
    async def idle(ctx: stepline.Context) -> str:
        return "idle"

    @client.function(id="nap", trigger=stepline.TriggerEvent(event="attrs/nap"))
    async def nap(ctx: stepline.Context) -> str:
        await ctx.step.sleep("long", "1h")
        return "woke"

    return client, [tag, tag_sync, idle, nap]


@asynccontextmanager
async def engine_with(db: str) -> AsyncIterator[tuple[Engine, stepline.Client, httpx.AsyncClient]]:
    options: dict[str, Any] = {"poll_interval": 0.05, "retry_scale": 0.0}
    engine = Engine(EngineSettings(database_url=db, **options))
    client, functions = _client_and_functions()
    api = build_app(engine)

    to_engine(client, api)
    await engine.start()
    try:
        await engine.serve(client, functions)
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            yield engine, client, http
    finally:
        await engine.stop()


async def _ids(http: httpx.AsyncClient, *filters: str, **query: str) -> set[str]:
    params = [("attribute", f) for f in filters] + list(query.items())
    answer = await http.get("/v1/runs", params=params)
    assert answer.status_code == 200, answer.text
    return {run["run_id"] for run in answer.json()["data"]}


def test_filters_return_exactly_the_matching_runs(db: str) -> None:
    async def scenario() -> None:
        async with engine_with(db) as (_engine, client, http):
            gold = await client.start("idle", {}, attributes={"customer": "c1", "tier": "gold"})
            silver = await client.start("idle", {}, attributes={"customer": "c1", "tier": "silver"})
            other = await client.start("idle", {}, attributes={"customer": "c2", "n": 7})
            plain = await client.start("idle", {})
            for handle in (gold, silver, other, plain):
                await handle.result(timeout=20)
            assert await _ids(http, "customer:c1") == {gold.run_id, silver.run_id}
            assert await _ids(http, "customer:c1", "tier:gold") == {gold.run_id}
            assert await _ids(http, "n:7") == {other.run_id}  # numbers filter as text
            assert await _ids(http, "customer:c3") == set()
            assert await _ids(http, "customer:c1", function_id="attrs-tag") == set()
            runs, _ = await client.list_runs(attributes={"tier": "silver"})
            assert [r.run_id for r in runs] == [silver.run_id]
            assert runs[0].attributes == {"customer": "c1", "tier": "silver"}
            view = (await http.get(f"/v1/runs/{other.run_id}")).json()["data"]
            assert view["attributes"] == {"customer": "c2", "n": "7"}
            assert (await plain.describe()).attributes == {}

    arun(scenario())


def test_a_run_sets_its_own_attributes_on_both_faces(db: str) -> None:
    async def scenario() -> None:
        async with engine_with(db) as (_engine, client, http):
            a = await client.start("tag", {"items": [1, 2, 3]})
            b = await client.start("tag-sync", {})
            assert await a.result(timeout=20) == "ok"
            assert await b.result(timeout=20) == "done"
            assert (await a.describe()).attributes == {"stage": "tagged", "size": "3"}
            assert (await b.describe()).attributes == {"stage": "sync", "vip": "true"}
            assert await _ids(http, "stage:tagged") == {a.run_id}
            # from outside, after the run ended: replaces one value, adds another
            found = await client.get_run(a.run_id).set_attributes(
                {"stage": "reviewed", "by": "ops"}
            )
            assert found == {"stage": "reviewed", "size": "3", "by": "ops"}
            assert await _ids(http, "stage:reviewed", "by:ops") == {a.run_id}
            assert await _ids(http, "stage:tagged") == set()

    arun(scenario())


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"attributes": {"": "x"}}, "name"),
        ({"attributes": {"a b": "x"}}, "name"),
        ({"attributes": {"x" * 65: "x"}}, "name"),
        ({"attributes": {"k": "v" * 257}}, "256"),
        ({"attributes": {"k": {"nested": 1}}}, "string, number or boolean"),
        ({"attributes": {"k": None}}, "string, number or boolean"),
        ({"attributes": ["k"]}, "object"),
        ({"attributes": {f"k{i}": i for i in range(33)}}, "at most 32"),
        ({"nope": 1}, "attributes"),
    ],
)
def test_bad_attributes_are_400s_naming_the_problem(db: str, body: object, problem: str) -> None:
    async def scenario() -> None:
        async with engine_with(db) as (_engine, client, http):
            handle = await client.start("idle", {})
            answer = await http.post(f"/v1/runs/{handle.run_id}/attributes", json=body)
            assert answer.status_code == 400, answer.text
            assert problem in answer.json()["error"]
            start = (
                await http.post(
                    "/v1/functions/attrs-idle/runs", json={"attributes": body.get("attributes")}
                )
                if isinstance(body, dict) and "attributes" in body
                else None
            )
            if start is not None:
                assert start.status_code == 400, start.text

    arun(scenario())


def test_unknown_runs_and_bad_filters(db: str) -> None:
    async def scenario() -> None:
        async with engine_with(db) as (_engine, client, http):
            missing = await http.post("/v1/runs/nope/attributes", json={"attributes": {"a": "b"}})
            assert missing.status_code == 404
            bad = await http.get("/v1/runs", params={"attribute": "no-colon"})
            assert bad.status_code == 400
            assert "name:value" in bad.json()["error"]
            handle = await client.start("idle", {}, attributes={f"k{i}": i for i in range(30)})
            await handle.result(timeout=20)
            over = await http.post(
                f"/v1/runs/{handle.run_id}/attributes",
                json={"attributes": {f"x{i}": i for i in range(3)}},
            )
            assert over.status_code == 400
            assert "at most 32" in over.json()["error"]
            assert len((await handle.describe()).attributes) == 30  # nothing was kept
            await asyncio.sleep(0)

    arun(scenario())


def test_a_bulk_cancel_by_attribute_cancels_exactly_those_runs(db: str) -> None:
    async def scenario() -> None:
        async with engine_with(db) as (_engine, client, http):
            eu = [await client.start("nap", {}, attributes={"region": "eu"}) for _ in range(3)]
            us = [await client.start("nap", {}, attributes={"region": "us"}) for _ in range(2)]
            for handle in eu + us:  # asleep before the action looks at them
                await _until(handle, "Running")
            action = await http.post(
                "/v1/bulk/cancel", json={"filter": {"attributes": {"region": "eu"}}}
            )
            assert action.status_code == 202, action.text
            bulk_id = action.json()["data"]["bulk_id"]
            for _ in range(200):
                shown = (await http.get(f"/v1/bulk/{bulk_id}")).json()["data"]
                if shown["status"] == "completed":
                    break
                await asyncio.sleep(0.05)
            assert shown["status"] == "completed", shown
            assert shown["filter"]["attributes"] == {"region": "eu"}
            assert [(await h.describe()).status.value for h in eu] == ["Cancelled"] * 3
            assert [(await h.describe()).status.value for h in us] == ["Running"] * 2
            bad = await http.post("/v1/bulk/cancel", json={"filter": {"attributes": {"a b": 1}}})
            assert bad.status_code == 400
            assert "name" in bad.json()["error"]

    arun(scenario())


async def _until(handle: stepline.RunHandle, status: str) -> None:
    for _ in range(200):
        if (await handle.describe()).status.value == status:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"run {handle.run_id} never became {status}")


def test_more_attribute_filters_than_a_run_keeps_are_refused(db: str) -> None:
    # each filter is a subquery the database plans with the others: hundreds of them kept
    # Postgres planning for minutes, for a filter no run can match (a run keeps 32)
    async def scenario() -> None:
        async with engine_with(db) as (_engine, client, http):
            handle = await client.start("idle", {}, attributes={f"k{i}": i for i in range(32)})
            await handle.result(timeout=20)
            every = [f"k{i}:{i}" for i in range(32)]
            assert await _ids(http, *every) == {handle.run_id}
            answer = await http.get("/v1/runs", params=[("attribute", f) for f in [*every, "x:1"]])
            assert answer.status_code == 400, answer.text
            assert "at most 32 filters" in answer.json()["error"]
            many = [("attribute", f"n{i}:v") for i in range(2000)]
            assert (await http.get("/v1/runs", params=many)).status_code == 400

    arun(scenario())


@pytest.mark.postgres
def test_a_slow_runs_list_on_postgres_is_stopped_at_its_time_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a list query the server plans or scans for longer than the limit is stopped there,
    # whether or not its client is still waiting; a pg_sleep stands in for the slow plan
    from stepline.engine._store import filters, pg_tx
    from tests._support.databases import postgres_schema

    slow_sql = filters.runs_query

    def slow(where: Any) -> tuple[str, list[Any]]:
        sql, args = slow_sql(where)
        return sql.replace(" FROM runs", " FROM runs, pg_sleep(10)", 1), args

    monkeypatch.setattr(filters, "runs_query", slow)
    monkeypatch.setattr(pg_tx, "LIST_TIMEOUT_MS", 200)

    async def scenario(url: str) -> None:
        async with engine_with(url) as (_engine, _client, http):
            loop = asyncio.get_running_loop()
            began = loop.time()
            answer = await http.get("/v1/runs")
            assert answer.status_code == 503, answer.text
            assert "listing runs took over 0.2 s" in answer.json()["error"]
            assert loop.time() - began < 5  # cut at 0.2 s, not after the query's 10 s
            # the connection went back to the pool with its own limit: other reads work
            monkeypatch.setattr(filters, "runs_query", slow_sql)
            assert (await http.get("/v1/runs")).status_code == 200
            assert (await http.get("/v1/events")).status_code == 200

    with postgres_schema() as url:
        arun(scenario(url))
