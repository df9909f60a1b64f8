"""Replay from a step: a new run that reuses the steps recorded before
the chosen one and runs from there; the original is left as it was, and linked.

Counters prove which steps ran: in-process on both stores, and once with the app and the
engine in processes of their own (``tests/apps/replay.py``, ``tests/apps/engine_server.py``).
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import stepline
from stepline._api.run_info import RunInfo
from stepline._protocol.hashing import hash_step_id
from stepline.engine import Engine
from stepline.engine._cli.runs import run_detail
from stepline.engine._http.api import build_app
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.databases import database
from tests._support.engines import finished, only_run, running
from tests._support.polling import wait_until

from . import deploys

STEP_3 = hash_step_id("step-3")


def five_steps() -> tuple[
    stepline.Client, stepline.Function, collections.Counter[str], dict[str, bool]
]:
    """``t-five``: steps 1-5 each count their runs; step 3 fails while ``fail["on"]``."""
    client = dev_client()
    counts: collections.Counter[str] = collections.Counter()
    fail = {"on": True}

    def step(n: int) -> int:
        counts[f"step-{n}"] += 1
        if n == 3 and fail["on"]:
            raise ValueError("step 3 broke")
        return n

    @client.function(id="five", retries=0, trigger=stepline.TriggerEvent(event="replay/five"))
    def five(ctx: stepline.SyncContext) -> list[int]:
        return [ctx.step.run(f"step-{n}", step, n) for n in range(1, 6)]

    return client, five, counts, fail


@contextlib.asynccontextmanager
async def api(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(engine))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://127.0.0.1:8288", headers={"x-stepline-csrf": "1"}
    ) as client:
        yield client


def ran(counts: collections.Counter[str]) -> list[int]:
    return [counts[f"step-{n}"] for n in range(1, 6)]


@pytest.mark.parametrize("named_by", ["name", "hashed id"])
def test_replay_from_step_3_of_a_failed_run_runs_only_steps_3_to_5(db: str, named_by: str) -> None:
    client, five, counts, fail = five_steps()

    async def scenario() -> None:
        async with running(db, apps=[(client, [five])]) as engine, api(engine) as rest:
            await engine.send({"name": "replay/five"})
            original = await finished(engine, await only_run(engine, "t-five"))
            assert original.status.value == "Failed"
            assert ran(counts) == [1, 1, 1, 0, 0]
            before = [(s.name, s.status.value) for s in await engine.run_steps(original.run_id)]

            fail["on"] = False
            step = "step-3" if named_by == "name" else STEP_3
            answer = await rest.post(f"/v1/runs/{original.run_id}/replay", json={"from_step": step})
            assert answer.status_code == 201, answer.text
            made = answer.json()["data"]
            assert made["replay_of"] == original.run_id
            assert made["replay_from_step"] == STEP_3
            assert made["replay_from_step_name"] == "step-3"
            replayed = await finished(engine, made["run_id"])
            assert replayed.status.value == "Completed"
            assert replayed.output == "[1,2,3,4,5]"
            assert ran(counts) == [1, 1, 2, 1, 1], "steps 1-2 came from the original's record"
            steps = await engine.run_steps(replayed.run_id)
            assert [(s.name, s.status.value) for s in steps] == [
                (f"step-{n}", "Completed") for n in range(1, 6)
            ]
            view = (await rest.get(f"/v1/runs/{replayed.run_id}")).json()["data"]
            assert (view["replay_of"], view["replay_from_step"]) == (original.run_id, STEP_3)
            # the origin names the step as written, beside the hashed id that links it
            assert view["replay_from_step_name"] == "step-3"
            assert view["origin"] == f"replay:{original.run_id}:{STEP_3}:step-3"
            # `stepline runs show` says what it replays (text and JSON)
            info = RunInfo.from_wire(view)
            assert (info.replay_of, info.replay_from_step) == (original.run_id, "step-3")
            shown = run_detail(info, [], now=dt.datetime.now(dt.timezone.utc))
            assert f"Replay of {original.run_id} from step 'step-3'" in shown.splitlines()
            assert info.to_json()["replay_of"] == original.run_id
            # the original is left exactly as it was
            again = await engine.get_run(original.run_id)
            assert again.status.value == "Failed"
            after = [(s.name, s.status.value) for s in await engine.run_steps(original.run_id)]
            assert after == before == [
                ("step-1", "Completed"), ("step-2", "Completed"), ("step-3", "Failed"),
            ]  # fmt: skip

    arun(scenario())


def test_replay_without_a_step_reruns_everything_and_refuses_what_it_cannot(db: str) -> None:
    client, five, counts, fail = five_steps()
    fail["on"] = False
    sleeper = dev_client("s")

    @sleeper.function(id="sleeps", trigger=stepline.TriggerEvent(event="replay/sleep"))
    async def sleeps(ctx: stepline.Context) -> None:
        await ctx.step.sleep("nap", "1h")

    async def scenario() -> None:
        apps = [(client, [five]), (sleeper, [sleeps])]
        async with running(db, apps=apps) as engine, api(engine) as rest:
            await engine.send({"name": "replay/five"})
            done = await finished(engine, await only_run(engine, "t-five"))
            assert ran(counts) == [1] * 5
            answer = await rest.post(f"/v1/runs/{done.run_id}/replay")
            assert answer.status_code == 201, answer.text
            assert answer.json()["data"]["replay_from_step"] is None
            assert answer.json()["data"]["replay_from_step_name"] is None
            await finished(engine, answer.json()["data"]["run_id"])
            assert ran(counts) == [2] * 5

            missing = await rest.post(
                f"/v1/runs/{done.run_id}/replay", json={"from_step": "step-9"}
            )
            assert missing.status_code == 404
            assert "step-9" in missing.json()["error"]
            unknown = await rest.post("/v1/runs/01NOSUCHRUN/replay", json={"from_step": "a"})
            assert unknown.status_code == 404
            bad = await rest.post(f"/v1/runs/{done.run_id}/replay", json={"from_step": 3})
            assert bad.status_code == 400

            await engine.send({"name": "replay/sleep"})
            live = await only_run(engine, "s-sleeps")
            refused = await rest.post(f"/v1/runs/{live}/replay", json={"from_step": "nap"})
            assert refused.status_code == 409
            assert "still" in refused.json()["error"]

    arun(scenario())


@pytest.mark.process
@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_replay_from_a_step_with_real_app_and_engine_processes(store: str, tmp_path: Path) -> None:
    where = tmp_path / "app"
    where.mkdir()
    (where / "fail").touch()

    def counts() -> list[int]:
        found = collections.Counter((where / "ran").read_text().split())
        return ran(found)

    with (
        database(store, tmp_path) as db,
        deploys.engine(db, tmp_path / "engine.log") as url,
        deploys.app("replay", url, tmp_path / "app.log", REPLAY_DIR=str(where)) as app_url,
    ):
        deploys.sync(url, app_url)
        sent = httpx.post(f"{url}/v1/events", json={"name": "replay/five", "data": {}})
        assert sent.status_code in (200, 201), sent.text
        (event_id,) = sent.json()["data"]["ids"]

        def run_of_event() -> Any:
            return deploys.get(url, f"events/{event_id}/runs") or None

        run_id = wait_until(run_of_event, timeout=20, message="the run")[0]["run_id"]

        def ended(run: str) -> Any:
            found = deploys.get(url, f"runs/{run}")
            return found if found["status"] in ("Completed", "Failed") else None

        assert wait_until(lambda: ended(run_id), timeout=30)["status"] == "Failed"
        assert counts() == [1, 1, 1, 0, 0]

        os.remove(where / "fail")
        answer = httpx.post(f"{url}/v1/runs/{run_id}/replay", json={"from_step": "step-3"})
        assert answer.status_code == 201, answer.text
        new = answer.json()["data"]["run_id"]
        done = wait_until(lambda: ended(new), timeout=30)
        assert (done["status"], done["output"]) == ("Completed", [1, 2, 3, 4, 5])
        assert done["replay_of"] == run_id
        assert counts() == [1, 1, 2, 1, 1]
        assert deploys.get(url, f"runs/{run_id}")["status"] == "Failed"
