"""CommHandler POST (execution), driven through real requests: pydantic values, logging,
the Flask adapter, large payloads, routing and event shapes.

The other execution tests: ``test_comm_signatures``, ``test_comm_step_results`` and
``test_comm_planning`` (helpers in ``comm_calls``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import flask
import pydantic
import pytest

import stepline
import stepline.flask
from stepline._protocol import signing
from tests._support import refusing
from tests._support.stub_server import StubServer

from .comm_calls import (
    CHECKPOINT,
    EVENT,
    FALLBACK,
    KEY,
    KEY_HASH,
    body_for,
    call,
    decoded,
    make_client,
    memo,
    ops,
    serve,
    sha1,
    signed,
    three_steps,
)

# --- pydantic -----------------------------------------------------------------------


class Item(pydantic.BaseModel):
    name: str
    qty: int


def test_pydantic_step_output_is_json_and_revived_with_output_type() -> None:
    client = make_client()
    seen: list[object] = []

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> int:
        item = ctx.step.run("make", lambda: Item(name="bolt", qty=3), output_type=Item)
        seen.append(item)
        return item.qty * 2

    handler = serve(client, fn)
    [op] = ops(call(handler))
    assert op["data"] == {"name": "bolt", "qty": 3}

    done = call(handler, body=body_for(steps={sha1("make"): memo({"name": "bolt", "qty": 3})}))
    assert done.status == 200
    assert decoded(done) == 6
    [item] = seen
    assert isinstance(item, Item)
    assert item == Item(name="bolt", qty=3)


def test_checkpointed_step_value_matches_its_replayed_value() -> None:
    client = make_client()
    seen: list[object] = []

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> str:
        typed = ctx.step.run("typed", lambda: Item(name="a", qty=1), output_type=Item)
        plain = ctx.step.run("plain", lambda: Item(name="b", qty=2))
        seen.extend([typed, plain])
        return "ok"

    handler = serve(client, fn)
    reported = ops(call(handler, body=body_for(**CHECKPOINT)))
    assert [op["op"] for op in reported] == ["StepRun", "StepRun", "RunComplete"]
    steps = {sha1("typed"): memo(reported[0]["data"]), sha1("plain"): memo(reported[1]["data"])}
    assert call(handler, body=body_for(steps=steps)).status == 200
    # Run live (checkpointed) and replayed from memos, the function sees the same values.
    assert seen[:2] == seen[2:]
    assert seen[0] == Item(name="a", qty=1)
    assert seen[1] == {"name": "b", "qty": 2}


def test_pydantic_function_output_is_json() -> None:
    client = make_client()

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> Item:
        return Item(name="nut", qty=1)

    response = call(serve(client, fn))
    assert response.status == 200
    assert decoded(response) == {"name": "nut", "qty": 1}


def test_pydantic_event_data() -> None:
    event = stepline.Event(name="demo/item", data=Item(name="bolt", qty=3))
    wire = event.to_wire()
    assert wire == {"name": "demo/item", "data": {"name": "bolt", "qty": 3}}
    assert type(wire["data"]) is dict
    received = stepline.Event(name="demo/item", data={"name": "nut", "qty": 2})
    assert received.data_as(Item) == Item(name="nut", qty=2)


def test_event_data_as_model_inside_a_function() -> None:
    client = make_client()

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> str:
        return ctx.event.data_as(Item).name

    event = {**EVENT, "data": {"name": "washer", "qty": 9}}
    response = call(serve(client, fn), body=body_for(event=event))
    assert decoded(response) == "washer"


# --- logging ------------------------------------------------------------------------


def test_logger_is_silent_while_replaying(caplog: pytest.LogCaptureFixture) -> None:
    client = make_client(logger=logging.getLogger("stepline.tests.replay"))

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> str:
        ctx.logger.info("before a")
        ctx.step.run("a", lambda: 1)
        ctx.logger.info("between a and b")
        ctx.step.run("b", lambda: 2)
        ctx.logger.warning("after b")
        ctx.step.run("c", lambda: 3)
        return "done"

    handler = serve(client, fn)
    caplog.set_level(logging.INFO, logger="stepline.tests.replay")

    steps = {sha1("a"): memo(1), sha1("b"): memo(2)}
    assert call(handler, body=body_for(steps=steps)).status == 206
    messages = [r.getMessage() for r in caplog.records if r.name == "stepline.tests.replay"]
    assert messages == ["after b"]
    [record] = [r for r in caplog.records if r.name == "stepline.tests.replay"]
    assert record.run_id == "01JRUN000000000000000000000"  # type: ignore[attr-defined]

    caplog.clear()
    assert call(handler).status == 206  # nothing memoized: logs before the first step
    messages = [r.getMessage() for r in caplog.records if r.name == "stepline.tests.replay"]
    assert messages == ["before a"]


# --- through Flask ------------------------------------------------------------------


def test_flask_post_executes_like_the_handler() -> None:
    calls: list[str] = []
    client = make_client(is_production=True, signing_key=KEY, api_base_url=refusing.url())
    app = flask.Flask("execute")
    stepline.flask.serve(app, client, [three_steps(client, calls)])
    web = app.test_client()

    raw, headers = signed(body_for(steps={sha1("a"): memo(42)}), KEY)
    response = web.post(
        "/api/inngest?fnId=app-fn&stepId=step",
        data=raw,
        headers={**headers, "content-type": "application/json"},
    )
    assert response.status_code == 206
    [op] = response.get_json()
    assert op["id"] == sha1("b")
    assert op["data"] == 84
    assert response.headers["x-inngest-framework"] == "flask"
    assert signing.verify(
        response.get_data(), response.headers["x-inngest-signature"], [KEY], now=time.time()
    )
    assert calls == ["b"]

    unsigned = web.post("/api/inngest?fnId=app-fn&stepId=step", json=body_for())
    assert unsigned.status_code == 401
    assert unsigned.get_json()["code"] == "sig_verification_failed"

    probe = web.post("/api/inngest?probe=trust", headers=signed(body_for(), KEY)[1])
    assert probe.status_code == 401  # signed over another body
    assert calls == ["b"]


# --- large payloads, routing, event shapes ------------------------------------------


@pytest.mark.slow
def test_use_api_loads_events_and_memos_from_the_engine(stub_server: StubServer) -> None:
    big_event = {**EVENT, "data": {"n": 99}}

    def answer(record: dict[str, Any]) -> tuple[int, Any]:
        if record["path"].endswith("/batch"):
            return 200, [big_event]
        return 200, {sha1("a"): memo(100)}

    stub_server.answer = answer
    calls: list[str] = []
    client = make_client(is_production=True, signing_key=KEY, api_base_url=stub_server.url)
    handler = serve(client, three_steps(client, calls))
    body = body_for(event={**EVENT, "data": {}}, use_api=True)
    body["use_api"] = True
    body["events"] = []
    raw, headers = signed(body, KEY)
    [op] = ops(call(handler, body=raw, headers=headers))
    assert op["id"] == sha1("b")
    assert op["data"] == 200  # from the memo fetched for "a"
    assert calls == ["b"]
    paths = sorted(r["path"] for r in stub_server.requests)
    run = "01JRUN000000000000000000000"
    assert paths == [f"/v0/runs/{run}/actions", f"/v0/runs/{run}/batch"]
    for record in stub_server.requests:
        assert record["method"] == "GET"
        assert record["headers"]["authorization"] == f"Bearer {KEY_HASH}"


@pytest.mark.slow
def test_use_api_failure_is_500(stub_server: StubServer) -> None:
    stub_server.answer = lambda _req: (410, {"error": "gone"})
    calls: list[str] = []
    client = make_client(api_base_url=stub_server.url)
    handler = serve(client, three_steps(client, calls))
    body = body_for(use_api=True)
    body["use_api"] = True
    response = call(handler, body=body)
    assert response.status == 500
    assert "410" in decoded(response)["message"]
    assert calls == []


def test_on_failure_handler_is_routed_by_its_own_id() -> None:
    client = make_client()
    seen: list[dict[str, Any]] = []

    def on_failure(ctx: stepline.SyncContext) -> str:
        seen.append(dict(ctx.event.data))  # type: ignore[arg-type]
        return "handled"

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"), on_failure=on_failure)
    def fn(ctx: stepline.SyncContext) -> None:
        raise AssertionError("the main function must not run")

    failed = {
        "name": "inngest/function.failed",
        "data": {"function_id": "app-fn", "error": {"message": "boom"}},
        "id": "01JFAILED",
        "ts": 1_700_000_000_000,
    }
    response = call(serve(client, fn), "fn-failure", body_for(event=failed))
    assert response.status == 200
    assert decoded(response) == "handled"
    assert seen == [failed["data"]]


def test_null_event_data_is_an_empty_object() -> None:
    client = make_client()

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> dict[str, Any]:
        return {"data": dict(ctx.event.data), "count": len(ctx.events)}  # type: ignore[arg-type]

    body = body_for(event={**EVENT, "data": None})
    del body["events"]
    response = call(serve(client, fn), body=body)
    assert decoded(response) == {"data": {}, "count": 1}


@pytest.mark.slow
def test_use_api_retries_with_the_fallback_key(stub_server: StubServer) -> None:
    fallback_hash = signing.hash_signing_key(FALLBACK)

    def answer(record: dict[str, Any]) -> tuple[int, Any]:
        if record["headers"].get("authorization") != f"Bearer {fallback_hash}":
            return 401, {"error": "unauthorized"}
        if record["path"].endswith("/batch"):
            return 200, [EVENT]
        return 200, {sha1("a"): memo(42)}

    stub_server.answer = answer
    calls: list[str] = []
    client = make_client(
        is_production=True,
        signing_key=KEY,
        signing_key_fallback=FALLBACK,
        api_base_url=stub_server.url,
    )
    handler = serve(client, three_steps(client, calls))
    body = body_for(use_api=True)
    body["use_api"] = True
    raw, headers = signed(body, KEY)
    response = call(handler, body=raw, headers=headers)
    assert response.status == 206, response.body
    assert calls == ["b"]
