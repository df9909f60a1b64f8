"""A step's state in words, on every surface that shows a run's steps.

A ``step.run`` that failed an attempt and waits to be retried answers, over REST, its
kind (``StepRun``), its attempts, the function's ``max_attempts`` and ``next_retry_at``;
``stepline runs show`` words it ``Retrying at HH:MM:SS (attempt 2 of 4)``. A step that
failed for good is a ``StepRun`` that is ``Failed`` (not a ``StepFailed`` op). The Django
admin words a step through the same ``StepInfo.state``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx

import stepline
from stepline._api import runs as _runs
from stepline._api.step_state import describe, kind
from stepline._status import RunStatus
from stepline.engine import Engine, ManualClock
from stepline.engine._cli import runs as cli_runs
from stepline.engine._http.api import build_app
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.engines import finished, only_run, quiet, running

START = 1_800_000_000.0  # 2027-01-15T08:00:00Z
UTC = dt.timezone.utc


def retried_app(client: stepline.Client) -> list[stepline.Function]:
    @client.function(id="shaky", trigger=stepline.TriggerEvent(event="t/shaky"), retries=3)
    def shaky(ctx: stepline.SyncContext) -> str:
        def charge() -> str:
            raise RuntimeError(f"declined {ctx.attempt + 1}")

        return str(ctx.step.run("charge", charge))

    @client.function(id="broken", trigger=stepline.TriggerEvent(event="t/broken"), retries=0)
    def broken(ctx: stepline.SyncContext) -> None:
        def never() -> None:
            raise ValueError("still broken")

        ctx.step.run("never", never)

    return [shaky, broken]


async def steps_of(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    transport = httpx.ASGITransport(app=build_app(engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        answer = await http.get(f"/v1/runs/{run_id}/steps")
        assert answer.status_code == 200, answer.text
        data: list[dict[str, Any]] = answer.json()["data"]
        return data


def test_a_step_waiting_to_retry_says_when_and_which_attempt(db: str) -> None:
    client = dev_client()
    clock = ManualClock(start=START)

    async def scenario() -> None:
        options = {"retry_scale": 1.0, "retry_jitter": 0.0}
        async with running(db, clock=clock, apps=[(client, retried_app(client))], **options) as e:
            await e.send({"name": "t/shaky"})
            run_id = await only_run(e, "t-shaky")
            await quiet(e)  # the first attempt failed; the clock stands still: no retry yet
            [step] = await steps_of(e, run_id)
            assert (step["status"], step["kind"], step["attempts"]) == ("Planned", "StepRun", 1)
            assert step["max_attempts"] == 4
            assert step["next_retry_at"] == "2027-01-15T08:00:15.000Z"  # 15 s: Go's first delay

            info = _runs.StepInfo.from_wire(step)
            assert info.state(UTC) == "Retrying at 08:00:15 (attempt 2 of 4)"
            run = _runs.RunInfo.from_wire({"run_id": run_id, "status": "Running"})
            now = dt.datetime.fromtimestamp(START, UTC)
            shown = cli_runs.run_detail(run, [info], now=now, tz=UTC)
            assert "charge  StepRun  Retrying at 08:00:15 (attempt 2 of 4)  1" in shown

    arun(scenario())


def test_a_failed_step_is_a_failed_step_run(db: str) -> None:
    client = dev_client()
    clock = ManualClock(start=START)

    async def scenario() -> None:
        async with running(db, clock=clock, apps=[(client, retried_app(client))]) as e:
            await e.send({"name": "t/broken"})
            run = await finished(e, await only_run(e, "t-broken"), clock)
            assert run.status is RunStatus.FAILED
            [step] = await steps_of(e, run.run_id)
            assert step["op"] in ("StepError", "StepFailed")  # as the SDK reported it
            assert (step["kind"], step["status"], step["next_retry_at"]) == (
                "StepRun",
                "Failed",
                None,
            )
            info = _runs.StepInfo.from_wire(step)
            now = dt.datetime.fromtimestamp(START, UTC)
            shown = cli_runs.run_detail(_runs.RunInfo.from_wire(run_view(run)), [info], now=now)
            [row] = [line for line in shown.splitlines() if line.startswith("never")]
            assert row.split()[1:3] == ["StepRun", "Failed"]

    arun(scenario())


def run_view(run: Any) -> dict[str, Any]:
    return {"run_id": run.run_id, "function_id": run.function_id, "status": run.status.value}


def test_the_words_of_each_state() -> None:
    at = dt.datetime(2027, 1, 15, 8, 0, 15, tzinfo=UTC)
    assert describe("Failed", attempts=4, max_attempts=4) == "Failed"
    assert describe("Planned", attempts=0, max_attempts=4) == "Planned"
    assert describe("Sleeping", attempts=0) == "Sleeping"
    assert (
        describe("Planned", attempts=2, max_attempts=4, next_retry_at=at, tz=UTC)
        == "Retrying at 08:00:15 (attempt 3 of 4)"
    )
    assert describe("Planned", attempts=1) == "Retrying (attempt 2)"
    assert [kind(op) for op in ("StepError", "StepFailed", "StepPlanned", "StepRun", "Sleep")] == [
        "StepRun",
        "StepRun",
        "StepRun",
        "StepRun",
        "Sleep",
    ]
