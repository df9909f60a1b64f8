"""Over budget, a person decides: ``TokenBudget(on_exceeded="approve")``.

An agent (Pydantic AI's ``FunctionModel``) asks for a tool twice, then answers: three
model requests. With a budget of 1 token the first request is made (nothing used yet)
and each later one waits for a person, through the same approvals as tool calls (the
engine's ``/v1/approvals``, here with the client). Approved, that one request is made and
the next asks again; rejected, the run fails with ``TokenBudgetExceededError`` carrying
the reason. Each function sleeps after its agent run, so that the call after the sleep
replays every recorded step: counts that do not move say nobody was asked again and the
model was not called again. The period budget's cases run on SQLite and Postgres.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import stepline
from stepline._webkit import approvals as kit_approvals
from stepline.ai import DurableAgent, TokenBudget, TokenBudgetExceededError
from stepline.testing import TestEnv
from tests._support.databases import STORES, database

DAY = dt.timedelta(days=1)
START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone.utc)
FACES = ["async", "sync"]


def build(calls: list[str], budget: TokenBudget, **options: Any) -> DurableAgent[None, str]:
    """Two tool calls, one a model request, then the answer."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls.append("model")
        asked = sum(isinstance(m, ModelResponse) for m in messages)
        if asked < 2:
            return ModelResponse(parts=[ToolCallPart("lookup", {"n": asked}, f"call-{asked}")])
        return ModelResponse(parts=[TextPart("done")])

    inner: Agent[None, str] = Agent(FunctionModel(respond), name="helper")

    @inner.tool_plain
    def lookup(n: int) -> str:
        """Look something up."""
        calls.append(f"tool {n}")
        return f"found {n}"

    return DurableAgent(inner, stream=False, budget=budget, **options)


def function(client: stepline.Client, agent: DurableAgent[None, str], face: str) -> Any:
    trigger = stepline.TriggerEvent(event="help/asked")

    async def ask(ctx: stepline.Context) -> str:
        output = (await agent.on(ctx).run("hi")).output
        await ctx.step.sleep("later", "1s")
        return output

    def ask_sync(ctx: stepline.SyncContext) -> str:
        output = agent.on(ctx).run_sync("hi").output
        ctx.step.sleep("later", "1s")
        return output

    chosen: Callable[..., Any] = ask if face == "async" else ask_sync
    return client.function(id=f"help-{face}", trigger=trigger, retries=2)(chosen)


@pytest.fixture(params=STORES)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def client() -> stepline.Client:
    return stepline.Client("ai-budget-approvals", is_production=False, environ={})


def pending(client: stepline.Client) -> list[stepline.Approval]:
    found, _ = client.approvals_sync()
    return found


@pytest.mark.parametrize("face", FACES)
def test_each_request_over_a_period_budget_waits_for_its_own_approval(
    client: stepline.Client, db: str, face: str
) -> None:
    calls: list[str] = []
    budget = TokenBudget(1, key="event.data.customer", period=DAY, on_exceeded="approve")
    fn = function(client, build(calls, budget), face)
    with TestEnv(client, [fn], database=db, start=START) as env:
        run = env.start_sync(fn, {"customer": "c42"})
        env.settle_sync()
        [first] = pending(client)
        assert calls == ["model", "tool 0"]  # the second request is held
        assert (first.status, first.tool, first.agent) == ("pending", None, "helper")
        assert first.subject == "going over the token budget 'helper'"
        asked = first.budget
        assert asked is not None
        assert asked["used"] >= 1
        assert {k: asked[k] for k in ("name", "tokens", "key", "key_expression")} == {
            "name": "helper",
            "tokens": 1,
            "key": '"c42"',
            "key_expression": "event.data.customer",
        }
        assert (asked["period_seconds"], asked["request"]) == (86_400, "helper:model-request-2")
        window_end = dt.datetime.fromtimestamp(asked["window_end"], dt.timezone.utc)
        assert window_end == dt.datetime(2026, 3, 3, tzinfo=dt.timezone.utc)
        with pytest.raises(stepline.ApprovalInvalidError, match="takes no arguments"):
            client.approve_sync(first.approval_id, args={"tokens": 10}, by="user:ann")

        client.approve_sync(first.approval_id, by="user:ann")
        env.settle_sync()
        [second] = pending(client)  # approved once: the next request asks again
        assert second.budget is not None
        assert second.budget["request"] == "helper:model-request-3"
        assert second.budget["used"] > asked["used"]
        client.approve_sync(second.approval_id, by="user:bob")
        assert run.result_sync() == "done"
        names = [s.name for s in run.steps_sync()]
        decided = [client.get_approval_sync(a.approval_id) for a in (first, second)]
    assert calls == ["model", "tool 0", "model", "tool 1", "model"]  # no replay called again
    assert [n for n in names if n.endswith(":budget-approval")] == [
        "helper:model-request-2:budget-approval",
        "helper:model-request-3:budget-approval",
    ]
    assert names.index("helper:model-request-2:budget-approval") < names.index(
        "helper:model-request-2"
    )
    assert [(d.status, (d.decision or {}).get("by")) for d in decided] == [
        ("approved", "user:ann"),
        ("approved", "user:bob"),
    ]


@pytest.mark.parametrize("face", FACES)
def test_a_rejection_fails_the_run_with_the_budget_error_and_its_reason(
    client: stepline.Client, db: str, face: str
) -> None:
    calls: list[str] = []
    budget = TokenBudget(1, key="event.data.customer", period=DAY, on_exceeded="approve")
    fn = function(client, build(calls, budget), face)
    with TestEnv(client, [fn], database=db, start=START) as env:
        run = env.start_sync(fn, {"customer": "c42"})
        env.settle_sync()
        [approval] = pending(client)
        assert approval.budget is not None
        used = approval.budget["used"]
        client.reject_sync(approval.approval_id, "over the plan's limit", by="user:ann")
        with pytest.raises(stepline.RunFailedError) as failed:
            run.result_sync()
        decided = client.get_approval_sync(approval.approval_id)
        assert pending(client) == []
    message = str(failed.value)
    assert "token budget 'helper' of 1 tokens per day is spent" in message
    assert f"{used} tokens used this period" in message  # the figure the person saw
    assert "helper:model-request-2 was not made" in message
    assert "going over it was rejected by user:ann: over the plan's limit" in message
    assert (decided.status, decided.decision and decided.decision["reason"]) == (
        "rejected",
        "over the plan's limit",
    )
    assert calls == ["model", "tool 0"]


def test_a_runs_own_budget_asks_too_and_the_error_carries_the_reason(
    client: stepline.Client,
) -> None:
    calls: list[str] = []
    fn = function(client, build(calls, TokenBudget(1, on_exceeded="approve")), "async")
    with TestEnv(client, [fn]) as env:
        run = env.start_sync(fn, {})
        env.settle_sync()
        [approval] = pending(client)
        assert approval.budget is not None
        assert approval.subject == "going over the run's token budget"
        assert (approval.budget["name"], approval.budget["period_seconds"]) == (None, None)
        assert approval.budget["key_expression"] is None
        shown = kit_approvals.view(approval, "/api")  # the web kit's routes show it too
        assert (shown["tool"], shown["budget"]) == (None, approval.budget)
        assert shown["links"]["approve"] == f"/api/approvals/{approval.approval_id}/approve"
        client.reject_sync(approval.approval_id, "enough", by="user:ann")
        with pytest.raises(stepline.RunFailedError) as failed:
            run.result_sync()
    message = str(failed.value)
    assert "the run's token budget of 1 tokens is spent" in message
    assert "going over it was rejected by user:ann: enough" in message
    assert calls == ["model", "tool 0"]


def test_no_decision_in_time_fails_the_run_with_the_budget_error(
    client: stepline.Client,
) -> None:
    calls: list[str] = []
    budget = TokenBudget(1, on_exceeded="approve")
    fn = function(client, build(calls, budget, approval_timeout="2h"), "async")
    with TestEnv(client, [fn]) as env:
        run = env.start_sync(fn, {})
        env.settle_sync()
        [approval] = pending(client)
        env.advance_sync(dt.timedelta(hours=2, seconds=1))
        with pytest.raises(
            stepline.RunFailedError, match="going over it was not approved within 2:00:00"
        ):
            run.result_sync()
        assert client.get_approval_sync(approval.approval_id).status == "timed_out"
    assert calls == ["model", "tool 0"]


def test_approve_is_an_accepted_choice() -> None:
    assert TokenBudget(10, on_exceeded="approve").on_exceeded == "approve"
    with pytest.raises(stepline.ConfigError, match="'fail', 'wait' or 'approve'"):
        TokenBudget(10, on_exceeded="ask")  # type: ignore[arg-type]
    error = TokenBudget(10, period=DAY).exceeded(
        "b", '"c"', 12, step_id="x:model-request-1", reason="rejected by ann"
    )
    assert isinstance(error, TokenBudgetExceededError)
    assert error.reason == "rejected by ann"
    assert "going over it was rejected by ann" in str(error)
