"""Non-determinism detection in the SDK: the header, the log line and the ``fail`` policy.

Each test replays crafted history (memos and ``ctx.stack``) against changed code through
a real ``CommHandler``, as the engine would after a deploy.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from typing import Any

import pytest

import stepline
from stepline._comm import CommHandler, CommRequest, CommResponse
from stepline._execution.divergence import ReplayTracker

from .comm_calls import CHECKPOINT, URL, body_for, call, decoded, make_client, memo, serve, sha1

HEADER = "x-stepline-nondeterminism"
EVENT = stepline.TriggerEvent(event="demo/go")


def history(*entries: tuple[str, Any]) -> dict[str, Any]:
    """Memos recorded in this (completion) order: ``body_for`` takes it as the stack."""
    return {sha1(step_id): value for step_id, value in entries}


def diverged(response: CommResponse) -> dict[str, Any] | None:
    raw = response.headers.get(HEADER)
    return None if raw is None else json.loads(raw)


def ids(*step_ids: str) -> list[str]:
    return [sha1(s) for s in step_ids]


def renamed(client: stepline.Client, ran: list[str]) -> stepline.Function:
    """v2 of ``one`` → sleep ``wait`` → ``two``: the first step is now called ``uno``."""

    @client.function(id="fn", trigger=EVENT)
    def fn(ctx: stepline.SyncContext) -> str:
        ctx.step.run("uno", lambda: ran.append("uno") or 1)
        ctx.step.sleep("wait", "1h")
        return ctx.step.run("two", lambda: ran.append("two") or "done")

    return fn


V1_HISTORY = history(("one", memo(1)), ("wait", None))


def test_renamed_first_step_reports_missing_and_new() -> None:
    ran: list[str] = []
    handler = serve(make_client(), renamed(make_client(), ran))
    response = call(handler, body=body_for(steps=V1_HISTORY))
    assert response.status == 206
    # The call stops at the new step, so the sleep after it is not reached either.
    assert diverged(response) == {
        "policy": "warn",
        "missing": ids("one", "wait"),
        "reordered": [],
        "new": ids("uno"),
    }
    assert ran == ["uno"], "warn: the run goes on"


def test_renamed_first_step_under_checkpointing() -> None:
    ran: list[str] = []
    handler = serve(make_client(), renamed(make_client(), ran))
    response = call(handler, body=body_for(steps=V1_HISTORY, **CHECKPOINT))
    ops = decoded(response)
    assert [op["op"] for op in ops] == ["StepRun", "StepRun", "RunComplete"]
    # The call goes on past the new step: the sleep is reached, after a step that is new.
    assert diverged(response) == {
        "policy": "warn",
        "missing": ids("one"),
        "reordered": ids("wait"),
        "new": ids("uno", "two"),
    }


def test_swapped_steps_are_reordered() -> None:
    client = make_client()

    @client.function(id="fn", trigger=EVENT)
    def fn(ctx: stepline.SyncContext) -> None:
        ctx.step.run("b", lambda: "b")
        ctx.step.run("a", lambda: "a")
        ctx.step.run("c", lambda: "c")

    steps = history(("a", memo("a")), ("b", memo("b")))
    response = call(serve(client, fn), body=body_for(steps=steps))
    assert diverged(response) == {
        "policy": "warn",
        "missing": [],
        "reordered": ids("a", "b"),  # in recorded order
        "new": ids("c"),
    }


def test_a_step_inserted_before_recorded_progress_is_flagged_with_checkpointing() -> None:
    """The memo reached after a new step was recorded before it: out of order."""
    client = make_client()

    @client.function(id="fn", trigger=EVENT)
    def fn(ctx: stepline.SyncContext) -> None:
        ctx.step.run("a", lambda: "a")
        ctx.step.run("inserted", lambda: "x")
        ctx.step.sleep("wait", "1h")
        ctx.step.run("b", lambda: "b")

    steps = history(("a", memo("a")), ("wait", None))
    response = call(serve(client, fn), body=body_for(steps=steps, **CHECKPOINT))
    assert diverged(response) == {
        "policy": "warn",
        "missing": [],
        "reordered": ids("wait"),
        "new": ids("inserted", "b"),
    }


def test_appended_steps_are_not_divergence() -> None:
    client = make_client()

    @client.function(id="fn", trigger=EVENT)
    def fn(ctx: stepline.SyncContext) -> None:
        ctx.step.run("a", lambda: "a")
        ctx.step.sleep("wait", "1h")
        ctx.step.run("b", lambda: "b")
        ctx.step.run("appended", lambda: "c")

    steps = history(("a", memo("a")), ("wait", None), ("b", memo("b")))
    handler = serve(client, fn)
    for body in (body_for(steps=steps), body_for(steps=steps, **CHECKPOINT)):
        response = call(handler, body=body)
        assert response.status == 206
        assert diverged(response) is None


def test_parallel_groups_complete_in_any_order() -> None:
    client = make_client()

    @client.function(id="fn", trigger=EVENT)
    def fn(ctx: stepline.SyncContext) -> None:
        ctx.step.run("before", lambda: 0)

        def first() -> int:
            ctx.step.run("x1", lambda: 1)
            return ctx.step.run("x2", lambda: 2)

        def second() -> int:
            return ctx.step.parallel([lambda: ctx.step.run("y", lambda: 3)])[0]

        ctx.step.parallel([first, second, lambda: ctx.step.run("z", lambda: 4)])
        ctx.step.run("after", lambda: 5)

    # x2 finished last although reached second: the group's steps are not compared.
    steps = history(
        ("before", memo(0)), ("z", memo(4)), ("x1", memo(1)), ("y", memo(3)), ("x2", memo(2))
    )
    handler = serve(client, fn)
    response = call(handler, body=body_for(steps=steps))
    assert [op["displayName"] for op in decoded(response)] == ["after"]
    assert diverged(response) is None
    # Mid-group: a branch plans its next step while the other branches replay.
    partial = history(("before", memo(0)), ("z", memo(4)), ("x1", memo(1)))
    response = call(handler, body=body_for(steps=partial))
    assert sorted(op["displayName"] for op in decoded(response)) == ["x2", "y"]
    assert diverged(response) is None


def test_a_step_moved_out_of_a_parallel_group_is_reordered() -> None:
    client = make_client()

    @client.function(id="fn", trigger=EVENT)
    def fn(ctx: stepline.SyncContext) -> None:
        ctx.step.run("y", lambda: 2)
        ctx.step.parallel([lambda: ctx.step.run("x", lambda: 1)])
        ctx.step.run("after", lambda: 3)

    steps = history(("x", memo(1)), ("y", memo(2)))
    response = call(serve(client, fn), body=body_for(steps=steps))
    assert diverged(response) == {
        "policy": "warn",
        "missing": [],
        "reordered": ids("x", "y"),
        "new": ids("after"),
    }


def test_race_groups_are_not_ordered() -> None:
    client = make_client()

    @client.function(id="fn", trigger=EVENT)
    def fn(ctx: stepline.SyncContext) -> None:
        ctx.step.parallel(
            [lambda: ctx.step.run("fast", lambda: 1), lambda: ctx.step.run("slow", lambda: 2)],
            mode="race",
        )
        ctx.step.run("after", lambda: 3)

    # The slow branch ended after the step that followed the race.
    steps = history(("fast", memo(1)), ("after", memo(3)), ("slow", memo(2)))
    response = call(serve(client, fn), body=body_for(steps=steps))
    assert response.status == 200
    assert diverged(response) is None


def test_failed_step_memos_waits_and_invokes_replay_without_alarm() -> None:
    client = make_client()

    @client.function(id="child", trigger=EVENT)
    def child(ctx: stepline.SyncContext) -> int:
        return 1

    @client.function(id="fn", trigger=EVENT)
    def fn(ctx: stepline.SyncContext) -> str:
        with contextlib.suppress(stepline.StepError):
            ctx.step.run("flaky", lambda: 1)
        ctx.step.wait_for_event("wait", event="demo/never", timeout="1h")
        ctx.step.invoke("child", function=child)
        return ctx.step.run("last", lambda: "done")

    steps = history(
        ("flaky", {"error": {"name": "ValueError", "message": "no"}}),
        ("wait", None),
        ("child", memo(1)),
    )
    response = call(serve(client, child, fn), body=body_for(steps=steps))
    assert response.status == 206
    assert diverged(response) is None


def test_targeted_calls_are_not_checked() -> None:
    client = make_client()

    @client.function(id="fn", trigger=EVENT)
    def fn(ctx: stepline.SyncContext) -> None:
        ctx.step.parallel(
            [lambda: ctx.step.run("x", lambda: 1), lambda: ctx.step.run("y", lambda: 2)]
        )

    # Runs "x" and stops there: "y"'s memo is never reached, by design.
    steps = history(("y", memo(2)))
    body = body_for(steps=steps, step_id=sha1("x"))
    response = call(serve(client, fn), body=body, step_id=sha1("x"))
    assert [op["displayName"] for op in decoded(response)] == ["x"]
    assert diverged(response) is None


def test_deprecate_patch_consumes_the_marker() -> None:
    client = make_client()

    @client.function(id="kept", trigger=EVENT)
    def kept(ctx: stepline.SyncContext) -> None:
        ctx.deprecate_patch("new-path")
        ctx.step.run("a", lambda: 1)
        ctx.step.run("b", lambda: 2)

    @client.function(id="dropped", trigger=EVENT)
    def dropped(ctx: stepline.SyncContext) -> None:
        ctx.step.run("a", lambda: 1)
        ctx.step.run("b", lambda: 2)

    steps = history(("patched:new-path", memo(True)), ("a", memo(1)))
    handler = serve(client, kept, dropped)
    response = call(handler, "kept", body=body_for(steps=steps))
    assert [op["displayName"] for op in decoded(response)] == ["b"]
    assert diverged(response) is None
    response = call(handler, "dropped", body=body_for(steps=steps))
    assert diverged(response) == {
        "policy": "warn",
        "missing": ids("patched:new-path"),
        "reordered": [],
        "new": ids("b"),
    }


def test_fail_policy_ends_the_run_before_new_code_runs(caplog: pytest.LogCaptureFixture) -> None:
    ran: list[str] = []
    client = make_client()

    @client.function(id="fn", trigger=EVENT, nondeterminism="fail")
    def fn(ctx: stepline.SyncContext) -> str:
        try:
            ctx.step.run("uno", lambda: ran.append("uno") or 1)
        except Exception:  # the SDK's control flow is not an Exception: not swallowed
            ran.append("caught")
        return "done"

    handler = serve(client, fn)
    with caplog.at_level(logging.WARNING, logger="stepline"):
        response = call(handler, body=body_for(steps=V1_HISTORY, **CHECKPOINT))
    assert ran == []
    assert response.status == 500
    assert response.headers["x-inngest-no-retry"] == "true"
    error = decoded(response)
    assert error["name"] == "NonDeterminismError"
    assert error["code"] == "non_determinism"
    assert '"uno"' in error["message"]
    assert sha1("one") in error["message"]  # a recorded step: only its hashed id is known
    assert "ctx.patched" in error["message"]
    assert "docs/versioning.md" in error["message"]
    assert diverged(response) == {
        "policy": "fail",
        "missing": ids("one", "wait"),
        "reordered": [],
        "new": ids("uno"),
    }
    [record] = [r for r in caplog.records if r.name == "stepline"]
    assert record.levelno == logging.WARNING
    line = record.getMessage()
    assert '"app-fn"' in line
    assert "01JRUN000000000000000000000" in line
    assert '"uno"' in line
    assert sha1("one") in line


def test_fail_policy_on_a_reorder_only_replay() -> None:
    client = make_client()

    @client.function(id="fn", trigger=EVENT, nondeterminism="fail")
    def fn(ctx: stepline.SyncContext) -> str:
        ctx.step.run("b", lambda: "b")
        ctx.step.run("a", lambda: "a")
        return "done"

    steps = history(("a", memo("a")), ("b", memo("b")))
    response = call(serve(client, fn), body=body_for(steps=steps))
    assert response.status == 500
    assert decoded(response)["name"] == "NonDeterminismError"
    assert diverged(response) == {
        "policy": "fail",
        "missing": [],
        "reordered": ids("a", "b"),
        "new": [],
    }


def test_warn_is_logged_once_and_matching_replays_log_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client()
    handler = serve(client, renamed(client, []))
    with caplog.at_level(logging.WARNING, logger="stepline"):
        call(handler, body=body_for(steps=history(("uno", memo(1)))))
        assert caplog.records == []
        call(handler, body=body_for(steps=V1_HISTORY))
    [record] = caplog.records
    assert "the run goes on" in record.getMessage()


def test_async_face_and_streamed_answers_carry_the_header() -> None:
    client = make_client()

    @client.function(id="fn", trigger=EVENT)
    async def fn(ctx: stepline.Context) -> str:
        await ctx.step.run("uno", lambda: 1)
        await ctx.step.sleep("wait", "1h")
        return "done"

    body = json.dumps(body_for(steps=V1_HISTORY)).encode()
    request = CommRequest.build(
        method="POST", url=URL + "?fnId=app-fn&stepId=step", headers={}, body=body
    )
    expected = {"policy": "warn", "missing": ids("one", "wait"), "reordered": [], "new": ids("uno")}
    response = asyncio.run(serve(client, fn).handle(request))
    assert diverged(response) == expected

    async def streamed() -> dict[str, Any]:
        handler: CommHandler = serve(client, fn, streaming="force")
        answer = await handler.handle(request)
        assert answer.stream is not None
        chunks = [chunk async for chunk in answer.stream]
        envelope: dict[str, Any] = json.loads(b"".join(chunks).strip())
        return envelope

    assert json.loads(asyncio.run(streamed())["headers"][HEADER]) == expected


def test_policy_and_versioning_options_are_validated_and_configured() -> None:
    client = make_client()

    @client.function(id="pinned", trigger=EVENT, versioning="pinned", nondeterminism="fail")
    def pinned(ctx: stepline.SyncContext) -> None: ...

    @client.function(id="latest", trigger=EVENT, versioning="latest")
    def latest(ctx: stepline.SyncContext) -> None: ...

    @client.function(id="default", trigger=EVENT)
    def default(ctx: stepline.SyncContext) -> None: ...

    [config] = pinned.configs(URL)
    assert config["versioning"] == "pinned"
    assert "nondeterminism" not in config
    assert latest.configs(URL)[0]["versioning"] == "latest"
    assert "versioning" not in default.configs(URL)[0]
    assert default.options.nondeterminism == "warn"
    with pytest.raises(stepline.ConfigError, match=r'function "bad": .*versioning.*sometimes'):
        client.function(id="bad", trigger=EVENT, versioning="sometimes")  # type: ignore[arg-type]
    with pytest.raises(stepline.ConfigError, match=r'function "bad": .*nondeterminism'):
        client.function(id="bad", trigger=EVENT, nondeterminism="ignore")  # type: ignore[arg-type]


@pytest.mark.parametrize("order", list(itertools.permutations("abcd")))
def test_the_in_order_shortcut_gives_the_full_verdict(order: tuple[str, ...]) -> None:
    # a plain sequence reached in recorded order skips the reorder pass; every other
    # order must still get the full pass's verdict, with or without a group
    def verdict(shortcut: bool, grouped: bool) -> object:
        tracker = ReplayTracker("abcd", set("abcd"), "warn")
        if not shortcut:
            tracker._in_order = False  # the full pass, for comparison
        for n, hashed_id in enumerate(order):
            if grouped and n == 2:
                tracker.enter_group(race=False)
            tracker.reached(hashed_id, hashed_id.upper())
        if grouped:
            tracker.exit_group()
        result = tracker.result(returned=True)
        return None if result is None else result.reordered

    for grouped in (False, True):
        assert verdict(True, grouped) == verdict(False, grouped)
    assert (verdict(True, False) is None) == (order == tuple("abcd"))
