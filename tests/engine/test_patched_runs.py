"""``ctx.patched`` on the real engine: a deploy while a run sleeps (SQLite and Postgres).

v1 of a function starts a run that sleeps; v2 (same function id, served again by the same
app) adds a patched branch before the sleep. The old run keeps the old path, a new run
takes the new one, and each answer survives later replays and retries.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
from typing import Any

import pytest

import stepline
from stepline.engine import Engine, ManualClock
from stepline.engine._store import RunFilter
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.engines import advance, running

EVENT = stepline.TriggerEvent(event="t/flow")
NAP = dt.timedelta(hours=1)


class Flaky:
    """Step callables that fail on their first attempt in each run."""

    def __init__(self) -> None:
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()

    def __call__(self, run_id: str, step: str) -> str:
        self.calls[run_id, step] += 1
        if self.calls[run_id, step] == 1:
            raise RuntimeError(f"{step} fails once")
        return step


def versions(client: stepline.Client, face: str, flaky: Flaky) -> tuple[Any, Any]:
    """v1 and v2 of the function ``flow``, as sync or async handlers."""
    if face == "sync":

        @client.function(id="flow", trigger=EVENT)
        def v1(ctx: stepline.SyncContext) -> str:
            ctx.step.run("a", lambda: "a")
            ctx.step.sleep("nap", NAP)
            ctx.step.run("b", lambda: "b")
            return "v1"

        @client.function(id="flow", trigger=EVENT)
        def v2(ctx: stepline.SyncContext) -> str:
            ctx.step.run("a", lambda: "a")
            path = "old path"
            if ctx.patched("new-path"):
                path = ctx.step.run("new", flaky, ctx.run_id, "new path")
            ctx.step.sleep("nap", NAP)
            ctx.step.run("b", flaky, ctx.run_id, "b")
            return path

        return v1, v2

    @client.function(id="flow", trigger=EVENT)
    async def av1(ctx: stepline.Context) -> str:
        await ctx.step.run("a", lambda: "a")
        await ctx.step.sleep("nap", NAP)
        await ctx.step.run("b", lambda: "b")
        return "v1"

    @client.function(id="flow", trigger=EVENT)
    async def av2(ctx: stepline.Context) -> str:
        await ctx.step.run("a", lambda: "a")
        path = "old path"
        if ctx.patched("new-path"):
            path = await ctx.step.run("new", flaky, ctx.run_id, "new path")
        await ctx.step.sleep("nap", NAP)
        await ctx.step.run("b", flaky, ctx.run_id, "b")
        return path

    return av1, av2


async def runs(engine: Engine) -> list[str]:
    found = await engine.list_runs(RunFilter(function_id="t-flow"))
    return sorted((r.run_id for r in found), key=lambda run_id: run_id)


async def steps_by_name(engine: Engine, run_id: str) -> dict[str, Any]:
    return {s.name: s for s in await engine.run_steps(run_id)}


@pytest.mark.parametrize("face", ["sync", "async"])
def test_patched_keeps_old_runs_on_the_old_path(db: str, face: str) -> None:
    client = dev_client()
    flaky = Flaky()
    v1, v2 = versions(client, face, flaky)

    async def scenario() -> None:
        clock = ManualClock()
        async with running(db, clock=clock, apps=[(client, [v1])]) as engine:
            await engine.send({"name": "t/flow"})
            await advance(engine, clock, 1)
            [old] = await runs(engine)
            assert (await steps_by_name(engine, old))["nap"].status.value == "Sleeping"

            await engine.serve(client, [v2])  # the deploy: same app, same function id
            await engine.send({"name": "t/flow"})
            await advance(engine, clock, 1)
            [new] = [r for r in await runs(engine) if r != old]
            assert (await steps_by_name(engine, new))["nap"].status.value == "Sleeping"

            await advance(engine, clock, NAP.total_seconds() + 60)
            for run_id, path, answer in ((old, "old path", False), (new, "new path", True)):
                run = await engine.get_run(run_id)
                assert run.status.value == "Completed", run
                assert json.loads(run.output or "") == path
                assert run.notices == [], "a patch is not a non-determinism"
                steps = await steps_by_name(engine, run_id)
                marker = steps["patched: new-path"]  # the marker's display name
                assert marker.memo == {"data": answer}
                assert marker.attempts == 1, "recorded once, replayed after"
                assert ("new" in steps) is answer
                assert steps["b"].attempts == 2, "b's retry replayed the recorded answer"
            # The old run never ran the new path's code; the new run ran it twice (a retry).
            assert flaky.calls[old, "new path"] == 0
            assert flaky.calls[new, "new path"] == 2

    arun(scenario())
