"""The engine against a scripted SDK over real HTTP: edge cases of the wire protocol.

The stub plays an SDK (answers decided per request), so each test pins one rule of
PROTOCOL.md: AI gateway calls, streamed answers, non-SDK answers, Retry-After, large
state, malformed answers and signed calls.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from stepline._protocol import signing
from stepline.engine import Engine, EngineSettings, ManualClock, RunStatus
from stepline.engine._store import RunFilter
from tests._support.aio import arun
from tests._support.engines import finished, only_run
from tests._support.polling import await_until
from tests._support.stub_server import StubServer

pytestmark = [pytest.mark.slow]

SDK = {"x-inngest-sdk": "inngest-py:v0.5.19", "x-inngest-req-version": "2"}
KEY = "signkey-test-" + "ab" * 32


def register_body(stub: StubServer, retries: int = 2) -> dict[str, Any]:
    url = f"{stub.url}/api/inngest"
    return {
        "appName": "stub",
        "url": url,
        "sdk": "py:v0.5.19",
        "v": "0.1",
        "framework": "test",
        "functions": [
            {
                "id": "stub-fn",
                "name": "fn",
                "triggers": [{"event": "s/go"}],
                "steps": {
                    "step": {
                        "id": "step",
                        "name": "step",
                        "runtime": {"type": "http", "url": f"{url}?fnId=stub-fn&stepId=step"},
                        "retries": {"attempts": retries},
                    }
                },
            }
        ],
    }


def calls(stub: StubServer) -> list[dict[str, Any]]:
    return [r for r in stub.requests if r["path"].startswith("/api/inngest")]


async def start(db: str, stub: StubServer, clock: ManualClock | None = None, **kw: Any) -> Engine:
    options: dict[str, Any] = {"retry_scale": 0.0, "retry_jitter": 0.0, "poll_interval": 0.05}
    options.update(kw)
    engine = Engine(EngineSettings(database_url=str(db), **options), clock=clock)
    await engine.start()
    await engine.register(register_body(stub, retries=options.pop("retries", 2)))
    return engine


def test_ai_gateway_call_is_made_by_the_engine(db: str, stub_server: StubServer) -> None:
    provider = {"content": [{"type": "text", "text": "hi"}], "id": "msg_1"}

    def answer(req: dict[str, Any]) -> tuple[Any, ...]:
        if req["path"] == "/v1/messages":
            return 200, provider
        memo = req["body"]["steps"].get("ai-hash")
        if memo is None:
            op = {
                "op": "AIGateway",
                "id": "ai-hash",
                "name": "ask",
                "displayName": "ask",
                "opts": {
                    "url": f"{stub_server.url}/v1/messages",
                    "format": "anthropic",
                    "auth_key": "sk-test",
                    "headers": {"anthropic-version": "2023-06-01"},
                    "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                    "type": "step.ai.infer",
                },
            }
            return 206, [op], SDK
        return 200, memo, SDK

    stub_server.answer = answer

    async def scenario() -> None:
        # the mock provider listens on loopback, which the gateway refuses unless allowed
        engine = await start(db, stub_server, gateway_allow=("127.0.0.1/32",))
        try:
            await engine.send({"name": "s/go"})
            run = await finished(engine, await only_run(engine, "stub-fn"))
            assert run.status is RunStatus.COMPLETED
            assert json.loads(run.output or "") == {"data": provider}
        finally:
            await engine.stop()

    arun(scenario())
    [ai] = [r for r in stub_server.requests if r["path"] == "/v1/messages"]
    assert ai["headers"]["x-api-key"] == "sk-test"
    assert ai["headers"]["anthropic-version"] == "2023-06-01"
    assert ai["body"] == {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_streamed_answer_is_unwrapped(db: str, stub_server: StubServer) -> None:
    envelope = {"status": 200, "headers": SDK, "body": json.dumps({"streamed": True})}
    stub_server.answer = lambda _req: (201, b"   " + json.dumps(envelope).encode(), SDK)

    async def scenario() -> None:
        engine = await start(db, stub_server)
        try:
            await engine.send({"name": "s/go"})
            run = await finished(engine, await only_run(engine, "stub-fn"))
            assert (run.status, json.loads(run.output or "")) == (
                RunStatus.COMPLETED,
                {"streamed": True},
            )
        finally:
            await engine.stop()

    arun(scenario())


def test_answer_without_sdk_header_is_a_failed_attempt(db: str, stub_server: StubServer) -> None:
    def answer(req: dict[str, Any]) -> tuple[Any, ...]:
        if req["body"]["ctx"]["attempt"] == 0:
            return 200, {"from": "a proxy"}  # no X-Inngest-Sdk: not an SDK answer
        return 200, "ok", SDK

    stub_server.answer = answer

    async def scenario() -> None:
        engine = await start(db, stub_server)
        try:
            await engine.send({"name": "s/go"})
            run = await finished(engine, await only_run(engine, "stub-fn"))
            assert (run.status, run.output) == (RunStatus.COMPLETED, '"ok"')
        finally:
            await engine.stop()

    arun(scenario())
    assert [c["body"]["ctx"]["attempt"] for c in calls(stub_server)] == [0, 1]


def test_retry_after_sets_when_the_same_call_is_retried(db: str, stub_server: StubServer) -> None:
    def answer(req: dict[str, Any]) -> tuple[Any, ...]:
        if req["body"]["ctx"]["attempt"] == 0:
            error = {"name": "RetryAfterError", "message": "later", "code": "retry_after_error"}
            return 500, error, {**SDK, "retry-after": "120"}
        return 200, req["body"]["ctx"]["attempt"], SDK

    stub_server.answer = answer

    async def scenario() -> None:
        clock = ManualClock()
        engine = await start(db, stub_server, clock)
        try:
            sent_at = clock.now()
            await engine.send({"name": "s/go"})
            run_id = await only_run(engine, "stub-fn")
            while len(calls(stub_server)) < 1:
                await asyncio.sleep(0.01)

            async def retry_due() -> float | None:  # the 500 recorded, its retry queued
                due = await engine.store.read(lambda tx: tx.queue.next_job_at())
                return due if due is not None and 119 <= due - sent_at <= 121 else None

            await await_until(retry_due, timeout=10, message="the retry due in 120 s")
            run = await finished(engine, run_id, clock)
            assert (run.status, run.output) == (RunStatus.COMPLETED, "1")
        finally:
            await engine.stop()

    arun(scenario())


def test_large_state_is_fetched_through_the_api(db: str, stub_server: StubServer) -> None:
    big = "x" * (3 * 1024 * 1024)

    def answer(req: dict[str, Any]) -> tuple[Any, ...]:
        body = req["body"]
        if body["use_api"]:
            return 200, {"use_api": True, "steps": body["steps"]}, SDK
        done = set(body["steps"])
        for step in ("one", "two"):
            if step not in done:
                op = {"op": "StepRun", "id": step, "name": step, "data": big}
                return 206, [op], SDK
        raise AssertionError("two 3 MiB memos must not be inlined")

    stub_server.answer = answer

    async def scenario() -> None:
        engine = await start(db, stub_server)
        try:
            await engine.send({"name": "s/go"})
            run = await finished(engine, await only_run(engine, "stub-fn"))
            assert json.loads(run.output or "") == {"use_api": True, "steps": {}}
            actions = await engine.run_actions(run.run_id)
            assert list(actions) == ["one", "two"]
            assert actions["two"] == {"data": big}
            assert (await engine.run_batch(run.run_id))[0]["name"] == "s/go"
        finally:
            await engine.stop()

    arun(scenario())
    last = calls(stub_server)[-1]["body"]
    assert last["ctx"]["use_api"] is True
    assert last["steps"] == {}


def test_malformed_answers_fail_the_run_after_its_attempts(
    db: Path, stub_server: StubServer
) -> None:
    answers = [
        (206, b"not json", SDK),
        (206, [{"op": "TeleportStep", "id": "x"}], SDK),
        (206, [{"op": "StepError", "id": "x"}], SDK),
    ]
    stub_server.answer = lambda req: answers[min(req["body"]["ctx"]["attempt"], 2)]

    async def scenario() -> None:
        engine = await start(db, stub_server)
        try:
            await engine.send({"name": "s/go"})
            run = await finished(engine, await only_run(engine, "stub-fn"))
            assert run.status is RunStatus.FAILED
            output = json.loads(run.output or "")
            assert output["name"] == "InvalidResponse"
            assert "StepError op needs an error object" in output["message"]
            others = await engine.list_runs(RunFilter(function_id="other"))
            assert others == []
        finally:
            await engine.stop()

    arun(scenario())
    assert [c["body"]["ctx"]["attempt"] for c in calls(stub_server)] == [0, 1, 2]


def test_production_mode_signs_every_call(db: str, stub_server: StubServer) -> None:
    def answer(_req: dict[str, Any]) -> tuple[Any, ...]:
        # an SDK in production signs its answer with the key that validated the call
        body = json.dumps("signed").encode()
        signature = signing.sign(body, KEY, now=time.time())
        return 200, body, {**SDK, "x-inngest-signature": signature}

    stub_server.answer = answer

    async def scenario() -> None:
        engine = await start(
            db, stub_server, mode="start", signing_keys=(KEY,), event_keys=("evk",)
        )
        try:
            await engine.send({"name": "s/go"})
            run = await finished(engine, await only_run(engine, "stub-fn"))
            assert run.output == '"signed"'
        finally:
            await engine.stop()

    arun(scenario())
    [call] = calls(stub_server)
    header = call["headers"]["x-inngest-signature"]
    assert signing.verify(call["raw"], header, [KEY], now=time.time()) == KEY
    assert call["headers"]["x-inngest-server-kind"] == "cloud"
