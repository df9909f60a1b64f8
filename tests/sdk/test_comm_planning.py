"""CommHandler POST: planning, targeting, parallel steps and checkpointing."""

from __future__ import annotations

import datetime as dt

import stepline
import stepline.flask
from stepline import _settings

from .comm_calls import (
    CHECKPOINT,
    RUN_COMPLETE_ID,
    body_for,
    call,
    decoded,
    make_client,
    memo,
    ops,
    recorder,
    serve,
    sha1,
    three_steps,
)

# --- planning, targeting, parallel --------------------------------------------------


def test_disable_immediate_execution_plans_the_step() -> None:
    calls: list[str] = []
    client = make_client()
    handler = serve(client, three_steps(client, calls))
    [op] = ops(call(handler, body=body_for(disable_immediate_execution=True)))
    assert op["op"] == "StepPlanned"
    assert op["id"] == sha1("a")
    assert op["data"] is None
    assert calls == []


def parallel_fn(client: stepline.Client, calls: list[str], mode: str = "wait") -> stepline.Function:
    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> list[str]:
        results = ctx.step.parallel(
            [
                lambda: ctx.step.run("p-a", recorder(calls, "p-a", "A")),
                lambda: ctx.step.run("p-b", recorder(calls, "p-b", "B")),
            ],
            mode=mode,  # type: ignore[arg-type]
        )
        return list(results)

    return fn


def test_parallel_discovery_plans_every_branch() -> None:
    calls: list[str] = []
    client = make_client()
    response = call(serve(client, parallel_fn(client, calls)))
    planned = ops(response)
    assert [(op["op"], op["id"]) for op in planned] == [
        ("StepPlanned", sha1("p-a")),
        ("StepPlanned", sha1("p-b")),
    ]
    assert all(op["opts"] is None for op in planned)
    assert calls == []


def test_parallel_race_mode_is_reported() -> None:
    calls: list[str] = []
    client = make_client()
    planned = ops(call(serve(client, parallel_fn(client, calls, "race"))))
    assert [op["op"] for op in planned] == ["StepPlanned", "StepPlanned"]
    assert [op["opts"] for op in planned] == [{"parallelMode": "race"}] * 2
    assert calls == []


def test_targeting_runs_only_the_targeted_step() -> None:
    calls: list[str] = []
    client = make_client()
    handler = serve(client, parallel_fn(client, calls))
    [op] = ops(call(handler, step_id=sha1("p-b")))
    assert op["op"] == "StepRun"
    assert op["id"] == sha1("p-b")
    assert op["data"] == "B"
    assert calls == ["p-b"]

    # The query's stepId wins over ctx.step_id.
    [op] = ops(call(handler, body=body_for(step_id="step"), step_id=sha1("p-a")))
    assert op["id"] == sha1("p-a")
    assert calls == ["p-b", "p-a"]


def test_targeting_with_a_new_step_outside_a_parallel_group_is_step_unexpected() -> None:
    calls: list[str] = []
    client = make_client()
    handler = serve(client, three_steps(client, calls))
    response = call(handler, step_id=sha1("b"))
    assert response.status == 500
    body = decoded(response)
    assert body["code"] == "step_unexpected"
    assert body["name"] == "StepUnexpectedError"
    assert '"a"' in body["message"]
    assert "x-inngest-no-retry" not in response.headers
    assert calls == []


def test_targeting_after_memos_runs_the_target() -> None:
    calls: list[str] = []
    client = make_client()
    handler = serve(client, three_steps(client, calls))
    [op] = ops(call(handler, body=body_for(steps={sha1("a"): memo(42)}), step_id=sha1("b")))
    assert op["id"] == sha1("b")
    assert op["data"] == 84
    assert calls == ["b"]


def test_targeting_ignores_disable_immediate_execution() -> None:
    calls: list[str] = []
    client = make_client()
    handler = serve(client, parallel_fn(client, calls))
    body = body_for(disable_immediate_execution=True)
    [op] = ops(call(handler, body=body, step_id=sha1("p-a")))
    assert (op["op"], op["data"]) == ("StepRun", "A")
    assert calls == ["p-a"]


def test_parallel_with_one_branch_memoized_plans_only_the_other() -> None:
    calls: list[str] = []
    client = make_client()
    handler = serve(client, parallel_fn(client, calls))
    [op] = ops(call(handler, body=body_for(steps={sha1("p-a"): memo("A")})))
    assert (op["op"], op["id"]) == ("StepPlanned", sha1("p-b"))
    done = call(handler, body=body_for(steps={sha1("p-a"): memo("A"), sha1("p-b"): memo("B")}))
    assert done.status == 200
    assert decoded(done) == ["A", "B"]
    assert calls == []


def test_engine_ops_in_a_parallel_group_keep_their_opcode() -> None:
    client = make_client()

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> None:
        ctx.step.parallel(
            [
                lambda: ctx.step.sleep("nap", dt.timedelta(seconds=5)),
                lambda: ctx.step.run("work", lambda: 1),
            ]
        )

    reported = ops(call(serve(client, fn)))
    assert [(op["op"], op["id"]) for op in reported] == [
        ("Sleep", sha1("nap")),
        ("StepPlanned", sha1("work")),
    ]


# --- checkpointing ------------------------------------------------------------------


def test_checkpointing_runs_every_step_in_one_request() -> None:
    calls: list[str] = []
    client = make_client()
    handler = serve(client, three_steps(client, calls))
    response = call(handler, body=body_for(**CHECKPOINT))
    reported = ops(response)
    assert [op["op"] for op in reported] == ["StepRun", "StepRun", "StepRun", "RunComplete"]
    assert [op["id"] for op in reported[:3]] == [sha1("a"), sha1("b"), sha1("c")]
    assert [op["data"] for op in reported[:3]] == [42, 84, "result=84"]
    assert reported[3]["id"] == RUN_COMPLETE_ID
    assert reported[3]["data"] == {"a": 42, "b": 84, "c": "result=84"}
    assert calls == ["a", "b", "c"]


def test_checkpointing_stops_at_an_async_op() -> None:
    client = make_client()
    calls: list[str] = []

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> str:
        ctx.step.run("a", recorder(calls, "a", 1))
        ctx.step.run("b", recorder(calls, "b", 2))
        ctx.step.sleep("nap", dt.timedelta(minutes=5))
        ctx.step.run("c", recorder(calls, "c", 3))
        return "done"

    reported = ops(call(serve(client, fn), body=body_for(**CHECKPOINT)))
    assert [op["op"] for op in reported] == ["StepRun", "StepRun", "Sleep"]
    assert reported[2]["id"] == sha1("nap")
    assert calls == ["a", "b"]


def test_without_qi_id_there_is_one_step_per_request() -> None:
    calls: list[str] = []
    client = make_client()
    handler = serve(client, three_steps(client, calls))
    [op] = ops(call(handler, body=body_for(fn_id="01FNUUID")))
    assert op["id"] == sha1("a")
    assert calls == ["a"]


def test_checkpointing_off_in_settings_is_classic() -> None:
    calls: list[str] = []
    client = make_client()
    client.connection.settings = _settings.resolve(
        app_id="app", environ={}, is_production=False, checkpointing=False
    )
    handler = serve(client, three_steps(client, calls))
    [op] = ops(call(handler, body=body_for(**CHECKPOINT)))
    assert op["id"] == sha1("a")
    assert calls == ["a"]


def test_checkpointing_keeps_successes_before_a_step_error() -> None:
    client = make_client()
    calls: list[str] = []

    def boom() -> None:
        calls.append("c")
        raise ValueError("third fails")

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> str:
        ctx.step.run("a", recorder(calls, "a", 1))
        ctx.step.run("b", recorder(calls, "b", 2))
        ctx.step.run("c", boom)
        return "done"

    reported = ops(call(serve(client, fn), body=body_for(**CHECKPOINT)))
    assert [op["op"] for op in reported] == ["StepRun", "StepRun", "StepError"]
    assert [op["data"] for op in reported[:2]] == [1, 2]
    assert reported[2]["error"]["message"] == "third fails"
    assert calls == ["a", "b", "c"]


def test_checkpointing_keeps_progress_when_the_function_raises() -> None:
    client = make_client()
    calls: list[str] = []

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> str:
        ctx.step.run("a", recorder(calls, "a", 1))
        ctx.step.run("b", recorder(calls, "b", 2))
        raise RuntimeError("after the steps")

    handler = serve(client, fn)
    reported = ops(call(handler, body=body_for(**CHECKPOINT)))
    assert [op["op"] for op in reported] == ["StepRun", "StepRun"]
    assert [op["id"] for op in reported] == [sha1("a"), sha1("b")]
    # The next call, with those memos, meets the failure for real.
    steps = {sha1("a"): memo(1), sha1("b"): memo(2)}
    again = call(handler, body=body_for(steps=steps, **CHECKPOINT))
    assert again.status == 500
    assert decoded(again)["message"] == "after the steps"
    assert calls == ["a", "b"]


def test_checkpointing_not_used_when_targeting_or_force_planning() -> None:
    calls: list[str] = []
    client = make_client()
    handler = serve(client, three_steps(client, calls))
    [planned] = ops(call(handler, body=body_for(disable_immediate_execution=True, **CHECKPOINT)))
    assert planned["op"] == "StepPlanned"
    [targeted] = ops(
        call(handler, body=body_for(steps={sha1("a"): memo(42)}, **CHECKPOINT), step_id=sha1("b"))
    )
    assert targeted["id"] == sha1("b")
    assert calls == ["b"]
