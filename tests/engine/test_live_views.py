"""The dashboard's live views through the REST API, on both stores, with real runs.

The event stream: a page of the newest events gives a ``stream_cursor``; reading ``after``
it answers only the events sent since, oldest first, each with the runs it started, and
leaves the engine's own events out when asked. Crons (on a manual clock): each trigger's
next three ticks, its last runs, and the ticks missed while no engine ran. The queue: a
function with a concurrency limit of 1 and three runs (one call in flight, two parked on
its key), a throttled function (one run started, two held), counted beside their limits.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

import stepline
from stepline.engine import Engine, ManualClock, RunStatus
from stepline.engine._http.api import build_app
from stepline.engine._store import RunFilter
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.engines import fast_settings, running, settle
from tests._support.polling import await_until

START = 1_800_000_000.0  # 2027-01-15T08:00:00Z, on a minute


@asynccontextmanager
async def rest(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        yield http


async def _get(http: httpx.AsyncClient, path: str, **params: Any) -> dict[str, Any]:
    answer = await http.get(path, params=params)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def _send(http: httpx.AsyncClient, name: str, data: dict[str, Any]) -> str:
    answer = await http.post("/v1/events", json={"name": name, "data": data})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["data"]["ids"][0])


def _seconds(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_the_stream_follows_new_events_with_their_runs(db: str) -> None:
    client = dev_client("lv")

    @client.function(id="order", trigger=stepline.TriggerEvent(event="lv/order"))
    async def order(ctx: stepline.Context) -> int:
        return int(ctx.event.data["n"])

    async def scenario() -> None:
        async with running(db, apps=[(client, [order])]) as engine, rest(engine) as http:
            first = await _send(http, "lv/order", {"n": 1})

            async def ended_event() -> dict[str, Any] | None:
                page = await _get(http, "/v1/events", runs="true")
                names = [e["name"] for e in page["data"]]
                return page if "inngest/function.finished" in names else None

            everything = await await_until(ended_event, timeout=15, message="the run's end")
            outside = await _get(http, "/v1/events", internal="false", runs="true")
            assert [e["internal_id"] for e in outside["data"]] == [first]
            [run] = outside["data"][0]["runs"]
            assert run["function_id"] == "lv-order"
            assert run["status"] == RunStatus.COMPLETED.value
            assert set(run) == {"run_id", "function_id", "status"}
            assert len(everything["data"]) == 2

            cursor = outside["metadata"]["stream_cursor"]
            second = await _send(http, "lv/order", {"n": 2})
            third = await _send(http, "lv/order", {"n": 3})

            async def followed() -> dict[str, Any] | None:
                page = await _get(http, "/v1/events", after=cursor, internal="false", runs="true")
                ids = [e["internal_id"] for e in page["data"]]
                done = all(
                    e["runs"] and e["runs"][0]["status"] == "Completed" for e in page["data"]
                )
                return page if second in ids and third in ids and done else None

            page = await await_until(followed, timeout=15, message="the new events' runs")
            ids = [e["internal_id"] for e in page["data"]]
            # only what was sent after the cursor (and its settle window), oldest first
            assert ids[-2:] == [second, third]
            assert set(ids) <= {first, second, third}
            assert all(not e["name"].startswith("inngest/") for e in page["data"])
            assert page["data"][-1]["data"] == {"n": 3}
            # with the engine's own: their run-ended events come through too
            mixed = await _get(http, "/v1/events", after=cursor)
            assert "inngest/function.finished" in {e["name"] for e in mixed["data"]}
            assert "runs" not in mixed["data"][0]
            # a cursor read to the end goes on from there (less its settle window)
            fourth = await _send(http, "lv/order", {"n": 4})
            later = await _get(
                http, "/v1/events", after=page["metadata"]["stream_cursor"], internal="false"
            )
            assert [e["internal_id"] for e in later["data"]][-1] == fourth
            assert {e["internal_id"] for e in later["data"]} <= {first, second, third, fourth}

            for params, problem in [
                ({"after": "yesterday"}, "after: want the metadata.stream_cursor"),
                ({"after": cursor, "expression": "true"}, "cannot be combined with expression"),
                ({"internal": "maybe"}, "internal: want true or false"),
            ]:
                refused = await http.get("/v1/events", params=params)
                assert refused.status_code == 400, refused.text
                assert problem in refused.json()["error"]

    arun(scenario())


def test_crons_show_next_ticks_last_runs_and_missed_ticks(db: str) -> None:
    client = dev_client("lc")

    @client.function(id="tick", trigger=stepline.TriggerCron(cron="* * * * *"))
    async def tick(ctx: stepline.Context) -> str:
        return "tock"

    async def scenario() -> None:
        clock = ManualClock(START)
        async with running(db, clock=clock, apps=[(client, [tick])]) as engine:

            async def two_done() -> bool:
                runs = await engine.list_runs(RunFilter(function_id="lc-tick", limit=10))
                return len([r for r in runs if r.status.terminal]) >= 2

            await settle(engine, clock, until=two_done)
            async with rest(engine) as http:
                [cron] = (await _get(http, "/v1/crons"))["data"]
            now = clock.now()
        assert cron["function_id"] == "lc-tick"
        assert cron["cron"] == "* * * * *"
        assert cron["timezone"] == "UTC"
        minute = (now // 60 + 1) * 60
        assert [_seconds(t) for t in cron["next_ticks"]] == [minute, minute + 60, minute + 120]
        assert len(cron["last_runs"]) >= 2
        assert {r["status"] for r in cron["last_runs"][-2:]} == {"Completed"}
        assert cron["missed_ticks"] == 0
        queued = _seconds(cron["queued_tick"])
        assert queued > START

        # no engine runs for four and a half minutes: the scheduler's queued tick and the
        # three after it are overdue; the one 25 s ago is not counted yet (``LATE``)
        clock.set(queued + 265)
        reader = Engine(fast_settings(db), clock=clock)
        await reader.start(worker=False, sync=False)
        try:
            async with rest(reader) as http:
                [late] = (await _get(http, "/v1/crons"))["data"]
        finally:
            await reader.stop()
        assert late["missed_ticks"] == 4
        assert _seconds(late["missed_since"]) == queued
        assert _seconds(late["next_ticks"][0]) == queued + 300

    arun(scenario())


def test_the_queue_counts_in_flight_waiting_and_throttled_calls(db: str) -> None:
    client = dev_client("lq")
    gate = threading.Event()

    @client.function(id="one", trigger=stepline.TriggerEvent(event="lq/one"), concurrency=1)
    async def one(ctx: stepline.Context) -> None:
        async def held() -> None:
            while not gate.is_set():
                await asyncio.sleep(0.02)

        await ctx.step.run("held", held)

    @client.function(
        id="slow",
        trigger=stepline.TriggerEvent(event="lq/slow"),
        throttle=stepline.Throttle(limit=1, period="1h"),
    )
    async def slow(ctx: stepline.Context) -> int:
        return 1

    async def scenario() -> None:
        async with running(db, apps=[(client, [one, slow])]) as engine, rest(engine) as http:
            for n in range(3):
                await _send(http, "lq/one", {"n": n})
                await _send(http, "lq/slow", {"n": n})

            async def counted() -> dict[str, Any] | None:
                body = (await _get(http, "/v1/queue"))["data"]
                by_fn = {f["function_id"]: f for f in body["functions"]}
                capped, throttled = by_fn.get("lq-one"), by_fn.get("lq-slow")
                if capped is None or throttled is None:
                    return None
                if (capped["in_flight"], capped["waiting"], throttled["throttled"]) != (1, 2, 2):
                    return None
                return body

            body = await await_until(counted, timeout=20, message="1 in flight, 2 waiting")
            by_fn = {f["function_id"]: f for f in body["functions"]}
            capped, throttled = by_fn["lq-one"], by_fn["lq-slow"]
            assert capped["limits"]["concurrency"] == [{"limit": 1, "scope": "fn", "key": None}]
            assert capped["queued"] + capped["running"] == 3
            assert throttled["queued"] == 2
            assert throttled["limits"]["throttle"] == {
                "limit": 1,
                "period": 3600.0,
                "burst": 0,
                "key": None,
            }
            [key] = body["keys"]
            assert key == {
                "key": "fn:lq-one:",
                "function_id": "lq-one",
                "functions": ["lq-one"],
                "scope": "fn",
                "limit": 1,
                "in_flight": 1,
                "waiting": 2,
            }

            gate.set()

            async def drained() -> dict[str, Any] | None:
                body = (await _get(http, "/v1/queue"))["data"]
                capped = next(f for f in body["functions"] if f["function_id"] == "lq-one")
                idle = (capped["in_flight"], capped["waiting"], capped["running"]) == (0, 0, 0)
                return body if idle and not body["keys"] else None

            await await_until(drained, timeout=20, message="the limited runs to end")

    arun(scenario())
