"""Step mocks and the step-call log."""

from __future__ import annotations

import datetime as dt

import pytest

import stepline
from stepline.testing import StepCall, TestEnv
from tests._support.clients import dev_client
from tests._support.virtual_time import START

client = dev_client("mocks")
charged: list[int] = []


def charge_card(amount: int) -> dict[str, object]:
    charged.append(amount)
    return {"charge_id": "real", "amount": amount}


@client.function(id="checkout", trigger=stepline.TriggerEvent(event="t/checkout"))
async def checkout(ctx: stepline.Context) -> dict[str, object]:
    amount = int(ctx.event.data["amount"])
    charge = await ctx.step.run("charge", charge_card, amount)
    receipt = await ctx.step.run("receipt", lambda c: f"receipt for {c['charge_id']}", charge)
    await ctx.step.sleep("cool-off", dt.timedelta(hours=1))
    await ctx.step.send_event("notify", stepline.Event(name="t/charged", data=charge))
    return {"charge": charge, "receipt": receipt}


@client.function(id="sync-checkout", trigger=stepline.TriggerEvent(event="t/sync"), retries=1)
def sync_checkout(ctx: stepline.SyncContext) -> str:
    charge = ctx.step.run("charge", charge_card, 5)
    return ctx.step.run("receipt", lambda c: f"receipt for {c['charge_id']}", charge)


@client.function(id="child", trigger=stepline.TriggerEvent(event="t/child"))
async def child(ctx: stepline.Context) -> str:
    return "real child"


@client.function(id="orchestrator", trigger=stepline.TriggerEvent(event="t/orchestrate"))
async def orchestrator(ctx: stepline.Context) -> dict[str, object]:
    out = await ctx.step.invoke("call-child", function=child, data={"x": 1})
    got = await ctx.step.wait_for_event(
        "approval", event="t/approved", timeout=dt.timedelta(days=1)
    )
    return {"child": out, "approved_by": None if got is None else got.data["by"]}


FUNCTIONS = [checkout, sync_checkout, child, orchestrator]


def test_a_mocked_steps_output_flows_into_later_steps() -> None:
    charged.clear()
    with TestEnv(client, FUNCTIONS, start=START) as env:
        mock = env.mock_step(checkout, "charge", returns={"charge_id": "ch_test", "amount": 0})
        run = env.start_sync(checkout, {"amount": 42})
        out = run.result_sync()
        assert out["receipt"] == "receipt for ch_test"
        assert out["charge"] == {"charge_id": "ch_test", "amount": 0}
        assert charged == []  # the real step never ran
        assert mock.call_count == 1
        assert mock.calls[0].args == (42,)
        # the replacement is memoized as the step's output, as the real one would be
        charge_step = next(s for s in run.steps_sync() if s.name == "charge")
        assert charge_step.output == {"charge_id": "ch_test", "amount": 0}


def test_step_calls_say_which_steps_ran_with_what() -> None:
    charged.clear()
    with TestEnv(client, FUNCTIONS, start=START) as env:
        run = env.start_sync(checkout, {"amount": 7})
        run.result_sync()
        calls = env.step_calls(checkout)
        # each step's code ran once, though the function was called again for every step
        assert [c.step for c in calls] == ["charge", "receipt", "notify"]
        charge = calls[0]
        assert charge == StepCall(
            function_id="mocks-checkout",
            step="charge",
            args=(7,),
            run_id=run.run_id,
            attempt=0,
            mocked=False,
            output={"charge_id": "real", "amount": 7},
        )
        assert env.step_calls("checkout", "receipt")[0].output == "receipt for real"
        assert charged == [7]
        assert env.step_calls(orchestrator) == []


def test_a_mock_that_raises_fails_the_step_and_is_retried() -> None:
    with TestEnv(client, FUNCTIONS, start=START, retry_jitter=0) as env:
        env.mock_step(sync_checkout, "charge", raises=ConnectionError("card network down"))
        with pytest.raises(stepline.RunFailedError, match="card network down"):
            env.start_sync(sync_checkout).result_sync()
        calls = env.step_calls(sync_checkout, "charge")
        assert [(c.attempt, c.mocked, type(c.error)) for c in calls] == [
            (0, True, ConnectionError),
            (1, True, ConnectionError),
        ]
        assert env.step_calls(sync_checkout, "receipt") == []


def test_a_mock_handler_gets_the_steps_arguments() -> None:
    with TestEnv(client, FUNCTIONS, start=START) as env:
        attempts: list[int] = []

        def flaky_charge(amount: int) -> dict[str, object]:
            attempts.append(amount)
            if len(attempts) == 1:
                raise TimeoutError("first try times out")
            return {"charge_id": f"ch_{amount}"}

        env.mock_step("sync-checkout", "charge", handler=flaky_charge)
        assert env.start_sync(sync_checkout).result_sync() == "receipt for ch_5"
        assert attempts == [5, 5]


def test_mocked_invoke_and_wait_for_event() -> None:
    with TestEnv(client, FUNCTIONS, start=START) as env:
        env.mock_step(orchestrator, "call-child", handler=lambda data: {"mocked": data})
        env.mock_step(
            orchestrator, "approval", returns=stepline.Event(name="t/approved", data={"by": "ann"})
        )
        run = env.start_sync(orchestrator)
        assert run.result_sync() == {"child": {"mocked": {"x": 1}}, "approved_by": "ann"}
        assert env.now == START  # nothing waited
        assert env.runs_sync(child) == []


def test_unmocked_invoke_and_wait_for_event_use_the_engine() -> None:
    with TestEnv(client, FUNCTIONS, start=START) as env:
        env.mock_step(orchestrator, "approval", returns=None)
        assert env.start_sync(orchestrator).result_sync() == {
            "child": "real child",
            "approved_by": None,
        }
        assert len(env.runs_sync(child)) == 1


def test_mocks_belong_to_one_env() -> None:
    charged.clear()
    with TestEnv(client, FUNCTIONS, start=START) as env:
        env.mock_step(checkout, "charge", returns={"charge_id": "ch_test"})
    with TestEnv(client, FUNCTIONS, start=START) as env:
        assert (
            env.start_sync(checkout, {"amount": 1}).result_sync()["charge"]["charge_id"] == "real"
        )


def test_mock_step_takes_exactly_one_replacement() -> None:
    with TestEnv(client, FUNCTIONS) as env:
        with pytest.raises(TypeError, match="exactly one"):
            env.mock_step(checkout, "charge")
        with pytest.raises(TypeError, match="exactly one"):
            env.mock_step(checkout, "charge", returns=1, raises=ValueError)


@pytest.mark.anyio
async def test_async_mock_handler_in_an_async_function() -> None:
    async def fake_charge(amount: int) -> dict[str, object]:
        return {"charge_id": f"async_{amount}"}

    async with TestEnv(client, FUNCTIONS, start=START) as env:
        env.mock_step(checkout, "charge", handler=fake_charge)
        env.mock_step(checkout, "notify", returns=["evt-1"])
        out = await (await env.start(checkout, {"amount": 3})).result()
        assert out["receipt"] == "receipt for async_3"
        (notify,) = env.step_calls(checkout, "notify")
        assert notify.mocked
        assert notify.output == ["evt-1"]
        assert notify.args[0].name == "t/charged"
