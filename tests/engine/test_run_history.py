"""A run's history over REST: ``GET /v1/runs/{id}/history`` on both stores.

A run that reserves, charges (the charge fails once, then succeeds), sleeps, waits for an
event that never comes and ends answers its transitions oldest first: queued, started,
the lease of the call that ran the reserve and the charge's first attempt, the reserve's
end, the charge's start (it waits to be retried from there), its failed attempt with the
error and the retry time, the second attempt's lease, the charge's end, the sleep's start
and end, the wait's start and timeout, the run's end; each with its place (``seq``), time,
type and step. An unknown run is a 404. The pure builder orders same-instant transitions
as they happen and reads a cancelled run's reason.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

import stepline
from stepline._status import RunStatus
from stepline.engine._model import Run, StepRecord, StepStatus
from stepline.engine._runs.history import history_of
from stepline.engine._store.attempts import StepAttempt
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.engines import finished, only_run, running

from .test_replay_step import api


def shop() -> tuple[stepline.Client, stepline.Function]:
    client = dev_client()

    @client.function(id="shop", retries=2, trigger=stepline.TriggerEvent(event="history/shop"))
    def shop(ctx: stepline.SyncContext) -> dict[str, Any]:
        ctx.step.run("reserve", lambda: {"reserved": True})

        def charge() -> int:
            if ctx.attempt < 1:
                raise ConnectionError("card declined")
            return 42

        charged = ctx.step.run("charge", charge)
        ctx.step.sleep("cool-off", dt.timedelta(milliseconds=50))
        ctx.step.wait_for_event("confirm", event="history/confirm", timeout="100ms")
        return {"charged": charged}

    return client, shop


def test_history_lists_every_recorded_transition_in_order(db: str) -> None:
    client, fn = shop()

    async def scenario() -> list[dict[str, Any]]:
        async with running(db, apps=[(client, [fn])]) as engine, api(engine) as rest:
            await engine.send({"name": "history/shop"})
            run = await finished(engine, await only_run(engine, "t-shop"))
            assert run.status is RunStatus.COMPLETED
            missing = await rest.get("/v1/runs/no-such-run/history")
            assert missing.status_code == 404
            answer = await rest.get(f"/v1/runs/{run.run_id}/history")
            assert answer.status_code == 200
            data: list[dict[str, Any]] = answer.json()["data"]
            return data

    found = arun(scenario())
    assert [t["seq"] for t in found] == list(range(len(found)))
    ats = [t["at"] for t in found]
    assert ats == sorted(ats)  # RFC 3339 with a fixed width: sorted as text is sorted in time
    types = [(t["type"], t["step_name"]) for t in found]
    assert types[:2] == [("queued", None), ("started", None)]
    assert types[-1] == ("completed", None)
    assert found[-1]["detail"] == {"status": "Completed", "output": {"charged": 42}}
    order = [pair for pair in types if pair[1] is not None]
    assert order == [
        ("leased", "charge"),  # the call that ran the reserve and the charge's first attempt
        ("step_completed", "reserve"),
        ("step_started", "charge"),  # waiting to be retried from here
        ("attempt_failed", "charge"),
        ("leased", "charge"),
        ("step_completed", "charge"),
        ("sleep_started", "cool-off"),
        ("slept", "cool-off"),
        ("waiting_for_event", "confirm"),
        ("wait_timed_out", "confirm"),
    ], order
    failed = next(t for t in found if t["type"] == "attempt_failed")
    assert failed["detail"]["attempt"] == 1
    assert failed["detail"]["error"]["name"] == "ConnectionError"
    assert "card declined" in failed["detail"]["error"]["message"]
    assert failed["detail"]["retry_at"].endswith("Z")
    charge = next(t for t in found if t["type"] == "step_completed" and t["step_name"] == "charge")
    assert charge["detail"] == {"op": "StepRun", "attempts": 2, "output": 42}
    sleep = next(t for t in found if t["type"] == "sleep_started")
    assert sleep["detail"]["until"].endswith("Z")
    wait = next(t for t in found if t["type"] == "waiting_for_event")
    assert wait["detail"]["event"] == "history/confirm"


def test_same_instant_transitions_keep_their_order_and_a_cancel_its_reason() -> None:
    run = Run(
        run_id="r1",
        function_id="f",
        app_id="a",
        status=RunStatus.CANCELLED,
        events=[{"name": "e", "data": {}}],
        event_ids=["e1"],
        created_at=10.0,
        started_at=10.0,
        ended_at=20.0,
        cancel_reason="by hand",
        notices=[{"kind": "version_moved", "to": "v2", "at": 12.0}],
    )
    steps = [
        StepRecord("r1", "s1", "one", "StepRun", StepStatus.COMPLETED, memo={"data": 1},
                   attempts=1, started_at=10.0, ended_at=10.0),
        StepRecord("r1", "s2", "nap", "Sleep", StepStatus.CANCELLED, started_at=11.0,
                   ended_at=20.0, wait={"until": 99.0}),
    ]  # fmt: skip
    attempts = [StepAttempt("r1", "step", 1, 10.0, 10.5, {"name": "E", "message": "x"}, 11.0)]
    found = [(t.type, t.step_name, t.at) for t in history_of(run, steps, attempts)]
    assert found == [
        ("queued", None, 10.0),
        ("started", None, 10.0),
        ("leased", None, 10.0),  # the call that failed outside any step
        ("step_completed", "one", 10.0),  # recorded as reported: no start of its own
        ("call_failed", None, 10.5),
        ("sleep_started", "nap", 11.0),
        ("notice", None, 12.0),
        ("step_cancelled", "nap", 20.0),
        ("cancelled", None, 20.0),
    ]
    assert history_of(run, steps, attempts)[-1].detail == {
        "status": "Cancelled",
        "reason": "by hand",
    }
    with pytest.raises(StopIteration):
        next(t for t in history_of(run, steps, []) if t.type == "call_failed")
