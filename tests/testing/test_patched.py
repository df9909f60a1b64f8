"""``ctx.patched`` and ``ctx.deprecate_patch`` under ``stepline.testing.TestEnv``."""

from __future__ import annotations

import datetime as dt

import pytest

import stepline
from stepline.testing import TestEnv
from tests._support.clients import dev_client
from tests._support.virtual_time import START

client = dev_client("patches")
attempts: dict[str, int] = {}


def fails_once(run_id: str) -> str:
    attempts[run_id] = attempts.get(run_id, 0) + 1
    if attempts[run_id] == 1:
        raise RuntimeError("first attempt fails")
    return "charged"


@client.function(id="patched", trigger=stepline.TriggerEvent(event="t/patched"))
async def patched(ctx: stepline.Context) -> dict[str, object]:
    new = ctx.patched("charge-first")
    if new:
        await ctx.step.run("charge", fails_once, ctx.run_id)
    await ctx.step.sleep("nap", dt.timedelta(days=1))
    return {"new": new, "again": ctx.patched("charge-first")}


@client.function(id="retired", trigger=stepline.TriggerEvent(event="t/retired"))
def retired(ctx: stepline.SyncContext) -> str:
    ctx.deprecate_patch("charge-first")
    ctx.step.sleep("nap", dt.timedelta(days=1))
    return ctx.step.run("after", lambda: "done")


@pytest.fixture(autouse=True)
def fresh_attempts() -> None:
    attempts.clear()


def test_a_new_run_takes_the_patched_branch_and_keeps_it_across_replays_and_retries() -> None:
    with TestEnv(client, [patched, retired], start=START) as env:
        run = env.start_sync(patched)
        assert run.result_sync() == {"new": True, "again": True}
        steps = run.steps_sync()
        assert [s.name for s in steps] == ["patched: charge-first", "charge", "nap"]
        assert (steps[0].op, steps[0].output, steps[0].attempts) == ("StepRun", True, 1)
        assert steps[1].attempts == 2
        # The marker is not a step call: only the charge's code ran (twice: one retry).
        assert [c.step for c in env.step_calls(patched)] == ["charge", "charge"]


def test_deprecate_patch_records_nothing() -> None:
    with TestEnv(client, [patched, retired], start=START) as env:
        run = env.start_sync(retired)
        assert run.result_sync() == "done"
        assert [s.name for s in run.steps_sync()] == ["nap", "after"]
