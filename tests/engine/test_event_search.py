"""The runs and events lists' extras, on both stores through the REST API.

Runs: every run view names its trigger events; the list finds runs by their id or its
beginning; a Running run says what it waits in (sleeping, an event, a signal, an invoked
child) when nothing holds it back at the run level. Events: a CEL expression over
``event`` filters the list, with a scan limit and a 400 naming a parse error; a replay
sends an event again as a new one that triggers its functions and names the original.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

import stepline
from stepline.engine import Engine
from stepline.engine._http.api import build_app
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.engines import running
from tests._support.polling import await_until

CALLS: collections.Counter[str] = collections.Counter()


def _functions(client: stepline.Client) -> list[stepline.Function]:
    @client.function(id="nap", trigger=stepline.TriggerEvent(event="es/nap"))
    async def nap(ctx: stepline.Context) -> None:
        await ctx.step.sleep("snooze", "1h")

    @client.function(id="wait", trigger=stepline.TriggerEvent(event="es/wait"))
    async def wait(ctx: stepline.Context) -> None:
        await ctx.step.wait_for_event("payment", event="es/paid", timeout="1h")

    @client.function(id="signal", trigger=stepline.TriggerEvent(event="es/signal"))
    async def signal(ctx: stepline.Context) -> None:
        await ctx.step.wait_for_signal("approval", signal=f"ok-{ctx.run_id}", timeout="1h")

    @client.function(id="parent", trigger=stepline.TriggerEvent(event="es/parent"))
    async def parent(ctx: stepline.Context) -> None:
        await ctx.step.invoke("child", function=nap)

    @client.function(id="order", trigger=stepline.TriggerEvent(event="es/order"))
    async def order(ctx: stepline.Context) -> int:
        CALLS[str(ctx.event.data.get("n"))] += 1
        return int(ctx.event.data.get("amount", 0))

    return [nap, wait, signal, parent, order]


@asynccontextmanager
async def api(db: str) -> AsyncIterator[tuple[Engine, httpx.AsyncClient]]:
    client = dev_client("es")
    async with running(db, apps=[(client, _functions(client))]) as engine:
        transport = httpx.ASGITransport(app=build_app(engine))
        csrf = {"x-stepline-csrf": "1"}  # the dev-mode guard's header for body-less POSTs
        base = "http://127.0.0.1"
        async with httpx.AsyncClient(transport=transport, base_url=base, headers=csrf) as http:
            yield engine, http


async def _send(http: httpx.AsyncClient, name: str, data: dict[str, Any] | None = None) -> str:
    answer = await http.post("/v1/events", json={"name": name, "data": data or {}})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["data"]["ids"][0])


async def _run_of(http: httpx.AsyncClient, event_id: str) -> dict[str, Any]:
    async def find() -> dict[str, Any] | None:
        runs: list[dict[str, Any]] = (await http.get(f"/v1/events/{event_id}/runs")).json()["data"]
        return runs[0] if runs else None

    return await await_until(find, timeout=15, interval=0.02, message=f"a run of {event_id}")


async def _listed(http: httpx.AsyncClient, **query: Any) -> dict[str, Any]:
    answer = await http.get("/v1/runs", params=query)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_runs_list_names_trigger_events_and_what_live_runs_wait_in(db: str) -> None:
    async def scenario() -> None:
        async with api(db) as (_engine, http):
            started = {}
            for name in ("nap", "wait", "signal", "parent"):
                started[name] = (await _run_of(http, await _send(http, f"es/{name}")))["run_id"]

            async def states() -> dict[str, Any] | None:
                runs = (await _listed(http, limit=50))["data"]
                by_id = {r["run_id"]: r for r in runs}
                waiting = {k: (by_id[v]["waiting"] or {}) for k, v in started.items()}
                return waiting if all(w.get("reason") for w in waiting.values()) else None

            waiting = await await_until(states, timeout=15, interval=0.05, message="sub-states")
            assert waiting["nap"]["reason"] == "sleeping"
            assert waiting["nap"]["step"] == "snooze"
            assert waiting["nap"]["until"].endswith("Z")
            assert waiting["wait"]["reason"] == "waiting_for_event"
            assert waiting["wait"]["event"] == "es/paid"
            assert waiting["signal"]["reason"] == "waiting_for_signal"
            assert waiting["signal"]["signal"] == f"ok-{started['signal']}"
            assert waiting["parent"]["reason"] == "waiting_for_invoke"
            assert waiting["parent"]["function_id"] == "es-nap"

            runs = (await _listed(http, function_id="es-wait"))["data"]
            assert [r["event_names"] for r in runs] == [["es/wait"]]
            # the child's trigger is the engine's invocation event, named as such
            child = [r for r in (await _listed(http, function_id="es-nap"))["data"]]
            assert sorted(r["event_names"][0] for r in child) == [
                "es/nap",
                "inngest/function.invoked",
            ]
            # a run that ended waits in nothing
            done = await _run_of(http, await _send(http, "es/order", {"n": "x"}))
            ended = (await http.get(f"/v1/runs/{done['run_id']}", params={"wait": 20})).json()
            assert ended["data"]["status"] == "Completed"
            [listed] = (await _listed(http, run_id=done["run_id"]))["data"]
            assert listed["waiting"] is None
            assert listed["event_names"] == ["es/order"]

    arun(scenario())


def test_runs_list_searches_by_run_id_or_its_beginning(db: str) -> None:
    async def scenario() -> None:
        async with api(db) as (_engine, http):
            ids = []
            for n in range(3):
                run = await _run_of(http, await _send(http, "es/order", {"n": f"id{n}"}))
                ids.append(run["run_id"])
            for run_id in ids:
                found = (await _listed(http, run_id=run_id))["data"]
                assert [r["run_id"] for r in found] == [run_id]
                lower = (await _listed(http, run_id=run_id.lower()))["data"]
                assert [r["run_id"] for r in lower] == [run_id]
            common = ids[0][:6]  # created within the same second or so: one ms prefix
            by_prefix = {r["run_id"] for r in (await _listed(http, run_id=common))["data"]}
            assert set(ids) <= by_prefix
            assert all(r.startswith(common) for r in by_prefix)
            # with the other filters and the cursor
            first = await _listed(http, run_id=common, function_id="es-order", limit=1)
            assert first["data"][0]["run_id"] == max(ids)
            after = first["metadata"]["next_cursor"]
            second = await _listed(http, run_id=common, function_id="es-order", cursor=after)
            assert {r["run_id"] for r in second["data"]} == set(ids) - {max(ids)}
            assert (await _listed(http, run_id="7ZZZZZZZZZZZZZZZZZZZZZZZZZ"))["data"] == []
            for bad in ("01HX-", "I" * 3, "0" * 27, "ü"):
                answer = await http.get("/v1/runs", params={"run_id": bad})
                assert answer.status_code == 400, (bad, answer.text)
                assert "run_id" in answer.json()["error"]

    arun(scenario())


def test_events_search_by_payload_expression(db: str) -> None:
    async def scenario() -> None:
        async with api(db) as (_engine, http):
            amounts = [5, 150, 80, 300, 101, 100]
            sent = {}
            for n, amount in enumerate(amounts):
                sent[amount] = await _send(http, "es/order", {"n": f"e{n}", "amount": amount})
            await _send(http, "es/nap", {"amount": 999})

            async def search(**query: Any) -> httpx.Response:
                return await http.get("/v1/events", params=query)

            found = (await search(expression="event.data.amount > 100", name="es/order")).json()
            assert [e["internal_id"] for e in found["data"]] == [sent[101], sent[300], sent[150]]
            assert found["metadata"]["scan_complete"] is True
            assert found["metadata"]["next_cursor"] is None
            # over every name, and on the name itself
            big = (await search(expression="event.data.amount > 500")).json()["data"]
            assert [e["name"] for e in big] == ["es/nap"]
            named = "event.name == 'es/order' && event.data.amount == 100"
            assert [e["internal_id"] for e in (await search(expression=named)).json()["data"]] == [
                sent[100]
            ]
            # nothing matches: an empty page; a missing field is no match, not an error
            none = (await search(expression="event.data.amount > 10000")).json()
            assert none["data"] == []
            assert (await search(expression="event.data.missing == 1")).json()["data"] == []
            # pages of matches: limit, then the cursor
            page1 = (await search(expression="event.data.amount >= 100", limit=2)).json()
            assert [e["data"]["amount"] for e in page1["data"]] == [999, 100]
            cursor = page1["metadata"]["next_cursor"]
            page2 = (await search(expression="event.data.amount >= 100", cursor=cursor)).json()
            assert [e["data"]["amount"] for e in page2["data"]] == [101, 300, 150]
            # the scan limit: stops early, says so, and the cursor goes on from there
            part = (await search(expression="event.data.amount == 5", scan=2)).json()
            assert part["data"] == []
            assert part["metadata"]["scanned"] == 2
            assert part["metadata"]["scan_complete"] is False
            rest = await search(
                expression="event.data.amount == 5", cursor=part["metadata"]["next_cursor"]
            )
            assert [e["internal_id"] for e in rest.json()["data"]] == [sent[5]]
            # a parse error is a 400 with the parser's message
            bad = await search(expression="event.data.amount >")
            assert bad.status_code == 400
            assert bad.json()["error"].startswith("expression: ")
            assert "event.data.amount >" in bad.json()["error"]
            unknown = await search(expression="async.data.x == 1")
            assert unknown.status_code == 400
            assert "'async'" in unknown.json()["error"]
            for scan in ("0", "10001", "x", "²"):
                refused = await search(expression="true", scan=scan)
                assert refused.status_code == 400
                assert "scan" in refused.json()["error"]
            too_long = await search(expression="true || " * 300 + "true")
            assert too_long.status_code == 400

    arun(scenario())


def test_replay_an_event_sends_it_again_as_a_new_linked_event(db: str) -> None:
    async def scenario() -> None:
        async with api(db) as (_engine, http):
            CALLS.clear()
            original = await _send(http, "es/order", {"n": "r1", "amount": 42})
            first = await _run_of(http, original)
            answer = await http.post(f"/v1/events/{original}/replay")
            assert answer.status_code == 201, answer.text
            new = answer.json()["data"]["internal_id"]
            assert new != original
            assert answer.json()["data"]["replay_of"] == original
            again = await _run_of(http, new)
            assert again["run_id"] != first["run_id"]
            for run in (first, again):
                got = (await http.get(f"/v1/runs/{run['run_id']}", params={"wait": 20})).json()
                assert got["data"]["output"] == 42
            assert CALLS["r1"] == 2, "the function ran again for the replay"
            shown = (await http.get(f"/v1/events/{new}")).json()["data"]
            old = (await http.get(f"/v1/events/{original}")).json()["data"]
            assert shown["replay_of"] == original
            assert shown["name"] == old["name"] == "es/order"
            assert shown["data"] == old["data"] == {"n": "r1", "amount": 42}
            assert shown["id"] == new  # a fresh id: no event-id deduplication drops it
            assert old["replay_of"] is None
            assert old["replays"] == [new]
            listed = (await http.get("/v1/events", params={"name": "es/order"})).json()["data"]
            assert {e["internal_id"]: e["replay_of"] for e in listed} == {
                new: original,
                original: None,
            }
            # a replay of a replay names the one it re-sent
            third = (await http.post(f"/v1/events/{new}/replay")).json()["data"]["internal_id"]
            assert (await http.get(f"/v1/events/{third}")).json()["data"]["replay_of"] == new
            assert (await http.post("/v1/events/NOPE/replay")).status_code == 404
            invoked = first["event_ids"][0]
            assert invoked == original
            child = await _run_of(http, await _send(http, "es/parent"))
            [nap] = await await_until(
                lambda: _children(http, child["run_id"]), timeout=15, message="the child"
            )
            refused = await http.post(f"/v1/events/{nap['event_ids'][0]}/replay")
            assert refused.status_code == 409
            assert "inngest/function.invoked" in refused.json()["error"]

    arun(scenario())


async def _children(http: httpx.AsyncClient, parent_run_id: str) -> list[dict[str, Any]] | None:
    runs = (await _listed(http, function_id="es-nap"))["data"]
    found = [r for r in runs if r["parent_run_id"] == parent_run_id]
    return found or None


def test_a_waiting_step_becomes_the_runs_sub_state() -> None:
    from stepline.engine._http.run_list import step_waiting
    from stepline.engine._store.browsing import WaitingStep

    assert step_waiting([]) is None
    nap = WaitingStep("r", "nap", "Sleeping", {"until": 1_800_000_000.5})
    event = WaitingStep("r", "pay", "Waiting", {"event": "a/b", "if": None, "until": 0.0})
    signal = WaitingStep("r", "ok", "Waiting", {"signal": "go", "key": "go", "until": 0})
    child = WaitingStep("r", "kid", "Invoking", {"function_id": "app-f", "until": None})
    assert step_waiting([nap]) == {
        "reason": "sleeping",
        "step": "nap",
        "until": "2027-01-15T08:00:00.500Z",
    }
    assert step_waiting([event, nap]) == {
        "reason": "waiting_for_event",
        "step": "pay",
        "event": "a/b",
        "steps": 2,
    }
    assert step_waiting([signal]) == {"reason": "waiting_for_signal", "step": "ok", "signal": "go"}
    assert step_waiting([child]) == {
        "reason": "waiting_for_invoke",
        "step": "kid",
        "function_id": "app-f",
    }
