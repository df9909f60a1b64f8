"""``run_on``: one step a call, answered at the code's next step or with its result.

The engine in this process asks for it on calls with no checkpointing: a function that
returns after its last step answers that step and its result in one call, instead of a
call more that replays every step to reach the ``return``.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

import stepline
from stepline._execution.call import ExecutionState, Outcome
from stepline._execution.checkpointing import CheckpointPolicy
from stepline._execution.context import ReplayAwareLogger
from stepline._execution.step import SyncStep
from stepline._protocol.execution import CallContext, ExecutionRequest
from stepline._protocol.hashing import hash_step_id
from stepline._protocol.opcodes import Opcode

from .test_execution_state import run


def state_for(
    steps: dict[str, Any] | None = None,
    *,
    run_on: bool = True,
    step_id: str = "step",
    force_plan: bool = False,
    checkpoint: CheckpointPolicy | None = None,
    stack: list[str] | None = None,
) -> ExecutionState:
    memos = steps or {}
    request = ExecutionRequest(
        event={"name": "e", "data": {}},
        events=[],
        steps=memos,
        ctx=CallContext(
            run_id="run",
            step_id=step_id,
            disable_immediate_execution=force_plan,
            attempt=0,
            max_attempts=3,
            stack=stack if stack is not None else list(memos),
        ),
    )
    return ExecutionState(request, checkpoint=checkpoint, run_on=run_on)


def memo(value: Any) -> dict[str, Any]:
    return {"data": value}


def shape(outcome: Outcome) -> list[tuple[Opcode, Any]]:
    assert outcome.ops is not None, outcome
    return [(op.op, op.data) for op in outcome.ops]


def three_steps(calls: list[str]) -> Any:
    def body(step: SyncStep) -> int:
        a = step.run("a", lambda: calls.append("a") or 1)
        b = step.run("b", lambda: calls.append("b") or a + 1)
        calls.append("after b")
        return a + b

    return body


def test_the_last_step_answers_with_the_function_s_result() -> None:
    calls: list[str] = []
    outcome = run(state_for({hash_step_id("a"): memo(1)}), three_steps(calls))
    assert calls == ["b", "after b"]
    assert shape(outcome) == [(Opcode.STEP_RUN, 2), (Opcode.RUN_COMPLETE, 3)]
    assert outcome.ops is not None
    assert outcome.ops[0].id == hash_step_id("b")
    assert outcome.error is None
    assert outcome.divergence is None


def test_without_it_the_last_step_answers_alone() -> None:
    calls: list[str] = []
    state = state_for({hash_step_id("a"): memo(1)}, run_on=False)
    outcome = run(state, three_steps(calls))
    assert calls == ["b"]
    assert shape(outcome) == [(Opcode.STEP_RUN, 2)]


def test_a_step_with_more_to_come_answers_at_the_next_step_unreached() -> None:
    calls: list[str] = []
    outcome = run(state_for(), three_steps(calls))
    assert calls == ["a"]  # "b" was reached, not run, nor reported
    assert shape(outcome) == [(Opcode.STEP_RUN, 1)]


def test_code_that_raises_after_the_step_answers_the_step_alone() -> None:
    def body(step: SyncStep) -> None:
        step.run("a", lambda: 1)
        raise stepline.NonRetriableError("after the step")

    outcome = run(state_for(), body)
    assert shape(outcome) == [(Opcode.STEP_RUN, 1)]
    assert outcome.error is None
    assert not outcome.no_retry
    replayed = run(state_for({hash_step_id("a"): memo(1)}), body)  # the next call
    assert isinstance(replayed.error, stepline.NonRetriableError)
    assert replayed.ops is None


@pytest.mark.parametrize(
    "then",
    [
        pytest.param(lambda step: step.sleep("nap", 5), id="sleep"),
        pytest.param(lambda step: step.wait_for_event("w", event="x", timeout=5), id="wait"),
        pytest.param(lambda step: step.parallel([lambda: step.run("p", lambda: 0)]), id="parallel"),
        pytest.param(lambda step: step.run("b", lambda: 2), id="run"),
    ],
)
def test_any_new_step_after_the_one_that_ran_is_left_for_the_next_call(then: Any) -> None:
    def body(step: SyncStep) -> Any:
        step.run("a", lambda: 1)
        return then(step)

    outcome = run(state_for(), body)
    assert shape(outcome) == [(Opcode.STEP_RUN, 1)]


def test_a_result_that_cannot_be_json_answers_the_step_alone() -> None:
    def body(step: SyncStep) -> object:
        step.run("a", lambda: 1)
        return object()

    outcome = run(state_for(), body)
    assert shape(outcome) == [(Opcode.STEP_RUN, 1)]
    assert outcome.error is None


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"force_plan": True}, id="force-plan"),
        pytest.param({"step_id": hash_step_id("a")}, id="targeted"),
    ],
)
def test_planned_and_targeted_calls_answer_as_before(kwargs: dict[str, Any]) -> None:
    def body(step: SyncStep) -> int:
        return step.run("a", lambda: 1)

    with_it = run(state_for(**kwargs), body)
    without = run(state_for(run_on=False, **kwargs), body)
    assert shape(with_it) == shape(without)
    assert not any(op == Opcode.RUN_COMPLETE for op, _ in shape(with_it))


def test_a_step_run_inside_a_parallel_group_answers_as_before() -> None:
    target = hash_step_id("b")

    def body(step: SyncStep) -> Any:
        return step.parallel([lambda: step.run("a", lambda: 1), lambda: step.run("b", lambda: 2)])

    with_it = run(state_for(step_id=target), body)
    assert shape(with_it) == [(Opcode.STEP_RUN, 2)]


def test_checkpointing_keeps_its_own_answer() -> None:
    def body(step: SyncStep) -> int:
        return sum(step.run(f"s{i}", lambda i=i: i) for i in range(3))

    outcome = run(state_for(checkpoint=CheckpointPolicy(max_steps=1)), body)
    assert shape(outcome) == [(Opcode.STEP_RUN, 0)]


def test_a_patch_marker_after_the_step_is_recorded_by_the_next_call() -> None:
    def body(step: SyncStep, ctx_patched: Any) -> Any:
        step.run("a", lambda: 1)
        return ctx_patched("change")

    state = state_for()
    outcome = run(state, lambda step: body(step, state.patched))
    assert shape(outcome) == [(Opcode.STEP_RUN, 1)]


def test_a_replay_that_ends_after_the_step_reports_no_divergence() -> None:
    ids = [hash_step_id("a")]
    state = state_for({ids[0]: memo(1)}, stack=ids)
    outcome = run(state, three_steps([]))
    assert outcome.divergence is None
    assert shape(outcome)[-1] == (Opcode.RUN_COMPLETE, 3)


@pytest.mark.parametrize(
    "how",
    [
        pytest.param({"run_on": True}, id="run-on"),
        pytest.param({"run_on": False, "checkpoint": CheckpointPolicy()}, id="checkpointing"),
    ],
)
def test_what_the_code_does_to_a_step_s_value_changes_nothing_it_reported(
    how: dict[str, Any],
) -> None:
    def body(step: SyncStep) -> int:
        items = step.run("items", lambda: [1])
        items.append(9)  # a replay starts from the memo, [1]: so must what is reported
        return step.run("count", lambda: len(items))

    outcome = run(state_for(**how), body)
    assert shape(outcome)[0] == (Opcode.STEP_RUN, [1])


def test_code_past_the_step_that_logs_leaves_the_end_to_the_next_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def body_for(state: ExecutionState) -> Any:
        log = ReplayAwareLogger(logging.getLogger("tests.run_on"), state)

        def body(step: SyncStep) -> int:
            step.run("a", lambda: 1)
            log.warning("the tail ran")  # asks ``is_rerunning``: held back, not lost
            return 5

        return body

    caplog.set_level(logging.WARNING, "tests.run_on")
    first = state_for()
    assert shape(run(first, body_for(first))) == [(Opcode.STEP_RUN, 1)]
    assert "the tail ran" not in caplog.text
    second = state_for({hash_step_id("a"): memo(1)})
    outcome = run(second, body_for(second))
    assert outcome.ops is None
    assert outcome.output == 5
    assert caplog.text.count("the tail ran") == 1
