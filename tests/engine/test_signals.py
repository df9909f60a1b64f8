"""Signals to a waiting run, on both stores, through REST and the client.

A signal completes the waiting step once (a second is a 409 saying so); a timeout
resumes the step with None; unknown runs, names and tokens are 404s; the unauthenticated
hook completes a wait only with the run's token, verified under the engine's keys, and
slows down a client that guesses.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

import stepline
from stepline._protocol import signals as tokens
from stepline.engine import Engine, EngineSettings
from stepline.engine._http import signals as signal_routes
from stepline.engine._http.api import build_app
from stepline.engine._store import RunFilter
from tests._support.aio import arun
from tests._support.in_process import to_engine
from tests._support.polling import await_until

KEY = "signkey-test-" + "ab" * 32

#: how many times each function's step after the wait ran, per run
AFTER: dict[str, int] = {}


def _client_and_functions(signing_key: str | None) -> tuple[stepline.Client, list[Any]]:
    client = stepline.Client("sigs", is_production=False, environ={}, signing_key=signing_key)

    @client.function(id="approve", trigger=stepline.TriggerEvent(event="sig/approve"))
    async def approve(ctx: stepline.Context) -> Any:
        token = ctx.signal_token("approved")
        await ctx.step.run("hand-out", lambda: token)
        got = await ctx.step.wait_for_signal("wait", signal="approved", timeout="1h")

        def after() -> int:
            AFTER[ctx.run_id] = AFTER.get(ctx.run_id, 0) + 1
            return AFTER[ctx.run_id]

        await ctx.step.run("after", after)
        return {"got": got, "token": token}

    @client.function(id="approve-sync", trigger=stepline.TriggerEvent(event="sig/sync"))
    def approve_sync(ctx: stepline.SyncContext) -> Any:
        return {"got": ctx.step.wait_for_signal("wait", signal="go", timeout="1h")}

    @client.function(id="short", trigger=stepline.TriggerEvent(event="sig/short"))
    async def short(ctx: stepline.Context) -> Any:
        return {"got": await ctx.step.wait_for_signal("wait", signal="late", timeout="1s")}

    return client, [approve, approve_sync, short]


@asynccontextmanager
async def engine_with(
    db: str, *, engine_keys: tuple[str, ...] = (), app_key: str | None = None
) -> AsyncIterator[tuple[Engine, stepline.Client, httpx.AsyncClient]]:
    options: dict[str, Any] = {"poll_interval": 0.05, "retry_scale": 0.0}
    engine = Engine(EngineSettings(database_url=db, signing_keys=engine_keys, **options))
    client, functions = _client_and_functions(app_key)
    api = build_app(engine)

    to_engine(client, api)
    await engine.start()
    try:
        await engine.serve(client, functions)
        transport = httpx.ASGITransport(app=api)
        headers = {"authorization": f"Bearer {KEY}"} if engine_keys else {}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1", headers=headers
        ) as http:
            yield engine, client, http
    finally:
        await engine.stop()


async def _waiting(http: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    """The run's step waiting for a signal, once it waits."""

    async def find() -> dict[str, Any] | None:
        answer = await http.get(f"/v1/runs/{run_id}/steps")
        steps = answer.json()["data"] if answer.status_code == 200 else []
        return next((s for s in steps if s["status"] == "Waiting"), None)

    return await await_until(find, timeout=10, interval=0.02, message="a waiting step")


async def _output(engine: Engine, run_id: str) -> Any:
    run = await engine.get_run(run_id)
    return json.loads(run.output or "null")


async def _run_of(engine: Engine, client: stepline.Client, function: str, event: str) -> str:
    await client.send(stepline.Event(name=event, data={}))

    async def found() -> str | None:
        runs = await engine.list_runs(RunFilter(function_id=f"sigs-{function}"))
        return runs[0].run_id if runs else None

    return await await_until(found, timeout=10, interval=0.02, message="a run")


def test_a_signal_completes_the_wait_once_and_a_second_is_409(db: str) -> None:
    async def main() -> None:
        async with engine_with(db) as (engine, client, http):
            run_id = await _run_of(engine, client, "approve", "sig/approve")
            step = await _waiting(http, run_id)
            assert step["op"] == "WaitForSignal"
            assert step["wait"]["signal"] == "approved"
            assert step["wait"]["key"].startswith(f"sig_{run_id}_")

            await client.get_run(run_id).signal("approved", {"by": "ana"})
            run = await engine.wait_for_run(run_id, timeout=15)
            assert run.status.value == "Completed"
            output = await _output(engine, run_id)
            assert output["got"] == {"by": "ana"}
            assert AFTER[run_id] == 1  # the step after the wait ran once

            with pytest.raises(stepline.SignalAlreadyReceivedError, match="already received"):
                await client.get_run(run_id).signal("approved", {"by": "bo"})
            answer = await http.post(
                f"/v1/runs/{run_id}/signals/approved", json={"data": {"by": "bo"}}
            )
            assert answer.status_code == 409, answer.text
            assert "already received signal 'approved'" in answer.json()["error"]
            # by its token too: a spent token is a 409, not a 404
            token = output["token"]
            answer = await http.post("/v1/signals", json={"signal": token, "data": 1})
            assert answer.status_code == 409, answer.text
            assert AFTER[run_id] == 1

    arun(main())


def test_signals_from_a_sync_function_and_by_key(db: str) -> None:
    async def main() -> None:
        async with engine_with(db) as (engine, client, http):
            run_id = await _run_of(engine, client, "approve-sync", "sig/sync")
            step = await _waiting(http, run_id)
            answer = await http.post(
                "/v1/signals", json={"signal": step["wait"]["key"], "data": [1, 2]}
            )
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"data": {"run_id": run_id}}
            run = await engine.wait_for_run(run_id, timeout=15)
            assert (await _output(engine, run_id)) == {"got": [1, 2]}
            assert run.status.value == "Completed"

    arun(main())


@pytest.mark.slow
def test_a_timeout_resumes_the_step_with_none(db: str) -> None:
    async def main() -> None:
        async with engine_with(db) as (engine, client, http):
            run_id = await _run_of(engine, client, "short", "sig/short")
            run = await engine.wait_for_run(run_id, timeout=15)
            assert run.status.value == "Completed"
            assert (await _output(engine, run_id)) == {"got": None}
            answer = await http.post(f"/v1/runs/{run_id}/signals/late", json={"data": 1})
            assert answer.status_code == 409, answer.text  # it timed out: nothing waits

    arun(main())


@pytest.mark.slow
def test_refusals(db: str) -> None:
    async def main() -> None:
        async with engine_with(db) as (engine, client, http):
            with pytest.raises(stepline.SignalNotWaitingError, match="not found"):
                await client.get_run("01JUNKNOWNRUN0000000000000").signal("approved")
            run_id = await _run_of(engine, client, "approve", "sig/approve")
            await _waiting(http, run_id)
            with pytest.raises(stepline.SignalNotWaitingError, match="not waiting for signal"):
                await client.get_run(run_id).signal("other")
            for body in ({"wrong": 1}, [1]):
                answer = await http.post(f"/v1/runs/{run_id}/signals/approved", json=body)
                assert answer.status_code == 400, answer.text
            answer = await http.post("/v1/signals", json={"data": 1})
            assert answer.status_code == 400
            answer = await http.post("/v1/signals", json={"signal": "nobody-waits", "data": 1})
            assert answer.status_code == 404
            assert answer.json()["code"] == "not_found"
            assert answer.json()["message"] == "no run is waiting for this signal"
            # an empty body is a null signal
            answer = await http.post(
                f"/v1/runs/{run_id}/signals/approved", headers={"x-stepline-csrf": "1"}
            )
            assert answer.status_code == 200, answer.text
            await engine.wait_for_run(run_id, timeout=15)
            assert (await _output(engine, run_id))["got"] is None

    arun(main())


def test_the_hook_takes_only_verified_tokens(db: str) -> None:
    async def main() -> None:
        async with engine_with(db, engine_keys=(KEY,), app_key=KEY) as (engine, client, http):
            run_id = await _run_of(engine, client, "approve", "sig/approve")
            step = await _waiting(http, run_id)
            token = step["wait"]["key"]
            assert token == tokens.token(KEY, run_id, "approved")
            hook = httpx.AsyncClient(  # no credentials at all
                transport=http._transport, base_url="http://127.0.0.1"
            )
            forged = tokens.token("signkey-test-" + "cd" * 32, run_id, "approved")
            answer = await hook.post(f"/v1/signals/hooks/{forged}", json={"ok": True})
            assert answer.status_code == 404, answer.text
            answer = await hook.post("/v1/signals/hooks/approved", json={"ok": True})
            assert answer.status_code == 404
            answer = await hook.post(f"/v1/signals/hooks/{token}", json={"ok": True})
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"data": {"run_id": run_id}}
            await engine.wait_for_run(run_id, timeout=15)
            assert (await _output(engine, run_id))["got"] == {"ok": True}
            answer = await hook.post(f"/v1/signals/hooks/{token}", json={"ok": False})
            assert answer.status_code == 409, answer.text
            await hook.aclose()

    arun(main())


def test_the_hook_slows_down_guessing_and_caps_bodies(tmp_path: Any) -> None:
    async def main() -> None:
        async with engine_with(str(tmp_path / "e.db")) as (engine, client, http):
            run_id = await _run_of(engine, client, "approve", "sig/approve")
            token = (await _waiting(http, run_id))["wait"]["key"]
            big = "x" * (engine.settings.max_step_output_bytes + 10)
            answer = await http.post(
                f"/v1/signals/hooks/{token}",
                content=f'"{big}"',
                headers={"content-type": "application/json"},
            )
            assert answer.status_code == 413
            statuses = []
            for n in range(signal_routes.HOOK_FAILURES + 1):
                guess = tokens.token(None, run_id, f"guess-{n}")
                statuses.append(
                    (await http.post(f"/v1/signals/hooks/{guess}", json={})).status_code
                )
            assert statuses[:-1] == [404] * signal_routes.HOOK_FAILURES
            assert statuses[-1] == 429
            # even the right token waits now: the client is refused without a lookup
            answer = await http.post(f"/v1/signals/hooks/{token}", json=1)
            assert answer.status_code == 429
            assert int(answer.headers["retry-after"]) >= 1

    arun(main())
