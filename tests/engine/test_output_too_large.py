"""A step whose output is over ``max_step_output_bytes`` fails the run, and shows as failed.

The run's timeline (``GET /v1/runs/{id}/steps``, which the dashboard draws) holds the
step, ``Failed`` with the ``StepOutputTooLarge`` error (not its output), and its attempt
is listed under the step, not as a call that failed outside any step. With and without
checkpointing (the SDK reports the step in its answer, or checkpoints it first).
"""

from __future__ import annotations

from typing import Any

import pytest

import stepline
from stepline._status import RunStatus
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.engines import finished, only_run, running

from .test_step_attempts import api


@pytest.mark.parametrize("checkpointing", [True, False], ids=["checkpointing", "answer"])
def test_a_too_large_output_fails_its_step_in_the_timeline(db: str, checkpointing: bool) -> None:
    client = dev_client()

    @client.function(id="big", trigger=stepline.TriggerEvent(event="t/big"), retries=2)
    def big(ctx: stepline.SyncContext) -> str:
        ctx.step.run("small", lambda: "ok")
        return str(ctx.step.run("huge", lambda: "x" * 5000))

    async def scenario() -> None:
        options: dict[str, Any] = {"max_step_output_bytes": 2048, "checkpointing": checkpointing}
        async with running(db, apps=[(client, [big])], **options) as engine:
            await engine.send({"name": "t/big"})
            run = await finished(engine, await only_run(engine, "t-big"))
            assert run.status is RunStatus.FAILED

            steps = (await api(engine, f"/v1/runs/{run.run_id}/steps"))["data"]
            assert [(s["name"], s["status"]) for s in steps] == [
                ("small", "Completed"),
                ("huge", "Failed"),
            ]
            huge = steps[1]
            assert huge["error"]["name"] == "StepOutputTooLarge"
            assert "max_step_output_bytes" in huge["error"]["message"]
            assert "output" not in huge  # the refused output is not kept
            assert huge["kind"] == "StepRun"

            attempts = (await api(engine, f"/v1/runs/{run.run_id}/attempts"))["data"]
            assert [(a["step_id"], a["status"]) for a in attempts] == [(huge["id"], "Failed")]

    arun(scenario())
