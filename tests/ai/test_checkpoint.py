"""A model request's and a tool call's steps are committed before any code after them runs,
whatever the function's checkpointing; a plain function's steps are not.

The engine's two recording paths (a call's answer, a checkpoint) are wrapped to note the
steps each commits, in one list with the model's and the tool's calls: a step that ran
before the next call of the model or the tool was already committed then, so a process
killed in that call would not run it again (``test_crash.py`` kills one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import stepline
from stepline.ai import DurableAgent
from stepline.engine._runs import recording
from stepline.engine._wire.response import ReportedOp
from stepline.testing import TestEnv

CHECKPOINTING: dict[str, bool | stepline.Checkpointing] = {
    "default": True,
    "off": False,
    "with-answer": stepline.Checkpointing(buffered_steps=None),
    "every-4": stepline.Checkpointing(buffered_steps=4),
    "every-step": stepline.Checkpointing(buffered_steps=1),
}


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What happened, in order: ``model``, ``tool``, and ``commit <step name>``."""
    events: list[str] = []

    def noted(ops: tuple[ReportedOp, ...]) -> None:
        events.extend(f"commit {op.display_name}" for op in ops if op.display_name)

    answer, checkpoint = recording.answer, recording.checkpoint

    def answered(tx: Any, transitions: Any, job: Any, outcome: Any, **kw: Any) -> Any:
        noted((*getattr(outcome, "ops", ()), *getattr(outcome, "steps", ())))
        return answer(tx, transitions, job, outcome, **kw)

    def checkpointed(tx: Any, transitions: Any, run_id: str, ops: Any, **kw: Any) -> bool:
        noted(ops)
        return checkpoint(tx, transitions, run_id, ops, **kw)

    monkeypatch.setattr(recording, "answer", answered)
    monkeypatch.setattr(recording, "checkpoint", checkpointed)
    return events


def agent(log: list[str]) -> DurableAgent[None, str]:
    """Calls the tool ``add`` once, then answers; notes each call in ``log``."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        log.append("model")
        if sum(isinstance(m, ModelResponse) for m in messages) == 0:
            return ModelResponse(parts=[ToolCallPart("add", {"a": 2, "b": 3}, "call-1")])
        return ModelResponse(parts=[TextPart("5")])

    inner: Agent[None, str] = Agent(FunctionModel(respond), name="calc")

    @inner.tool_plain
    def add(a: int, b: int) -> int:
        log.append("tool")
        return a + b

    return DurableAgent(inner, stream=False)


def function(client: stepline.Client, durable: DurableAgent[None, str], face: str) -> Any:
    trigger = stepline.TriggerEvent(event="calc/asked")

    async def ask(ctx: stepline.Context) -> str:
        return (await durable.on(ctx).run("2 + 3?")).output

    def ask_sync(ctx: stepline.SyncContext) -> str:
        return durable.on(ctx).run_sync("2 + 3?").output

    chosen: Callable[..., Any] = ask if face == "async" else ask_sync
    return client.function(id=f"ask-{face}", trigger=trigger, retries=2)(chosen)


def _before(log: list[str], event: str, nth: int = 1) -> list[str]:
    """The events before the ``nth`` occurrence of ``event``."""
    seen = 0
    for i, item in enumerate(log):
        if item == event:
            seen += 1
            if seen == nth:
                return log[:i]
    raise AssertionError(f"{event!r} #{nth} not in {log}")


@pytest.mark.parametrize("face", ["async", "sync"])
@pytest.mark.parametrize("mode", list(CHECKPOINTING))
def test_each_model_request_and_tool_call_is_committed_before_anything_after_it_runs(
    log: list[str], mode: str, face: str
) -> None:
    client = stepline.Client(
        "ai-commits", is_production=False, environ={}, checkpointing=CHECKPOINTING[mode]
    )
    fn = function(client, agent(log), face)
    with TestEnv(client, [fn]) as env:
        assert env.start_sync(fn, {}).result_sync() == "5"
    assert [e for e in log if not e.startswith("commit")] == ["model", "tool", "model"]
    assert "commit calc:model-request-1" in _before(log, "tool")
    assert "commit calc:tool:add:call-1" in _before(log, "model", 2)
    committed = [e for e in log if e.startswith("commit calc:")]
    # each step committed once: a replay neither runs nor reports it again
    assert committed == sorted(set(committed), key=committed.index)
    assert "commit calc:model-request-2" in committed


def test_a_plain_functions_steps_still_go_with_the_calls_answer(log: list[str]) -> None:
    client = stepline.Client("plain", is_production=False, environ={})

    @client.function(id="three", trigger=stepline.TriggerEvent(event="plain/go"))
    async def three(ctx: stepline.Context) -> int:
        total = 0
        for i in range(3):
            total += await ctx.step.run(f"s{i}", lambda i=i: i)
        return total

    checkpoints: list[object] = []
    original = recording.checkpoint

    def counted(*args: Any, **kw: Any) -> bool:
        checkpoints.append(args)
        return original(*args, **kw)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(recording, "checkpoint", counted)
        with TestEnv(client, [three]) as env:
            assert env.start_sync(three, {}).result_sync() == 3
    assert checkpoints == []  # one answer carried the three steps and the result
    assert log == ["commit s0", "commit s1", "commit s2", "commit complete"]
