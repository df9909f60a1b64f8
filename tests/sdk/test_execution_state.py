"""The sans-IO execution core, driven with no server, no thread and no event loop."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

import stepline
from stepline._execution.call import ExecutionState, Outcome
from stepline._execution.checkpointing import CheckpointPolicy
from stepline._execution.step import SyncStep
from stepline._protocol.execution import CallContext, ExecutionRequest
from stepline._protocol.hashing import StepIdCounter, hash_step_id
from stepline._protocol.opcodes import Opcode
from stepline._transport.effects import HttpRequest, HttpResponse, drive_sync

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
CLIENT = stepline.Client("unit", is_production=False, environ={})


def state_for(
    steps: dict[str, Any] | None = None,
    *,
    step_id: str = "step",
    force_plan: bool = False,
    checkpoint: CheckpointPolicy | None = None,
    attempt: int = 0,
    max_attempts: int | None = 3,
    clock: Any = None,
) -> ExecutionState:
    request = ExecutionRequest(
        event={"name": "e", "data": {}},
        events=[],
        steps=steps or {},
        ctx=CallContext(
            run_id="run",
            step_id=step_id,
            disable_immediate_execution=force_plan,
            attempt=attempt,
            max_attempts=max_attempts,
        ),
    )
    extra = {"clock": clock} if clock else {}
    return ExecutionState(request, checkpoint=checkpoint, **extra)


def run(state: ExecutionState, body: Any) -> Outcome:
    outcome = Outcome()
    step = SyncStep(
        state, lambda: NOW, app_id=CLIENT.app_id, send=CLIENT.send, send_sync=CLIENT.send_sync
    )
    with state.function_call(outcome):
        outcome.output = body(step)
    return outcome


def test_hashing_vectors_and_repeat_suffixes() -> None:
    assert hash_step_id("my-step-id") == "e7d8a2f140845095749d60246ff1110c9d01d76a"
    counter = StepIdCounter()
    assert counter.next("foo") == (hash_step_id("foo"), None)
    assert counter.next("foo") == (hash_step_id("foo:1"), 1)
    assert counter.next("foo") == (hash_step_id("foo:2"), 2)
    assert counter.next("bar") == (hash_step_id("bar"), None)


def test_first_step_runs_and_reports() -> None:
    outcome = run(state_for(), lambda step: step.run("a", lambda: 41 + 1))
    assert outcome.ops is not None
    [op] = outcome.ops
    assert (op.op, op.id, op.data) == (Opcode.STEP_RUN, hash_step_id("a"), 42)


def test_memos_replay_without_calling() -> None:
    calls: list[str] = []

    def body(step: SyncStep) -> Any:
        a = step.run("a", lambda: calls.append("a") or 1)
        b = step.run("b", lambda: calls.append("b") or a + 1)
        return a + b

    outcome = run(state_for({hash_step_id("a"): {"data": 1}, hash_step_id("b"): {"data": 2}}), body)
    assert (outcome.output, outcome.ops, calls) == (3, None, [])


def test_replay_aware_flag() -> None:
    state = state_for({hash_step_id("a"): {"data": 1}})
    seen: list[bool] = []

    def body(step: SyncStep) -> int:
        seen.append(state.is_replaying)
        step.run("a", lambda: 1)
        seen.append(state.is_replaying)
        return 0

    run(state, body)
    assert seen == [True, False]


def test_force_plan_reports_planned_without_calling() -> None:
    calls: list[int] = []
    outcome = run(state_for(force_plan=True), lambda step: step.run("a", lambda: calls.append(1)))
    assert outcome.ops is not None
    assert [op.op for op in outcome.ops] == [Opcode.STEP_PLANNED]
    assert calls == []


def test_engine_steps_report_their_shape() -> None:
    outcome = run(state_for(), lambda step: step.sleep("nap", dt.timedelta(hours=1)))
    assert outcome.ops is not None
    [op] = outcome.ops
    assert (op.op, op.name, op.opts) == (Opcode.SLEEP, "2030-01-01T01:00:00.000Z", None)

    outcome = run(
        state_for(),
        lambda step: step.wait_for_event("w", event="x/y", timeout=60_000, if_exp="a == b"),
    )
    assert outcome.ops is not None
    assert outcome.ops[0].to_wire()["opts"] == {"if": "a == b", "timeout": "1m"}


def test_wait_for_event_memo_is_an_event_or_none() -> None:
    raw = {"name": "x/y", "data": {"k": 1}, "id": "E", "ts": 5}
    outcome = run(
        state_for({hash_step_id("w"): raw}),
        lambda step: step.wait_for_event("w", event="x/y", timeout="1m"),
    )
    assert outcome.output == stepline.Event(name="x/y", data={"k": 1}, id="E", ts=5)
    outcome = run(
        state_for({hash_step_id("w"): None}),
        lambda step: step.wait_for_event("w", event="x/y", timeout="1m"),
    )
    assert outcome.output is None


def test_step_error_memo_is_raised_and_catchable() -> None:
    memo = {hash_step_id("a"): {"error": {"name": "KeyError", "message": "k", "stack": "tb"}}}

    def body(step: SyncStep) -> str:
        try:
            step.run("a", lambda: 1)
        except stepline.StepError as exc:
            return f"{exc.name}:{exc.message}:{exc.stack}"
        return "not raised"

    assert run(state_for(memo), body).output == "KeyError:k:tb"


def test_interrupts_escape_user_except_exception() -> None:
    def body(step: SyncStep) -> str:
        try:
            step.run("a", lambda: 1)
        except Exception:
            return "swallowed"
        return "after"

    outcome = run(state_for(), body)
    assert outcome.output is None
    assert outcome.ops is not None


def test_retriable_then_final_step_failure() -> None:
    def boom() -> None:
        raise ValueError("no")

    first = run(state_for(attempt=0, max_attempts=2), lambda step: step.run("a", boom))
    last = run(state_for(attempt=1, max_attempts=2), lambda step: step.run("a", boom))
    assert first.ops is not None
    assert last.ops is not None
    assert first.ops[0].op is Opcode.STEP_ERROR
    assert last.ops[0].op is Opcode.STEP_FAILED
    assert last.ops[0].error is not None
    assert last.ops[0].error["name"] == "ValueError"
    assert not first.no_retry


def test_checkpointing_runs_steps_in_one_call_and_completes() -> None:
    def body(step: SyncStep) -> int:
        return sum(step.run(f"s{i}", lambda i=i: i) for i in range(4))

    outcome = run(state_for(checkpoint=CheckpointPolicy()), body)
    assert outcome.ops is not None
    assert [op.op for op in outcome.ops] == [Opcode.STEP_RUN] * 4 + [Opcode.RUN_COMPLETE]
    assert outcome.ops[-1].data == 6


def test_checkpointing_stops_at_the_step_limit() -> None:
    def body(step: SyncStep) -> int:
        return sum(step.run(f"s{i}", lambda i=i: i) for i in range(10))

    outcome = run(state_for(checkpoint=CheckpointPolicy(max_steps=3)), body)
    assert outcome.ops is not None
    assert [op.op for op in outcome.ops] == [Opcode.STEP_RUN] * 3


def test_checkpointing_stops_at_the_time_limit() -> None:
    ticks = iter(range(100))

    def body(step: SyncStep) -> int:
        return sum(step.run(f"s{i}", lambda i=i: i) for i in range(10))

    policy = CheckpointPolicy(max_seconds=2)
    outcome = run(state_for(checkpoint=policy, clock=lambda: float(next(ticks))), body)
    assert outcome.ops is not None
    assert len(outcome.ops) == 2


def test_parallel_plans_every_branch() -> None:
    outcome = run(
        state_for(),
        lambda step: step.parallel(
            [lambda: step.run("a", lambda: 1), lambda: step.run("b", lambda: 2)]
        ),
    )
    assert outcome.ops is not None
    assert [(op.op, op.user_id) for op in outcome.ops] == [
        (Opcode.STEP_PLANNED, "a"),
        (Opcode.STEP_PLANNED, "b"),
    ]


def test_targeted_call_runs_only_the_target() -> None:
    calls: list[str] = []
    target = hash_step_id("b")
    outcome = run(
        state_for(step_id=target),
        lambda step: step.parallel(
            [
                lambda: step.run("a", lambda: calls.append("a")),
                lambda: step.run("b", lambda: calls.append("b") or "B"),
            ]
        ),
    )
    assert calls == ["b"]
    assert outcome.ops is not None
    assert [(op.op, op.data) for op in outcome.ops] == [(Opcode.STEP_RUN, "B")]


def test_nested_parallel_groups_of_sequential_steps() -> None:
    memos = {hash_step_id("a1"): {"data": 1}, hash_step_id("b1"): {"data": 10}}

    def branch(step: SyncStep, name: str) -> int:
        first = step.run(f"{name}1", lambda: 0)
        return first + step.run(f"{name}2", lambda: 0)

    outcome = run(
        state_for(memos),
        lambda step: step.parallel([lambda: branch(step, "a"), lambda: branch(step, "b")]),
    )
    assert outcome.ops is not None
    assert [op.user_id for op in outcome.ops] == ["a2", "b2"]


def test_effect_generators_are_driven_by_send() -> None:
    def flow() -> Any:
        first = yield HttpRequest("GET", "http://x/1", {})
        second = yield HttpRequest("GET", "http://x/2", {})
        return [first.status, second.status]

    gen = flow()
    assert next(gen).url == "http://x/1"
    assert gen.send(HttpResponse(200, {}, b"")).url == "http://x/2"
    with pytest.raises(StopIteration) as stop:
        gen.send(HttpResponse(404, {}, b""))
    assert stop.value.value == [200, 404]
    assert drive_sync(flow(), lambda effect: HttpResponse(201, {}, b"")) == [201, 201]


def test_error_stack_shows_only_user_frames() -> None:
    def boom() -> None:
        raise KeyError("missing")

    outcome = run(state_for(), lambda step: step.run("a", boom))
    assert outcome.ops is not None
    error = outcome.ops[0].error
    assert error is not None
    assert "in boom" in error["stack"]
    assert "src/stepline" not in error["stack"]
    assert error["stack"].startswith("Traceback (most recent call last):")
