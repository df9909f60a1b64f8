"""A person in the loop: a durable agent's tool call that needs approval waits for a decision.

The agent runs for real in the test env's engine with Pydantic AI's ``FunctionModel``; the
decision goes through the engine's REST API with the client (``client.approvals``,
``approve``, ``reject``). Each function sleeps after its agent run, so that the call
after the sleep replays every recorded step: counts that do not move say the replay
asked nobody again and called neither the model nor the tool.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.exceptions import ApprovalRequired
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.tools import RunContext

import stepline
from stepline.ai import ApprovalTimeoutError, DurableAgent
from stepline.testing import TestEnv

FACES = ["async", "sync"]


class Shop:
    """What the model and the refund tool were asked, across every call of the function."""

    def __init__(self) -> None:
        self.model = 0
        self.refunds: list[tuple[str, int]] = []
        self.tool_results: list[Any] = []


def build(shop: Shop, *, raises: bool = False, **options: Any) -> DurableAgent[None, str]:
    """An agent that asks to refund 500 cents on order 7, then says what it got back."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        shop.model += 1
        if not any(isinstance(m, ModelResponse) for m in messages):
            call = ToolCallPart("refund", {"order": "7", "cents": 500}, "call-1")
            return ModelResponse(parts=[call])
        last = messages[-1]
        assert isinstance(last, ModelRequest)
        returned = [p for p in last.parts if isinstance(p, ToolReturnPart)]
        shop.tool_results.append(returned[0].content)
        return ModelResponse(parts=[TextPart(f"tool said: {returned[0].content}")])

    inner: Agent[None, str] = Agent(FunctionModel(respond), name="shop")

    def refund(ctx: RunContext[None], order: str, cents: int) -> str:
        """Refund an order, in cents."""
        if raises and not ctx.tool_call_approved:
            raise ApprovalRequired(metadata={"why": "money"})
        shop.refunds.append((order, cents))
        return f"refunded {cents} on order {order}"

    inner.tool(requires_approval=not raises)(refund)
    return DurableAgent(inner, stream=False, **options)


def function(client: stepline.Client, agent: DurableAgent[None, str], face: str) -> Any:
    trigger = stepline.TriggerEvent(event="shop/asked")

    async def ask(ctx: stepline.Context) -> str:
        result = await agent.on(ctx).run("refund order 7")
        await ctx.step.sleep("later", "1s")
        return result.output

    def ask_sync(ctx: stepline.SyncContext) -> str:
        result = agent.on(ctx).run_sync("refund order 7")
        ctx.step.sleep("later", "1s")
        return result.output

    chosen: Callable[..., Any] = ask if face == "async" else ask_sync
    return client.function(id=f"ask-{face}", trigger=trigger, retries=2)(chosen)


@pytest.fixture
def client() -> stepline.Client:
    return stepline.Client("ai-approvals", is_production=False, environ={})


def pending(client: stepline.Client, **where: Any) -> list[stepline.Approval]:
    found, _ = client.approvals_sync(**where)
    return found


@pytest.mark.parametrize("face", FACES)
def test_an_approved_call_runs_with_edited_arguments_once(
    client: stepline.Client, face: str
) -> None:
    shop = Shop()
    fn = function(client, build(shop), face)
    with TestEnv(client, [fn]) as env:
        run = env.start_sync(fn, {})
        env.settle_sync()
        [approval] = pending(client)
        assert (approval.run_id, approval.function_id) == (run.run_id, fn.composite_id)
        assert (approval.status, approval.agent, approval.tool) == ("pending", "shop", "refund")
        assert approval.args == {"order": "7", "cents": 500}
        assert approval.schema is not None
        assert approval.schema["properties"]["cents"]["type"] == "integer"
        assert approval.description == "Refund an order, in cents."
        assert approval.step == "shop:approval:refund:call-1"
        assert shop.refunds == []

        decided = client.approve_sync(
            approval.approval_id, args={"order": "7", "cents": 300}, by="user:ann"
        )
        assert decided.status == "approved"
        assert run.result_sync() == "tool said: refunded 300 on order 7"
        steps = {s.name: s for s in run.steps_sync()}
        assert list(steps) == [
            "shop:model-request-1",
            "shop:model-request-1:done",
            "shop:approval:refund:call-1",
            "shop:tool:refund:call-1:approved",
            "shop:model-request-2",
            "shop:model-request-2:done",
            "later",
        ]
        # the decision is the run's data: who, when, what
        kept = steps["shop:approval:refund:call-1"].output["data"]
        assert (kept["decision"], kept["by"], kept["args"]) == (
            "approve",
            "user:ann",
            {"order": "7", "cents": 300},
        )
        assert isinstance(kept["at"], float)
        again = client.get_approval_sync(approval.approval_id)
        assert again.status == "approved"
        assert again.decision is not None
        assert again.decision["by"] == "user:ann"
        assert again.decision["at"].endswith("Z")
        assert pending(client) == []
    # the replay after the sleep asked nobody, and called neither the model nor the tool
    assert (shop.model, shop.refunds) == (2, [("7", 300)])


@pytest.mark.parametrize("face", FACES)
def test_a_rejected_call_tells_the_model_why_and_never_runs(
    client: stepline.Client, face: str
) -> None:
    shop = Shop()
    fn = function(client, build(shop), face)
    with TestEnv(client, [fn]) as env:
        run = env.start_sync(fn, {})
        env.settle_sync()
        [approval] = pending(client, function=fn)
        decided = client.reject_sync(approval.approval_id, "over the refund limit", by="user:bo")
        assert decided.status == "rejected"
        assert decided.decision is not None
        assert (decided.decision["reason"], decided.decision["by"]) == (
            "over the refund limit",
            "user:bo",
        )
        assert run.result_sync() == "tool said: over the refund limit"
        names = [s.name for s in run.steps_sync()]
        assert not any(":tool:" in name for name in names)
    assert shop.refunds == []
    assert shop.model == 2


def test_a_tool_that_raises_approval_required_waits_too(client: stepline.Client) -> None:
    shop = Shop()
    fn = function(client, build(shop, raises=True), "async")
    with TestEnv(client, [fn]) as env:
        run = env.start_sync(fn, {})
        env.settle_sync()
        [approval] = pending(client)
        assert approval.tool == "refund"
        client.approve_sync(approval.approval_id, by="user:ann")
        assert run.result_sync() == "tool said: refunded 500 on order 7"
        names = [s.name for s in run.steps_sync()]
        # the call that asked is a step of its own; the approved call another
        assert names[2:4] == ["shop:tool:refund:call-1", "shop:approval:refund:call-1"]
        assert "shop:tool:refund:call-1:approved" in names
    assert shop.refunds == [("7", 500)]


def test_edited_arguments_are_checked_against_the_tools_schema(client: stepline.Client) -> None:
    shop = Shop()
    fn = function(client, build(shop), "async")
    with TestEnv(client, [fn]) as env:
        run = env.start_sync(fn, {})
        env.settle_sync()
        [approval] = pending(client)
        with pytest.raises(stepline.ApprovalInvalidError) as refused:
            client.approve_sync(approval.approval_id, args={"order": 7, "cents": "lots"}, by="a")
        assert "$.order: want string, got number" in str(refused.value)
        assert "$.cents: want integer, got string" in str(refused.value)
        with pytest.raises(stepline.ApprovalInvalidError, match="required"):
            client.approve_sync(approval.approval_id, args={"order": "7"}, by="a")
        with pytest.raises(stepline.ApprovalInvalidError, match="by"):
            client.approve_sync(approval.approval_id, by="")
        # still pending: a refused decision is no decision
        [still] = pending(client)
        assert still.status == "pending"
        client.approve_sync(approval.approval_id, by="a")
        assert run.result_sync() == "tool said: refunded 500 on order 7"
        with pytest.raises(stepline.ApprovalDecidedError, match="approved"):
            client.reject_sync(approval.approval_id, "too late", by="b")
        with pytest.raises(stepline.ApprovalNotFoundError):
            client.approve_sync(f"{run.run_id}-{'0' * 40}", by="a")
        with pytest.raises(stepline.ApprovalNotFoundError):
            client.get_approval_sync("not-an-approval")


@pytest.mark.parametrize("on_timeout", ["reject", "fail"])
def test_no_decision_within_the_timeout_rejects_or_fails(
    client: stepline.Client, on_timeout: str
) -> None:
    shop = Shop()
    agent = build(shop, approval_timeout="2h", on_approval_timeout=on_timeout)
    fn = function(client, agent, "async")
    with TestEnv(client, [fn]) as env:
        run = env.start_sync(fn, {})
        env.settle_sync()
        [approval] = pending(client)
        assert approval.until is not None
        assert approval.asked_at is not None
        assert approval.until - approval.asked_at == dt.timedelta(hours=2)
        env.advance_sync(dt.timedelta(hours=2, seconds=1))
        if on_timeout == "reject":
            assert run.result_sync() == "tool said: No one approved this tool call within 2:00:00."
        else:
            with pytest.raises(stepline.RunFailedError, match="no decision"):
                run.result_sync()
        assert client.get_approval_sync(approval.approval_id).status == "timed_out"
        assert pending(client) == []
    assert shop.refunds == []


def test_listing_per_function_and_per_app(client: stepline.Client) -> None:
    shop = Shop()
    first, second = function(client, build(shop), "async"), function(client, build(shop), "sync")
    with TestEnv(client, [first, second]) as env:
        runs = [env.start_sync(first, {}), env.start_sync(second, {}), env.start_sync(first, {})]
        env.settle_sync()
        assert len(pending(client)) == 3
        assert {a.run_id for a in pending(client, function=first)} == {
            runs[0].run_id,
            runs[2].run_id,
        }
        assert [a.run_id for a in pending(client, function="ask-sync")] == [runs[1].run_id]
        assert len(pending(client, app_id="ai-approvals")) == 3
        assert pending(client, app_id="another-app") == []
        page, cursor = client.approvals_sync(limit=2)
        rest, end = client.approvals_sync(limit=2, cursor=cursor)
        assert (len(page), len(rest), end) == (2, 1, None)
        assert {a.approval_id for a in page + rest} == {a.approval_id for a in pending(client)}
        for run in runs:
            run.cancel_sync()
        assert pending(client) == []


def test_the_agent_takes_a_timeout_and_a_policy_it_understands() -> None:
    shop = Shop()
    for wrong in ({"approval_timeout": "soon"}, {"approval_timeout": 0}):
        with pytest.raises(stepline.ConfigError, match="approval_timeout"):
            build(shop, **wrong)
    with pytest.raises(stepline.ConfigError, match="on_approval_timeout"):
        build(shop, on_approval_timeout="ignore")
    assert issubclass(ApprovalTimeoutError, stepline.NonRetriableError)
