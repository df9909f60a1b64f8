"""Non-determinism notices: what the engine records when a replay diverged.

A scripted SDK (a real HTTP server, answers crafted per request) plays an app whose code
changed under a sleeping run: it reports the divergence in ``X-Stepline-Nondeterminism``
on every later replay. The engine records one notice (names resolved from the run's steps
and the answer's ops), counts it once, and shows it in the REST run view and ``RunInfo``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest

from stepline import RunInfo
from stepline.engine import Engine, ManualClock, RunStatus
from stepline.engine._http.api import build_app
from tests._support.aio import arun
from tests._support.engines import finished, only_run
from tests._support.stub_server import StubServer

from .test_protocol_stub import SDK, start

pytestmark = [pytest.mark.slow]

HEADER = "X-Stepline-Nondeterminism"


def op(kind: str, step_id: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"op": kind, "id": step_id, "name": name, "displayName": name, **extra}


def v2_after_sleep(policy: str) -> Any:
    """v1 ran ``a`` then slept; v2 renamed ``a`` to ``b`` and added ``c`` after it."""

    def answer(req: dict[str, Any]) -> tuple[Any, ...]:
        memos = set(req["body"]["steps"])
        if not memos:
            return 206, [op("StepRun", "ha", "a", data=1)], SDK
        if memos == {"ha"}:
            return 206, [op("Sleep", "hs", "nap", opts={"duration": "1h"})], SDK
        report = {"policy": policy, "missing": ["ha"], "reordered": [], "new": ["hb"]}
        if policy == "fail":
            headers = {**SDK, "x-inngest-no-retry": "true", HEADER: json.dumps(report)}
            error = {"name": "NonDeterminismError", "message": "step 'a' was not reached"}
            return 500, error, headers
        if memos == {"ha", "hs"}:
            return 206, [op("StepRun", "hb", "b", data=2)], {**SDK, HEADER: json.dumps(report)}
        report["new"] = ["hb", "hc"]  # later replays report the same divergence, and more
        if memos == {"ha", "hs", "hb"}:
            return 206, [op("StepRun", "hc", "c", data=3)], {**SDK, HEADER: json.dumps(report)}
        return 200, "done", {**SDK, HEADER: json.dumps(report)}

    return answer


async def rest_view(engine: Engine, run_id: str) -> dict[str, Any]:
    transport = httpx.ASGITransport(app=build_app(engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8288") as http:
        single = (await http.get(f"/v1/runs/{run_id}")).json()["data"]
        listed = (await http.get("/v1/runs")).json()["data"]
    [item] = [r for r in listed if r["run_id"] == run_id]
    assert item["notices"] == single["notices"]
    assert "app_version" in item
    return dict(single)


def nondeterminism_count(metrics: str) -> float:
    lines = [ln for ln in metrics.splitlines() if ln.startswith("stepline_nondeterminism_total{")]
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines if 'function="stub-fn"' in ln)


def test_a_reported_divergence_is_recorded_once_with_step_names(
    db: str, stub_server: StubServer, caplog: pytest.LogCaptureFixture
) -> None:
    stub_server.answer = v2_after_sleep("warn")

    async def scenario() -> tuple[Any, dict[str, Any], float]:
        clock = ManualClock(1_800_000_000.0)
        engine = await start(db, stub_server, clock)
        try:
            await engine.send({"name": "s/go"})
            run = await finished(engine, await only_run(engine, "stub-fn"), clock)
            return (
                run,
                await rest_view(engine, run.run_id),
                nondeterminism_count(await engine.metrics()),
            )
        finally:
            await engine.stop()

    with caplog.at_level(logging.WARNING, logger="stepline.engine"):
        run, view, counted = arun(scenario())
    assert run.status is RunStatus.COMPLETED  # policy warn: the run goes on
    # three replays reported it; one notice, with the later replay's new step merged in
    [notice] = run.notices
    assert notice["kind"] == "nondeterminism"
    assert (notice["source"], notice["policy"]) == ("sdk", "warn")
    assert notice["missing"] == [{"id": "ha", "name": "a"}]
    assert notice["reordered"] == []
    assert notice["new"] == [{"id": "hb", "name": "b"}, {"id": "hc", "name": "c"}]
    assert notice["version"] is None
    assert isinstance(notice["at"], float)
    assert "'a'" in notice["message"]
    assert "'b'" in notice["message"]
    assert "'c'" in notice["message"]
    assert counted == 1.0
    logged = [r for r in caplog.records if "did not match the recorded history" in r.message]
    assert len(logged) == 1
    assert run.run_id in logged[0].message
    assert "stub-fn" in logged[0].message
    # the REST view (single run and list item) and the client's RunInfo show it
    assert view["notices"] == run.notices
    assert view["app_version"] is None
    info = RunInfo.from_wire(view)
    assert info.notices == tuple(run.notices)
    assert info.app_version is None
    assert info.to_json()["notices"] == run.notices


def test_policy_fail_fails_the_run_with_the_error_and_the_notice(
    db: str, stub_server: StubServer
) -> None:
    stub_server.answer = v2_after_sleep("fail")

    async def scenario() -> Any:
        clock = ManualClock(1_800_000_000.0)
        engine = await start(db, stub_server, clock)
        try:
            await engine.send({"name": "s/go"})
            return await finished(engine, await only_run(engine, "stub-fn"), clock)
        finally:
            await engine.stop()

    run = arun(scenario())
    assert run.status is RunStatus.FAILED
    assert json.loads(run.output or "")["name"] == "NonDeterminismError"
    [notice] = run.notices
    assert (notice["policy"], notice["missing"]) == ("fail", [{"id": "ha", "name": "a"}])
    assert notice["new"] == [{"id": "hb", "name": None}]  # never reported as an op
    # non-retriable: one call after the sleep, not one per attempt
    after_sleep = [r for r in stub_server.requests if set(r["body"]["steps"]) == {"ha", "hs"}]
    assert len(after_sleep) == 1


def test_a_run_view_without_notices_shows_an_empty_list(db: str, stub_server: StubServer) -> None:
    stub_server.answer = lambda _req: (200, "ok", SDK)

    async def scenario() -> dict[str, Any]:
        engine = await start(db, stub_server)
        try:
            await engine.send({"name": "s/go"})
            run = await finished(engine, await only_run(engine, "stub-fn"))
            assert run.notices == []
            assert nondeterminism_count(await engine.metrics()) == 0.0
            return await rest_view(engine, run.run_id)
        finally:
            await engine.stop()

    view = arun(scenario())
    assert (view["notices"], view["app_version"]) == ([], None)
    assert RunInfo.from_wire(view).notices == ()
