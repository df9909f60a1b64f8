"""Token budgets per key and period, kept by the engine; tokens counted per run and function.

A one-request agent (``FunctionModel``: a fixed answer, its usage Pydantic AI's estimate)
runs in a function triggered with a customer id. The budget of 1 token per customer per
day lets each customer's first run through (the count is 0 before it) and stops the next
one in the same day; the next day's window starts at 0 again. Every case runs on SQLite
and Postgres (the ``[postgres]`` case needs the server).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import stepline
from stepline.ai import DurableAgent, TokenBudget, TokenBudgetExceededError
from stepline.testing import TestEnv
from tests._support.databases import STORES, database

DAY = dt.timedelta(days=1)
START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone.utc)


def agent(calls: list[str], budget: TokenBudget | None) -> DurableAgent[None, str]:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls.append("model")
        return ModelResponse(
            parts=[TextPart("hello")],
        )

    inner: Agent[None, str] = Agent(FunctionModel(respond), name="helper")
    return DurableAgent(inner, stream=False, budget=budget)


def function(client: stepline.Client, durable: DurableAgent[None, str], face: str) -> Any:
    trigger = stepline.TriggerEvent(event="help/asked")

    async def ask(ctx: stepline.Context) -> str:
        return (await durable.on(ctx).run("hi")).output

    def ask_sync(ctx: stepline.SyncContext) -> str:
        return durable.on(ctx).run_sync("hi").output

    chosen: Callable[..., Any] = ask if face == "async" else ask_sync
    return client.function(id=f"help-{face}", trigger=trigger, retries=2)(chosen)


@pytest.fixture(params=STORES)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path) as url:
        yield url


def _env(client: stepline.Client, fn: Any, db: str) -> TestEnv:
    return TestEnv(client, [fn], database=db, start=START)


@pytest.mark.parametrize("face", ["async", "sync"])
def test_a_budget_per_key_and_day_fails_the_next_run_of_a_key_that_used_it(
    db: str, face: str
) -> None:
    calls: list[str] = []
    budget = TokenBudget(1, key="event.data.customer", period=DAY)
    client = stepline.Client("ai-budgets", is_production=False, environ={})
    fn = function(client, agent(calls, budget), face)
    with _env(client, fn, db) as env:
        assert env.start_sync(fn, {"customer": "a"}).result_sync() == "hello"
        second = env.start_sync(fn, {"customer": "a"})
        with pytest.raises(stepline.RunFailedError) as failed:
            second.result_sync()
        assert env.start_sync(fn, {"customer": "b"}).result_sync() == "hello"  # its own count
        env.advance_sync(DAY)
        assert env.start_sync(fn, {"customer": "a"}).result_sync() == "hello"  # a new window
        assert [s.name for s in second.steps_sync()] == []  # no request made
    message = str(failed.value)
    assert "token budget 'helper' of 1 tokens per day is spent" in message
    assert 'key "a" (event.data.customer)' in message
    assert "helper:model-request-1 was not made" in message
    assert calls == ["model"] * 3


def test_a_budget_that_waits_sleeps_until_its_window_ends_then_makes_the_request(db: str) -> None:
    calls: list[str] = []
    budget = TokenBudget(1, key="event.data.customer", period=DAY, on_exceeded="wait")
    client = stepline.Client("ai-budgets", is_production=False, environ={})
    fn = function(client, agent(calls, budget), "async")
    with TestEnv(client, [fn], database=db, start=START, auto_skip=False) as env:
        assert env.start_sync(fn, {"customer": "a"}).result_sync() == "hello"
        waiting = env.start_sync(fn, {"customer": "a"})
        env.settle_sync()
        assert waiting.describe_sync().status == "Running"
        assert calls == ["model"]
        env.advance_sync(DAY)
        assert waiting.result_sync() == "hello"
        names = [s.name for s in waiting.steps_sync()]
    assert names == [
        "helper:model-request-1:budget",  # the durable sleep to the window's end
        "helper:model-request-1",
        "helper:model-request-1:done",
    ]
    assert calls == ["model", "model"]


def test_the_engine_counts_tokens_per_run_and_per_function(db: str) -> None:
    calls: list[str] = []
    client = stepline.Client("ai-budgets", is_production=False, environ={})
    fn = function(client, agent(calls, None), "async")
    with _env(client, fn, db) as env:
        ids = [env.start_sync(fn, {"customer": c}).run_id for c in "ab"]
        for run_id in ids:
            env.get_run(run_id).result_sync()
        run = client.get_run_sync(ids[0]).tokens()
        figures = client.get_function_sync(fn).tokens("1h")
    assert run["requests"] == 1
    assert run["input_tokens"] > 0
    assert run["output_tokens"] > 0
    assert run["total_tokens"] == run["input_tokens"] + run["output_tokens"]
    assert list(run["models"]) == ["function:respond:"]  # FunctionModel names itself
    assert [s["model"] for s in run["steps"]] == ["function:respond:"]
    totals = figures["totals"]
    assert totals["requests"] == 2
    assert totals["total_tokens"] == 2 * run["total_tokens"]
    assert sum(b["runs"] for b in figures["buckets"]) == 2
    assert figures["models"]["function:respond:"]["requests"] == 2


def test_a_budget_is_checked_on_its_own_terms() -> None:
    with pytest.raises(stepline.ConfigError, match="need a period"):
        TokenBudget(10, key="event.data.customer")
    with pytest.raises(stepline.ConfigError, match="need a period"):
        TokenBudget(10, on_exceeded="wait")
    with pytest.raises(stepline.ConfigError, match=r"key=\) is not valid"):
        TokenBudget(10, key="event.data.(", period=DAY)
    with pytest.raises(stepline.ConfigError, match=r"key=\) is not valid"):
        TokenBudget(10, key="other.x", period=DAY)
    with pytest.raises(stepline.ConfigError, match="period="):
        TokenBudget(10, period=dt.timedelta(days=400))
    budget = TokenBudget(10, key="event.data.customer", period=DAY)
    assert budget.key_for({"data": {"customer": "c42"}}) == '"c42"'
    assert budget.key_for({"data": {}}) == "null"
    error = budget.exceeded("b", '"c42"', 12, step_id="x:model-request-1")
    assert isinstance(error, TokenBudgetExceededError)
    assert (error.key, error.period, error.used) == ('"c42"', DAY, 12)
