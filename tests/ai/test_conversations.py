"""Conversations: runs that carry a conversation id, listed in order, each continuing the
history the one before recorded.

The model (``FunctionModel``) answers with every user prompt it was sent, joined: an
answer shows the history the run started from. Each function sleeps after its agent run,
so the call after the sleep replays every step, the history step included: the model
sees each prompt once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, UserPromptPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import stepline
from stepline.ai import DurableAgent
from stepline.testing import TestEnv
from tests._support.databases import STORES, database


def agent(calls: list[str]) -> DurableAgent[None, str]:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        prompts = [
            str(part.content)
            for message in messages
            if isinstance(message, ModelRequest)
            for part in message.parts
            if isinstance(part, UserPromptPart)
        ]
        calls.append(prompts[-1])
        return ModelResponse(parts=[TextPart(" | ".join(prompts))])

    inner: Agent[None, str] = Agent(FunctionModel(respond), name="chat")
    return DurableAgent(inner, stream=False)


def function(client: stepline.Client, durable: DurableAgent[None, str], face: str) -> Any:
    trigger = stepline.TriggerEvent(event="chat/said")

    async def chat(ctx: stepline.Context) -> str:
        data: dict[str, Any] = dict(ctx.event.data)
        result = await durable.on(ctx).run(data["prompt"], conversation_id=data["cid"])
        await ctx.step.sleep("later", "1s")
        return result.output

    def chat_sync(ctx: stepline.SyncContext) -> str:
        data: dict[str, Any] = dict(ctx.event.data)
        result = durable.on(ctx).run_sync(data["prompt"], conversation_id=data["cid"])
        ctx.step.sleep("later", "1s")
        return result.output

    chosen: Callable[..., Any] = chat if face == "async" else chat_sync
    return client.function(id=f"chat-{face}", trigger=trigger, retries=2)(chosen)


@pytest.mark.parametrize("face", ["async", "sync"])
def test_each_run_of_a_conversation_continues_the_history_of_the_one_before(face: str) -> None:
    calls: list[str] = []
    client = stepline.Client("ai-chat", is_production=False, environ={})
    fn = function(client, agent(calls), face)
    with TestEnv(client, [fn]) as env:

        def say(cid: str, prompt: str) -> tuple[str, str]:
            run = env.start_sync(fn, {"cid": cid, "prompt": prompt})
            return run.run_id, run.result_sync()

        first, answer1 = say("c1", "one")
        second, answer2 = say("c1", "two")
        _, answer3 = say("c2", "hello")
        third, answer4 = say("c1", "three")
        listed = client.conversation_runs_sync("c1")
        by_attribute, _ = client.list_runs_sync(attributes={"conversation": "c1"})
        steps = [s.name for s in env.get_run(second).steps_sync()]
    assert [answer1, answer2, answer3, answer4] == [
        "one",
        "one | two",
        "hello",
        "one | two | three",
    ]
    assert calls == ["one", "two", "hello", "three"]  # replays called the model for none
    assert [r.run_id for r in listed] == [first, second, third]  # oldest first
    assert {r.run_id for r in by_attribute} == {first, second, third}
    assert listed[0].attributes == {"conversation": "c1"}
    assert steps == [
        "chat:history",
        "chat:model-request-1",
        "chat:model-request-1:done",
        "chat:messages",
        "later",
    ]


@pytest.mark.parametrize("store", STORES)
def test_a_run_given_its_history_loads_none_and_an_unknown_conversation_has_no_runs(
    store: str, tmp_path: Path
) -> None:
    calls: list[str] = []
    client = stepline.Client("ai-chat", is_production=False, environ={})
    durable = agent(calls)

    @client.function(id="given", trigger=stepline.TriggerEvent(event="chat/given"))
    async def given(ctx: stepline.Context) -> str:
        history: list[ModelMessage] = [
            ModelRequest(parts=[UserPromptPart("earlier")]),
            ModelResponse(parts=[TextPart("ok")]),
        ]
        run = durable.on(ctx)
        result = await run.run("now", conversation_id="c9", message_history=history)
        return result.output

    with database(store, tmp_path) as db, TestEnv(client, [given], database=db) as env:
        run = env.start_sync(given, {})
        assert run.result_sync() == "earlier | now"
        names = [s.name for s in run.steps_sync()]
        assert client.conversation_runs_sync("nobody") == []
        assert [r.run_id for r in client.conversation_runs_sync("c9")] == [run.run_id]
    assert "chat:history" not in names
    assert names[-1] == "chat:messages"
