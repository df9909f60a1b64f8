"""A ``NonRetriableError`` raised in a step is that step's failure, listed once, under it.

It ends the function, not just the step. Stepline's SDK names the step in its failed
answer (or, when steps ran before it in the same call, reports it failed beside them and
the next call raises it again): either way the run's timeline shows the step ``Failed``
with the error, and ``GET /v1/runs/{id}/attempts`` lists one attempt, under the step,
none under the calls that failed outside any step (``"step"``).
"""

from __future__ import annotations

import pytest

import stepline
from stepline._status import RunStatus
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.engines import finished, only_run, running

from .test_step_attempts import api


@pytest.mark.parametrize("before", [False, True], ids=["first-step", "after-a-step"])
@pytest.mark.parametrize("checkpointing", [True, False], ids=["checkpointing", "answer"])
def test_a_non_retriable_error_in_a_step_is_listed_under_it(
    db: str, before: bool, checkpointing: bool
) -> None:
    client = dev_client()
    calls: list[int] = []

    @client.function(id="pay", trigger=stepline.TriggerEvent(event="t/pay"), retries=3)
    def pay(ctx: stepline.SyncContext) -> None:
        if before:
            ctx.step.run("reserve", lambda: 1)

        def charge() -> None:
            calls.append(ctx.attempt)
            raise stepline.NonRetriableError("card stolen")

        ctx.step.run("charge", charge)

    async def scenario() -> None:
        async with running(db, apps=[(client, [pay])], checkpointing=checkpointing) as engine:
            await engine.send({"name": "t/pay"})
            run = await finished(engine, await only_run(engine, "t-pay"))
            assert run.status is RunStatus.FAILED
            assert calls == [0], "not retried"

            steps = (await api(engine, f"/v1/runs/{run.run_id}/steps"))["data"]
            charge = steps[-1]
            assert (charge["name"], charge["status"]) == ("charge", "Failed")
            assert charge["error"]["name"] == "NonRetriableError"
            assert charge["error"]["message"] == "card stolen"

            attempts = (await api(engine, f"/v1/runs/{run.run_id}/attempts"))["data"]
            assert [(a["step_id"], a["status"]) for a in attempts] == [(charge["id"], "Failed")]

    arun(scenario())
