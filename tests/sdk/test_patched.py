"""``ctx.patched`` and ``ctx.deprecate_patch`` against crafted replays (no engine)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import stepline
from stepline._comm import CommRequest

from .comm_calls import (
    CHECKPOINT,
    RUN_COMPLETE_ID,
    URL,
    body_for,
    call,
    decoded,
    make_client,
    memo,
    serve,
    sha1,
)

EVENT = stepline.TriggerEvent(event="demo/go")
MARKER = sha1("patched:new-path")


def patched_fn(client: stepline.Client, seen: list[bool]) -> stepline.Function:
    @client.function(id="fn", trigger=EVENT)
    def fn(ctx: stepline.SyncContext) -> str:
        ctx.step.run("a", lambda: "a")
        taken = ctx.patched("new-path")
        seen.append(taken)
        if taken:
            ctx.step.run("new", lambda: "new")
        else:
            ctx.step.run("old", lambda: "old")
        ctx.step.sleep("wait", "1h")
        return "new" if taken else "old"

    return fn


def test_a_run_reaching_the_patch_first_takes_the_new_branch_and_records_it() -> None:
    seen: list[bool] = []
    handler = serve(make_client(), patched_fn(make_client(), seen))
    [op] = decoded(call(handler, body=body_for(steps={sha1("a"): memo("a")})))
    assert op == {
        "displayName": "patched: new-path",
        "id": MARKER,
        "name": "patched:new-path",
        "op": "StepRun",
        "opts": None,
        "userland": {"id": "patched:new-path", "index": None},
        "data": True,
    }
    assert seen == [], "the call ends to record the answer: the code goes on next call"
    # The recorded answer wins from then on, whatever is ahead.
    steps = {sha1("a"): memo("a"), MARKER: memo(True), sha1("new"): memo("new")}
    [op] = decoded(call(handler, body=body_for(steps=steps)))
    assert op["displayName"] == "wait"
    assert seen == [True]


def test_a_run_with_progress_past_the_patch_takes_the_old_branch_and_records_it() -> None:
    seen: list[bool] = []
    handler = serve(make_client(), patched_fn(make_client(), seen))
    v1 = {sha1("a"): memo("a"), sha1("old"): memo("old"), sha1("wait"): None}
    [op] = decoded(call(handler, body=body_for(steps=v1)))
    assert (op["id"], op["data"]) == (MARKER, False)
    assert seen == []
    # Recorded False: the run finishes on the old path, and no replay is flagged.
    response = call(handler, body=body_for(steps={**v1, MARKER: memo(False)}))
    assert response.status == 200
    assert decoded(response) == "old"
    assert "x-stepline-nondeterminism" not in response.headers


def test_checkpointing_records_the_answer_without_an_extra_call() -> None:
    seen: list[bool] = []
    handler = serve(make_client(), patched_fn(make_client(), seen))
    response = call(handler, body=body_for(**CHECKPOINT))
    ops = decoded(response)
    assert [(op["displayName"], op["data"]) for op in ops] == [
        ("a", "a"),
        ("patched: new-path", True),
        ("new", "new"),
        ("wait", None),
    ]
    assert ops[-1]["op"] == "Sleep"
    # On a v1 run the False answer rides along with the old path's steps.
    v1 = {sha1("a"): memo("a"), sha1("old"): memo("old"), sha1("wait"): None}
    response = call(handler, body=body_for(steps=v1, **CHECKPOINT))
    assert [(op["op"], op["data"]) for op in decoded(response)] == [
        ("StepRun", False),
        ("RunComplete", "old"),
    ]
    assert "x-stepline-nondeterminism" not in response.headers


def test_a_targeted_call_answers_false_without_recording() -> None:
    client = make_client()
    seen: list[bool] = []

    @client.function(id="fn", trigger=EVENT)
    def fn(ctx: stepline.SyncContext) -> None:
        seen.append(ctx.patched("new-path"))
        ctx.step.parallel([lambda: ctx.step.run("x", lambda: 1)])

    response = call(serve(client, fn), body=body_for(step_id=sha1("x")), step_id=sha1("x"))
    assert [op["displayName"] for op in decoded(response)] == ["x"]
    assert seen == [False]


def test_the_same_change_id_answers_once_per_call() -> None:
    client = make_client()
    seen: list[bool] = []

    @client.function(id="fn", trigger=EVENT)
    def fn(ctx: stepline.SyncContext) -> None:
        for _ in range(3):
            seen.append(ctx.patched("new-path"))
        ctx.step.run("a", lambda: 1)

    ops = decoded(call(serve(client, fn), body=body_for(**CHECKPOINT)))
    assert [op["id"] for op in ops] == [MARKER, sha1("a"), RUN_COMPLETE_ID]
    assert seen == [True, True, True]


def test_a_patch_in_a_parallel_branch_is_reported_with_the_planned_steps() -> None:
    client = make_client()

    @client.function(id="fn", trigger=EVENT)
    def fn(ctx: stepline.SyncContext) -> None:
        def branch() -> Any:
            if ctx.patched("new-path"):
                return ctx.step.run("x", lambda: 1)
            return None

        ctx.step.parallel([branch, lambda: ctx.step.run("y", lambda: 2)])

    ops = decoded(call(serve(client, fn), body=body_for(**CHECKPOINT)))
    assert [(op["op"], op["displayName"]) for op in ops] == [
        ("StepRun", "patched: new-path"),
        ("StepPlanned", "y"),
    ]


def test_invalid_and_nested_uses_fail_the_step_or_function() -> None:
    client = make_client()

    @client.function(id="empty", trigger=EVENT)
    def empty(ctx: stepline.SyncContext) -> None:
        ctx.patched("")

    @client.function(id="nested", trigger=EVENT)
    def nested(ctx: stepline.SyncContext) -> None:
        ctx.step.run("outer", lambda: ctx.patched("new-path"))

    handler = serve(client, empty, nested)
    response = call(handler, "empty")
    assert response.status == 500
    assert "change id" in decoded(response)["message"]
    [op] = decoded(call(handler, "nested"))
    assert (op["op"], op["error"]["code"]) == ("StepFailed", "step_nested")


def test_async_face_is_not_awaited() -> None:
    client = make_client()

    @client.function(id="fn", trigger=EVENT)
    async def fn(ctx: stepline.Context) -> str:
        ctx.deprecate_patch("old-change")
        if ctx.patched("new-path"):
            return await ctx.step.run("new", lambda: "new")
        return "old"

    body = json.dumps(body_for(steps={sha1("patched:old-change"): memo(True)}, **CHECKPOINT))
    request = CommRequest.build(
        method="POST", url=URL + "?fnId=app-fn&stepId=step", headers={}, body=body.encode()
    )
    response = asyncio.run(serve(client, fn).handle(request))
    ops = decoded(response)
    assert [(op["op"], op["data"]) for op in ops] == [
        ("StepRun", True),
        ("StepRun", "new"),
        ("RunComplete", "new"),
    ]
    assert "x-stepline-nondeterminism" not in response.headers


@pytest.mark.parametrize("value", [True, False])
def test_official_sdk_style_memos_are_read_as_the_answer(value: bool) -> None:
    """A marker is an ordinary memoized step on the wire: ``{"data": <bool>}``."""
    seen: list[bool] = []
    handler = serve(make_client(), patched_fn(make_client(), seen))
    steps = {sha1("a"): memo("a"), MARKER: {"data": value}}
    [op] = decoded(call(handler, body=body_for(steps=steps)))
    assert op["displayName"] == ("new" if value else "old")
    assert seen == [value]
