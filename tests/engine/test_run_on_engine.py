"""A run served in process, one step a call: its last step answers with its result.

Without checkpointing each call runs one step. The engine in this process asks the SDK to
answer that step at the code's next step, or with the function's result when it returns
first (``ExecutionState``'s ``run_on``): a 3-step run is 3 calls and 3 commits after its
start, not 4 and 4, and its last call replays no step just to reach the ``return``.
"""

from __future__ import annotations

import json

import stepline
from stepline.engine import RunStatus
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.engines import finished, only_run, running


def test_a_run_of_three_steps_is_three_calls(db: str) -> None:
    client = dev_client(checkpointing=False)
    calls: list[int] = []

    @client.function(id="three", trigger=stepline.TriggerEvent(event="t/three"), retries=0)
    def three(ctx: stepline.SyncContext) -> object:
        calls.append(len(calls))
        return [ctx.step.run(f"s{i}", lambda i=i: i + 1) for i in range(3)]

    async def scenario() -> None:
        async with running(db, apps=[(client, [three])], checkpointing=False) as engine:
            await engine.send({"name": "t/three", "data": {}})
            run_id = await only_run(engine, "t-three")
            run = await finished(engine, run_id)
            assert run.status is RunStatus.COMPLETED
            assert json.loads(run.output or "") == [1, 2, 3]
            steps = await engine.run_steps(run_id)
            assert [(s.name, s.memo, s.status.value) for s in steps] == [
                ("s0", {"data": 1}, "Completed"),
                ("s1", {"data": 2}, "Completed"),
                ("s2", {"data": 3}, "Completed"),
            ]
            assert len((await engine.get_run(run_id) or run).stack) == 3

    arun(scenario())
    assert len(calls) == 3, "the last step's call carried the run's result"


def test_code_failing_after_the_last_step_fails_the_run_as_before(db: str) -> None:
    client = dev_client(checkpointing=False)
    calls: list[int] = []

    @client.function(id="late", trigger=stepline.TriggerEvent(event="t/late"), retries=1)
    def late(ctx: stepline.SyncContext) -> object:
        calls.append(len(calls))
        ctx.step.run("only", lambda: "done")
        raise ValueError("after the step")

    async def scenario() -> None:
        async with running(db, apps=[(client, [late])], checkpointing=False) as engine:
            await engine.send({"name": "t/late", "data": {}})
            run_id = await only_run(engine, "t-late")
            run = await finished(engine, run_id)
            assert run.status is RunStatus.FAILED
            assert "after the step" in (run.output or "")
            steps = await engine.run_steps(run_id)
            assert [(s.name, s.memo) for s in steps] == [("only", {"data": "done"})]

    arun(scenario())
    # the step's call (its error dropped), then the attempt and its one retry
    assert len(calls) == 3
