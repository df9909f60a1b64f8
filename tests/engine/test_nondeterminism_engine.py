"""Engine-side non-determinism detection, for SDKs that report nothing.

What an engine sees from outside an SDK when a run's code changed: a call that targets a
planned step the new code no longer reaches. inngest-py fails it with
``StepUnexpectedError``, inngest-js answers 500 naming ``requestedStep`` and its
``foundSteps`` (or, per the SDK spec, a ``StepNotFound`` op), and a function may return
without reaching the step. A scripted SDK (real HTTP) gives each answer; the engine records
a notice (source ``engine``). A ``StepNotFound`` op ends the step and the run is discovered
again, as Inngest does; an official SDK's failure fails the run as on Inngest's server, and
the same failure under Stepline's ``X-Inngest-Sdk`` is discovered again instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from stepline._protocol.hashing import hash_step_id
from stepline.engine import RunStatus
from stepline.engine._model import Run, StepRecord
from tests._support.aio import arun
from tests._support.engines import finished, only_run
from tests._support.stub_server import StubServer

from .test_protocol_stub import SDK, start

pytestmark = [pytest.mark.slow]

Answer = Callable[[], tuple[Any, ...]]

PY_UNEXPECTED: Answer = lambda: (  # noqa: E731
    500,
    {
        "code": "step_unexpected",
        "message": 'found step "charge card" when targeting a different step',
        "name": "StepUnexpectedError",
    },
    SDK,
)
JS_NOT_FOUND: Answer = lambda: (  # noqa: E731
    500,
    {
        "error": 'Could not find step "charge" to run; timed out.',
        "requestedStep": "hx",
        "foundSteps": [{"id": "h-card", "name": "charge card", "displayName": "charge card"}],
        "totalFoundSteps": 1,
    },
    {**SDK, "x-inngest-no-retry": "false"},
)
SPEC_NOT_FOUND: Answer = lambda: (206, [{"op": "StepNotFound", "id": "hx"}], SDK)  # noqa: E731
RETURNED: Answer = lambda: (200, "returned early", SDK)  # noqa: E731


def from_stepline(answer: Answer) -> Answer:
    """``answer`` under Stepline's SDK header instead of inngest-py's."""

    def answered() -> tuple[Any, ...]:
        status, body, sent = answer()
        return status, body, {**sent, "x-inngest-sdk": "stepline-py:v0.1.0"}

    return answered


def targeted(req: dict[str, Any]) -> str:
    return str(parse_qs(urlsplit(req["path"]).query)["stepId"][0])


def planned_then(gone: Answer) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """v1 planned ``charge`` and ``ship`` in parallel; the code answering the call for
    ``charge`` no longer has it (``gone``), ``ship`` still runs, and the run then ends."""

    def answer(req: dict[str, Any]) -> tuple[Any, ...]:
        memos, target = req["body"]["steps"], targeted(req)
        if target == "hx":
            return gone()
        if target == "hy":
            return 206, [{"op": "StepRun", "id": "hy", "displayName": "ship", "data": 2}], SDK
        if not memos:
            ops = [
                {"op": "StepPlanned", "id": "hx", "displayName": "charge"},
                {"op": "StepPlanned", "id": "hy", "displayName": "ship"},
            ]
            return 206, ops, SDK
        return 200, {"memos": sorted(memos)}, SDK

    return answer


def scenario(db: str, stub: StubServer) -> tuple[Run, list[StepRecord]]:
    async def go() -> tuple[Run, list[StepRecord]]:
        engine = await start(db, stub)
        try:
            await engine.send({"name": "s/go"})
            run = await finished(engine, await only_run(engine, "stub-fn"))
            return run, await engine.store.read(lambda tx: tx.get_steps(run.run_id))
        finally:
            await engine.stop()

    return arun(go())


@pytest.mark.parametrize(
    ("gone", "new"),
    [
        (
            from_stepline(PY_UNEXPECTED),
            [{"id": hash_step_id("charge card"), "name": "charge card"}],
        ),
        (from_stepline(JS_NOT_FOUND), [{"id": "h-card", "name": "charge card"}]),
        (SPEC_NOT_FOUND, []),
    ],
    ids=["stepline-unexpected", "stepline-not-found", "spec"],
)
def test_a_planned_step_no_longer_reached_is_noticed_and_the_run_goes_on(
    db: str, stub_server: StubServer, gone: Answer, new: list[dict[str, Any]]
) -> None:
    stub_server.answer = planned_then(gone)
    run, steps = scenario(db, stub_server)
    # the run was discovered again (with ship's memo only) and finished: not retried to death
    assert run.status is RunStatus.COMPLETED
    assert json.loads(run.output or "") == {"memos": ["hy"]}
    [notice] = run.notices
    assert (notice["kind"], notice["source"], notice["policy"]) == (
        "nondeterminism",
        "engine",
        "warn",
    )
    assert notice["missing"] == [{"id": "hx", "name": "charge"}]
    assert notice["new"] == new
    assert "'charge'" in notice["message"]
    charge = next(s for s in steps if s.step_id == "hx")
    assert charge.status.value == "Cancelled"
    assert charge.error == {
        "name": "StepNotFound",
        "message": "the app's code no longer reaches this step",
    }
    assert "hx" not in run.stack
    calls = [r for r in stub_server.requests if targeted(r) == "hx"]
    assert len(calls) == 1  # one call, no retries of a call that cannot succeed


@pytest.mark.parametrize(
    ("gone", "new", "output"),
    [
        (
            PY_UNEXPECTED,
            [{"id": hash_step_id("charge card"), "name": "charge card"}],
            PY_UNEXPECTED()[1],
        ),
        (JS_NOT_FOUND, [{"id": "h-card", "name": "charge card"}], JS_NOT_FOUND()[1]),
    ],
    ids=["inngest-py", "inngest-js"],
)
def test_an_official_sdk_failing_for_a_step_it_no_longer_reaches_fails_the_run(
    db: str, stub_server: StubServer, gone: Answer, new: list[dict[str, Any]], output: Any
) -> None:
    """As on Inngest's server: the call is retried, then the run fails with its answer."""
    stub_server.answer = planned_then(gone)
    run, steps = scenario(db, stub_server)
    assert run.status is RunStatus.FAILED
    assert json.loads(run.output or "") == output
    [notice] = run.notices
    assert (notice["source"], notice["policy"]) == ("engine", "fail")
    assert notice["missing"] == [{"id": "hx", "name": "charge"}]
    assert notice["new"] == new
    assert next(s for s in steps if s.step_id == "hx").status.value == "Failed"
    assert len([r for r in stub_server.requests if targeted(r) == "hx"]) == 3  # attempts


def test_a_function_that_returns_without_reaching_the_planned_step_is_noticed(
    db: str, stub_server: StubServer
) -> None:
    stub_server.answer = planned_then(RETURNED)
    run, _steps = scenario(db, stub_server)
    assert run.status is RunStatus.COMPLETED
    assert json.loads(run.output or "") == "returned early"
    [notice] = run.notices
    assert (notice["source"], notice["missing"]) == ("engine", [{"id": "hx", "name": "charge"}])


def test_an_ordinary_failure_of_a_targeted_call_is_no_notice(
    db: str, stub_server: StubServer
) -> None:
    error = {"name": "ValueError", "message": "card declined"}
    stub_server.answer = planned_then(lambda: (500, error, {**SDK, "x-inngest-no-retry": "true"}))
    run, _steps = scenario(db, stub_server)
    assert run.status is RunStatus.FAILED
    assert run.notices == []


def test_a_step_lost_again_after_rediscovery_fails_as_before(
    db: str, stub_server: StubServer
) -> None:
    """An app that keeps planning a step it then never reaches does not loop forever."""

    def erratic(req: dict[str, Any]) -> tuple[Any, ...]:
        target = targeted(req)
        if target == "hx":
            return from_stepline(PY_UNEXPECTED)()
        if target == "hy":
            return 206, [{"op": "StepRun", "id": "hy", "displayName": "ship", "data": 2}], SDK
        ops = [{"op": "StepPlanned", "id": "hx", "displayName": "charge"}]
        if "hy" not in req["body"]["steps"]:
            ops.append({"op": "StepPlanned", "id": "hy", "displayName": "ship"})
        return 206, ops, SDK

    stub_server.answer = erratic
    run, steps = scenario(db, stub_server)
    assert run.status is RunStatus.FAILED
    assert json.loads(run.output or "")["name"] == "StepUnexpectedError"
    [notice] = run.notices  # the first loss; the second is an ordinary failure
    assert notice["missing"] == [{"id": "hx", "name": "charge"}]
    charge = next(s for s in steps if s.step_id == "hx")
    assert charge.status.value == "Failed"  # planned again after the loss, then failed
    calls = [r for r in stub_server.requests if targeted(r) == "hx"]
    assert len(calls) == 1 + 3  # lost once, then the function's three attempts
