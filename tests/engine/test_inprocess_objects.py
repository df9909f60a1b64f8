"""A sync function served in process gets each call as an object, and its own copy of it.

The calls a run makes on the SDK's thread (``_flow.onthread``) hand the SDK the request
as an object (``CommHandler.call_in_process``): no JSON body is written and parsed back.
The run's events and memos are copied for each call, so what a function does to what it
is given (a step's list it appends to, the event's data it edits) reaches neither the
engine's copy of the run's steps, which the next call is built from, nor the database.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

import stepline
from stepline._protocol.execution import ExecutionRequest
from stepline.engine import RunStatus
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.engines import finished, only_run, running


def test_a_call_in_process_parses_no_body(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[bytes] = []
    parse = ExecutionRequest.parse.__func__  # type: ignore[attr-defined]

    def counted(cls: type[ExecutionRequest], body: bytes) -> ExecutionRequest:
        parsed.append(body)
        result: ExecutionRequest = parse(cls, body)
        return result

    monkeypatch.setattr(ExecutionRequest, "parse", classmethod(counted))
    client = dev_client(checkpointing=False)

    @client.function(id="three", trigger=stepline.TriggerEvent(event="t/three"), retries=0)
    def three(ctx: stepline.SyncContext) -> object:
        total = 0
        for i in range(3):
            total += ctx.step.run(f"s{i}", lambda i=i: i + 1)
        return total

    async def scenario() -> None:
        async with running(db, apps=[(client, [three])], checkpointing=False) as engine:
            await engine.send({"name": "t/three", "data": {}})
            run = await finished(engine, await only_run(engine, "t-three"))
            assert run.status is RunStatus.COMPLETED
            assert json.loads(run.output or "") == 6

    arun(scenario())
    assert parsed == [], "every call of the run was handed over as an object"


def test_what_a_function_does_to_its_state_stays_in_its_call(db: str) -> None:
    client = dev_client(checkpointing=False)
    seen: list[Any] = []

    @client.function(id="edits", trigger=stepline.TriggerEvent(event="t/edits"), retries=0)
    def edits(ctx: stepline.SyncContext) -> object:
        items = ctx.step.run("items", lambda: [1])
        items.append(9)  # each call replays ``items``: it must start from [1] every time
        ctx.event.data.setdefault("marks", []).append("x")
        seen.append(list(ctx.event.data["marks"]))
        first = ctx.step.run("first", lambda: len(items))
        second = ctx.step.run("second", lambda: len(items))
        return [first, second]

    async def scenario() -> None:
        async with running(db, apps=[(client, [edits])], checkpointing=False) as engine:
            await engine.send({"name": "t/edits", "data": {"k": 1}})
            run_id = await only_run(engine, "t-edits")
            run = await finished(engine, run_id)
            assert run.status is RunStatus.COMPLETED
            assert json.loads(run.output or "") == [2, 2]
            steps = {s.name: s.memo for s in await engine.run_steps(run_id)}
            assert steps["items"] == {"data": [1]}
            stored = await engine.get_run(run_id)
            assert stored is not None
            assert stored.events[0]["data"] == {"k": 1}

    arun(scenario())
    assert len(seen) == 3, seen  # the calls after the first (which stops at "items")
    assert all(marks == ["x"] for marks in seen), seen
