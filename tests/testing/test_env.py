"""``TestEnv`` life cycle, errors and clients."""

from __future__ import annotations

import datetime as dt
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

import stepline
from stepline.testing import RunWaitingError, TestEnv
from tests._support.clients import dev_client
from tests._support.virtual_time import START

client = dev_client("env")

T = TypeVar("T")


@client.function(id="echo", trigger=stepline.TriggerEvent(event="t/echo"))
def echo(ctx: stepline.SyncContext) -> object:
    return ctx.event.data.get("value")


@client.function(id="broken", trigger=stepline.TriggerEvent(event="t/broken"), retries=0)
async def broken(ctx: stepline.Context) -> None:
    raise stepline.NonRetriableError("nope")


@client.function(
    id="single",
    trigger=stepline.TriggerEvent(event="t/single"),
    singleton=stepline.Singleton(mode="skip"),
)
async def single(ctx: stepline.Context) -> str:
    await ctx.step.sleep("hold", dt.timedelta(hours=1))
    return "done"


async def alert(ctx: stepline.Context) -> str:
    message = ctx.event.data["error"]["message"]
    return str(await ctx.step.run("alert", lambda: f"alerted: {message}"))


@client.function(
    id="pay", trigger=stepline.TriggerEvent(event="t/pay"), retries=0, on_failure=alert
)
async def pay(ctx: stepline.Context) -> None:
    raise ValueError("card declined")


FUNCTIONS = [echo, broken, single, pay]

#: attempts of ``flaky``'s step per run, to fail its first
attempts: dict[str, int] = {}


@client.function(id="rest", trigger=stepline.TriggerEvent(event="t/rest"), retries=3)
async def rest(ctx: stepline.Context) -> str:
    await ctx.step.sleep("overnight", dt.timedelta(days=1))

    def flaky() -> str:
        attempts[ctx.run_id] = attempts.get(ctx.run_id, 0) + 1
        if attempts[ctx.run_id] == 1:
            raise RuntimeError("a server slow to start")  # retried after a backoff
        return "rested"

    return str(await ctx.step.run("flaky", flaky))


def test_results_failures_and_listing() -> None:
    with TestEnv(client, FUNCTIONS, start=START) as env:
        first = env.start_sync(echo, {"value": 1})
        second = env.start_sync("echo", {"value": 2})
        assert (first.result_sync(), second.result_sync()) == (1, 2)
        # oldest first; runs created at the same virtual instant come in no set order
        assert set(env.runs_sync(echo)) == {first, second}
        with pytest.raises(stepline.RunFailedError, match="nope") as caught:
            env.start_sync(broken).result_sync()
        assert caught.value.error["name"] == "NonRetriableError"
        assert len(env.runs_sync(echo)) + len(env.runs_sync(broken)) == 3
        info = first.describe_sync()
        assert info.status is stepline.RunStatus.COMPLETED
        assert info.output == 1
        assert info.ended_at == START


def test_a_failure_handler_runs_and_can_be_mocked() -> None:
    with TestEnv(client, FUNCTIONS, start=START) as env:
        with pytest.raises(stepline.RunFailedError, match="card declined"):
            env.start_sync(pay).result_sync()
        env.settle_sync()
        (handled,) = env.runs_sync("pay-failure")
        assert handled.result_sync() == "alerted: card declined"
    with TestEnv(client, FUNCTIONS, start=START) as env:
        assert pay.on_failure is not None
        env.mock_step(pay.on_failure, "alert", returns="paged")
        with pytest.raises(stepline.RunFailedError):
            env.start_sync(pay).result_sync()
        env.settle_sync()
        (handled,) = env.runs_sync(pay.on_failure)
        assert handled.result_sync() == "paged"


def test_errors_name_what_went_wrong() -> None:
    with TestEnv(client, FUNCTIONS) as env:
        with pytest.raises(stepline.FunctionNotFoundError, match="sync the app"):
            env.start_sync("no-such-function")
        with pytest.raises(stepline.RunNotFoundError):
            env.get_run("no-such-run").result_sync()
        env.start_sync(single)
        with pytest.raises(stepline.RunNotStartedError, match="singleton"):
            env.start_sync(single)


def test_a_production_client_works_with_signatures_on_the_virtual_clock() -> None:
    prod = stepline.Client(
        app_id="prod",
        is_production=True,
        signing_key="signkey-test-" + "ab" * 32,
        event_key="evt-key",
    )

    @prod.function(id="slow", trigger=stepline.TriggerEvent(event="t/slow"))
    async def slow(ctx: stepline.Context) -> str:
        await ctx.step.sleep("month", dt.timedelta(days=30))
        return "signed and on time"

    with TestEnv(prod, [slow]) as env:
        prod.send_sync(stepline.Event(name="t/slow"))
        (run,) = env.runs_sync(slow)
        # a signature older than the SDK's freshness window would fail here
        assert run.result_sync() == "signed and on time"
        assert prod.get_run_sync(run.run_id).describe().status is stepline.RunStatus.COMPLETED


def test_a_production_client_without_keys_is_served_as_in_dev_mode() -> None:
    cloud = stepline.Client(app_id="cloud", is_production=True, environ={})

    @cloud.function(id="notify", trigger=stepline.TriggerEvent(event="t/notify"))
    def notify(ctx: stepline.SyncContext) -> list[str]:
        ctx.step.sleep("later", dt.timedelta(hours=1))
        return ctx.step.send_event("fan-out", stepline.Event(name="t/notified"))

    with TestEnv(cloud, [notify]) as env:
        cloud.send_sync(stepline.Event(name="t/notify"))
        (run,) = env.runs_sync(notify)
        (event_id,) = run.result_sync()
        assert env.step_calls(notify, "fan-out")[0].output == [event_id]
    assert cloud.settings.mode == "cloud"


def test_two_envs_for_two_apps_at_once() -> None:
    other = dev_client("other")

    @other.function(id="echo", trigger=stepline.TriggerEvent(event="t/echo"))
    def other_echo(ctx: stepline.SyncContext) -> str:
        return "other"

    with TestEnv(client, FUNCTIONS) as one, TestEnv(other, [other_echo]) as two:
        client.send_sync(stepline.Event(name="t/echo", data={"value": "one"}))
        other.send_sync(stepline.Event(name="t/echo"))
        assert [r.result_sync() for r in one.runs_sync()] == ["one"]
        assert [r.result_sync() for r in two.runs_sync()] == ["other"]


def test_a_client_cannot_serve_two_envs_at_once() -> None:
    with TestEnv(client, FUNCTIONS), pytest.raises(stepline.ConfigError, match="two test envs"):
        TestEnv(client, FUNCTIONS).__enter__()


def test_an_env_that_is_not_open_says_so() -> None:
    env = TestEnv(client, FUNCTIONS)
    with pytest.raises(stepline.ConfigError, match="not open"):
        env.start_sync(echo)
    env.close()  # closing an env that never opened is fine


def test_caller_mode_needs_a_sync_test() -> None:
    async def scenario() -> None:
        async with TestEnv(client, FUNCTIONS, sync_functions="caller"):
            pass

    with pytest.raises(stepline.ConfigError, match="caller"):
        _run(scenario())
    with pytest.raises(stepline.ConfigError, match="sync_functions"):
        TestEnv(client, FUNCTIONS, sync_functions="threads")  # type: ignore[arg-type]


@pytest.mark.slow
def test_a_call_waiting_for_a_thread_is_named_in_the_timeout() -> None:
    async def scenario() -> None:
        with TestEnv(client, FUNCTIONS, sync_functions="caller", timeout=0.5) as env:
            run = await env.start(echo, {"value": 1})  # nobody blocks in a *_sync method
            with pytest.raises(stepline.RunTimeoutError, match="wait for a thread"):
                await run.result()
            assert run.result_sync() == 1

    _run(scenario())


def test_the_clients_own_result_skips_time_as_the_envs_does() -> None:
    """``handle.result()`` through the client (in a test or in the app's own route) is
    a long poll of the engine: under auto-skip, time moves to each next job for it too,
    through a day's sleep and a retry's backoff, instead of standing still under it."""
    with TestEnv(client, [rest], start=START) as env:
        assert client.start_sync(rest).result(timeout=20) == "rested"
        assert client.execute_sync(rest, timeout=20) == "rested"  # a start held to the end

        async def from_async() -> object:
            return await (await client.start(rest)).result(timeout=20)

        assert _run(from_async()) == "rested"
        assert env.now - START >= dt.timedelta(days=3)
    assert len(attempts) == 3
    assert set(attempts.values()) == {2}


def test_without_auto_skip_the_clients_result_leaves_time_alone() -> None:
    with TestEnv(client, [rest], start=START, auto_skip=False) as env:
        handle = client.start_sync(rest)
        with pytest.raises(stepline.RunTimeoutError):
            handle.result(timeout=0.5)
        assert env.now == START
        assert handle.status() is stepline.RunStatus.RUNNING


def test_a_run_nothing_can_end_is_reported_not_waited_for() -> None:
    from stepline.engine._model import Run, RunStatus

    with TestEnv(client, FUNCTIONS, start=START) as env:
        # a run the engine has no job for (made by hand): result() must not hang
        record = Run("orphan", "env-echo", "env", RunStatus.RUNNING, [], [], START.timestamp())

        async def insert() -> None:
            await env.engine.store.atomic(lambda tx: tx.insert_run(record))

        env._host.call_sync(insert)
        with pytest.raises(RunWaitingError, match="nothing is scheduled"):
            env.get_run("orphan").result_sync()


def _run(coro: Coroutine[Any, Any, T]) -> T:
    import asyncio

    return asyncio.run(coro)
