"""A durable agent run for real by the test env's engine: steps, replays, retries, budget.

Models are Pydantic AI's ``FunctionModel`` (plain and streaming), counting their calls;
each function sleeps after its agent run, so that the call after the sleep replays every
recorded step: a count that does not move says the replay called nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import fastapi
import fastapi.testclient
import pytest
from pydantic_ai import Agent
from pydantic_ai.exceptions import ModelRetry
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, FunctionModel

import stepline
import stepline.fastapi
from stepline.ai import DurableAgent, TokenBudget, fold
from stepline.testing import TestEnv
from tests._support.otel import Otel

STEPS = [
    "calc:model-request-1",
    "calc:model-request-1:done",
    "calc:tool:add:call-1",
    "calc:model-request-2",
    "calc:model-request-2:done",
    "later",
]


class Counts:
    """How often the model and the tool were really called."""

    def __init__(self) -> None:
        self.model = 0
        self.tool = 0
        self.fail_model: set[int] = set()  # the model calls (1-based) that raise
        self.retry_tool = 0  # how many first tool calls ask the model to retry


def _responses(messages: list[ModelMessage]) -> int:
    return sum(isinstance(m, ModelResponse) for m in messages)


def build(counts: Counts, *, streamed: bool, **options: Any) -> DurableAgent[None, str]:
    """An agent that calls ``add(2, 3)`` first and then says the sum."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        counts.model += 1
        if counts.model in counts.fail_model:
            raise ConnectionError("the model's provider is down")
        n = _responses(messages)
        if n == 0 or counts.retry_tool > n - 1:
            return ModelResponse(parts=[ToolCallPart("add", {"a": 2, "b": 3}, f"call-{n + 1}")])
        return ModelResponse(parts=[TextPart("2 + 3 = 5")])

    async def stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[Any]:
        counts.model += 1
        n = _responses(messages)
        if n == 0:
            yield {
                0: DeltaToolCall(name="add", json_args='{"a": 2, "b": 3}', tool_call_id="call-1")
            }
            return
        for token in ("2 ", "+ ", "3 ", "= ", "5"):
            yield token
            if counts.model in counts.fail_model and token == "+ ":
                raise ConnectionError("the stream broke off")

    model = FunctionModel(stream_function=stream) if streamed else FunctionModel(respond)
    inner: Agent[None, str] = Agent(model, name="calc")

    @inner.tool_plain
    def add(a: int, b: int) -> int:
        counts.tool += 1
        if counts.tool <= counts.retry_tool:
            raise ModelRetry("add again, please")
        return a + b

    return DurableAgent(inner, stream=streamed, **options)


async def _drain(ctx: object, events: AsyncIterator[object]) -> None:
    async for _ in events:
        pass


def function(
    client: stepline.Client, agent: DurableAgent[None, str], face: str, *, streamed: bool = False
) -> stepline.Function:
    """A function running ``agent`` (streaming its requests or not), then sleeping."""
    trigger = stepline.TriggerEvent(event="calc/asked")
    handler = _drain if streamed else None

    async def ask(ctx: stepline.Context) -> str:
        result = await agent.on(ctx).run("2 + 3?", event_stream_handler=handler)
        await ctx.step.sleep("later", "1s")
        return result.output

    def ask_sync(ctx: stepline.SyncContext) -> str:
        result = agent.on(ctx).run_sync("2 + 3?", event_stream_handler=handler)
        ctx.step.sleep("later", "1s")
        return result.output

    chosen: Callable[..., Any] = ask if face == "async" else ask_sync
    return client.function(id=f"ask-{face}", trigger=trigger, retries=3)(chosen)


@pytest.fixture
def client() -> stepline.Client:
    return stepline.Client("ai-tests", is_production=False, environ={})


FACES = ["async", "sync"]


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("face", FACES)
def test_each_model_request_and_tool_call_is_one_step_and_replays_call_neither(
    client: stepline.Client, face: str, streamed: bool
) -> None:
    counts = Counts()
    fn = function(client, build(counts, streamed=streamed), face, streamed=streamed)
    with TestEnv(client, [fn]) as env:
        run = env.start_sync(fn, {})
        assert run.result_sync() == "2 + 3 = 5"
        assert [step.name for step in run.steps_sync()] == STEPS
        messages = run.stream_sync(topic="ai")
    assert (counts.model, counts.tool) == (2, 1)
    kinds = [m.data["type"] for m in messages]
    live = ["text"] * 5 if streamed else []
    assert kinds == ["done", "tool-call", "tool-result", *live, "done"]
    assert fold(messages) == "2 + 3 = 5"


@pytest.mark.parametrize("face", FACES)
def test_a_model_request_that_fails_once_is_retried_and_recorded_once(
    client: stepline.Client, face: str
) -> None:
    counts = Counts()
    counts.fail_model = {2}
    fn = function(client, build(counts, streamed=False), face)
    with TestEnv(client, [fn]) as env:
        run = env.start_sync(fn, {})
        assert run.result_sync() == "2 + 3 = 5"
        assert [step.name for step in run.steps_sync()] == STEPS
    assert (counts.model, counts.tool) == (3, 1)


@pytest.mark.parametrize("face", FACES)
def test_an_interrupted_streamed_attempt_is_discarded_and_its_text_never_shows(
    client: stepline.Client, face: str
) -> None:
    counts = Counts()
    counts.fail_model = {2}  # the second request's first attempt breaks off after "2 + "
    fn = function(client, build(counts, streamed=True), face, streamed=True)
    with TestEnv(client, [fn]) as env:
        run = env.start_sync(fn, {})
        assert run.result_sync() == "2 + 3 = 5"
        messages = run.stream_sync(topic="ai")
    second = [m.data for m in messages if m.data["step"] == "calc:model-request-2"]
    broken, retried = dict.fromkeys(m["attempt"] for m in second if m["type"] == "text")
    assert [m["type"] for m in second] == [
        *["text"] * 2,  # the broken attempt's "2 " and "+ "
        "discarded",
        *["text"] * 5,
        "done",
    ]
    assert second[2] == {"type": "discarded", "step": "calc:model-request-2", "attempt": broken}
    assert second[-1]["attempt"] == retried
    assert fold(messages) == "2 + 3 = 5"
    assert fold(messages[: len(messages) - 1]) == "2 + 3 = 5"  # live, before the marker
    assert (counts.model, counts.tool) == (3, 1)


@pytest.mark.parametrize("face", FACES)
def test_model_retries_bound_a_request_below_the_functions_retries(
    client: stepline.Client, face: str
) -> None:
    counts = Counts()
    counts.fail_model = {1, 2, 3}
    fn = function(client, build(counts, streamed=False, model_retries=1), face)
    with TestEnv(client, [fn]) as env:
        run = env.start_sync(fn, {})
        with pytest.raises(stepline.RunFailedError) as failed:
            run.result_sync()
    assert "calc:model-request-1 failed on its attempt 2 of 2" in str(failed.value)
    assert "the model's provider is down" in str(failed.value)
    assert counts.model == 2  # not the function's four attempts


@pytest.mark.parametrize("face", FACES)
def test_a_tool_asking_the_model_to_retry_is_recorded_as_such(
    client: stepline.Client, face: str
) -> None:
    counts = Counts()
    counts.retry_tool = 1
    fn = function(client, build(counts, streamed=False), face)
    with TestEnv(client, [fn]) as env:
        run = env.start_sync(fn, {})
        assert run.result_sync() == "2 + 3 = 5"
        names = [step.name for step in run.steps_sync()]
        messages = run.stream_sync(topic="ai")
    assert names[:6] == [
        "calc:model-request-1",
        "calc:model-request-1:done",
        "calc:tool:add:call-1",
        "calc:model-request-2",
        "calc:model-request-2:done",
        "calc:tool:add:call-2",
    ]
    assert (counts.model, counts.tool) == (3, 2)
    results = [m.data for m in messages if m.data["type"] == "tool-result"]
    assert [r.get("retry") or r.get("content") for r in results] == ["add again, please", 5]


@pytest.mark.parametrize("face", FACES)
def test_a_run_over_its_token_budget_fails_before_the_next_request(
    client: stepline.Client, face: str
) -> None:
    counts = Counts()
    fn = function(client, build(counts, streamed=False, budget=TokenBudget(tokens=40)), face)
    with TestEnv(client, [fn]) as env:
        run = env.start_sync(fn, {})
        with pytest.raises(stepline.RunFailedError) as failed:
            run.result_sync()
        names = [step.name for step in run.steps_sync()]
    message = str(failed.value)
    assert "token budget of 40 tokens is spent" in message
    assert "calc:model-request-2 was not made" in message
    assert "used 5" in message  # FunctionModel's estimate of the first request
    assert names[:3] == STEPS[:3]
    assert (counts.model, counts.tool) == (1, 1)  # no second request, no retry


def test_a_durable_agent_needs_a_name_and_a_context() -> None:
    with pytest.raises(stepline.ConfigError, match="needs a name"):
        DurableAgent(Agent(FunctionModel(lambda m, i: ModelResponse(parts=[]))))
    agent = build(Counts(), streamed=False)
    with pytest.raises(stepline.ConfigError, match=r"agent\.on\(ctx\)"):
        asyncio.run(agent.run("hi"))
    with pytest.raises(stepline.ConfigError, match="model_retries"):
        build(Counts(), streamed=False, model_retries=-1)
    with pytest.raises(stepline.ConfigError, match="topic"):
        build(Counts(), streamed=False, topic="no spaces")


def test_a_model_requests_step_span_carries_its_usage_as_genai_attributes() -> None:
    otel = Otel()
    client = stepline.Client(
        "ai-traced", is_production=False, environ={}, tracer_provider=otel.provider
    )
    counts = Counts()
    fn = function(client, build(counts, streamed=False), "async")
    with TestEnv(client, [fn]) as env:
        assert env.start_sync(fn, {}).result_sync() == "2 + 3 = 5"
    spans = {
        span.attributes["stepline.step_id"]: span
        for span in otel.spans("stepline.step")
        if span.attributes is not None
    }
    attributes = dict(spans["calc:model-request-1"].attributes or {})
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == attributes["gen_ai.response.model"]
    assert attributes["gen_ai.usage.input_tokens"] > 0
    assert attributes["gen_ai.usage.output_tokens"] > 0
    assert "gen_ai.usage.input_tokens" not in dict(spans["calc:tool:add:call-1"].attributes or {})


@pytest.mark.parametrize("face", FACES)
def test_in_a_durable_endpoint_each_request_and_tool_call_is_a_step(face: str) -> None:
    client = stepline.Client("ai-endpoint", is_production=False, environ={})
    counts = Counts()
    agent = build(counts, streamed=False)
    app = fastapi.FastAPI()

    if face == "async":

        @app.post("/ask")
        @stepline.fastapi.durable(client)
        async def ask(ctx: stepline.EndpointContext) -> dict[str, Any]:
            result = await agent.on(ctx).run(ctx.request.json()["prompt"])
            return {"answer": result.output}

    else:

        @app.post("/ask")
        @stepline.fastapi.durable(client)
        def ask(ctx: stepline.SyncEndpointContext) -> dict[str, Any]:
            result = agent.on(ctx).run_sync(ctx.request.json()["prompt"])
            return {"answer": result.output}

    http = fastapi.testclient.TestClient(app)
    with TestEnv(client, []) as env:
        answer = http.post("/ask", json={"prompt": "2 + 3?"})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"answer": "2 + 3 = 5"}
        run = env.get_run(answer.headers["x-stepline-run-id"])
        assert [step.name for step in run.steps_sync()] == STEPS[:-1]
    assert (counts.model, counts.tool) == (2, 1)
