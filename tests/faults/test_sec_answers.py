"""An app's answers in production: only signed ones count, and none is read past a limit.

The attack: whoever answers at an app's registered URL sends an
unsigned 206 with an ``AIGateway`` op to an address inside the engine's network, and
reads that address's answer back in the next call. In ``stepline start`` the engine
checks ``X-Inngest-Signature`` on every answer (a streamed one's inside its envelope)
and applies nothing of an answer that fails. Size: an answer is read a chunk at a
time up to ``max_body_bytes`` and a step output is stored only up to
``max_step_output_bytes``; past either the run says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from stepline.engine import Engine, EngineSettings, RunStatus
from stepline.engine._model import Run, StepRecord
from tests._support.aio import arun
from tests._support.engines import FAST
from tests._support.logs import captured_logs
from tests._support.polling import await_until
from tests._support.processes import APPS

from .sec_servers import (
    KEY,
    OTHER_KEY,
    SDK,
    START,
    Answer,
    Scripted,
    chunks,
    gateway_op,
    json_answer,
    register_body,
    steps_of,
)

pytestmark = [pytest.mark.slow]

HERE = Path(__file__).parent


async def _one_run(
    db: str, app: Scripted, attempts: int = 2, **settings: Any
) -> tuple[Run, list[StepRecord]]:
    """Start an engine, register the app, send one event; the run once it ended."""
    engine = Engine(EngineSettings(database_url=db, **{**FAST, **settings}))
    await engine.start()
    try:
        await engine.register(register_body(app.url, attempts=attempts))
        (event_id,) = await engine.send({"name": "sec/go", "data": {}})

        async def started() -> list[Any] | None:
            return [link for link in await engine.event_runs(event_id) if link.run_id] or None

        links = await await_until(started, timeout=2.0, interval=0.01, message="a run to start")
        run = await engine.wait_for_run(str(links[0].run_id), timeout=20)
        return run, list(await engine.run_steps(run.run_id))
    finally:
        await engine.stop()


def _attack(victim: Scripted, *, key: str | None, now: float | None = None) -> Any:
    """An app that asks for a gateway call to ``victim``, then returns what it got."""

    def answer(request: dict[str, Any]) -> Answer:
        memo = steps_of(request).get("ai")
        if memo is None:
            return json_answer(
                206, [gateway_op(f"{victim.url}/latest/meta-data")], key=key, now=now
            )
        return json_answer(200, {"stolen": memo}, key=key, now=now)

    return answer


def _error(run: Run) -> dict[str, Any]:
    output = json.loads(run.output or "null")
    assert isinstance(output, dict), run.output
    return output


@pytest.mark.timeout(60)
def test_unsigned_answer_with_a_gateway_op_never_reaches_the_victim(db: str) -> None:
    # even with loopback allow-listed for the gateway (a developer's setting), the
    # unsigned answer is refused before any of its ops is looked at
    with Scripted(lambda _r: (200, {}, b'{"secret": "metadata"}')) as victim, Scripted() as app:
        app.answer = _attack(victim, key=None)
        with captured_logs("stepline.engine") as logs:
            run, steps = arun(_one_run(db, app, gateway_allow=("127.0.0.0/8",), **START))
    assert run.status is RunStatus.FAILED
    error = _error(run)
    assert error["name"] == "UnsignedAnswer", error
    assert "X-Inngest-Signature header is missing" in error["message"]
    assert "same signing key" in error["message"]
    assert victim.requests == [], "the engine called the address the forged answer named"
    assert steps == [], "nothing of an unsigned answer may be recorded"
    assert len(app.hits("/api/inngest")) == 3, "retried as failed attempts (2 retries)"
    assert any("refused the unsigned answer" in line for line in logs), logs


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("key", "skew", "why"),
    [
        (OTHER_KEY, 0.0, "does not match"),
        (KEY, -3600.0, "too old"),
        (KEY, 3600.0, "in the future"),
    ],
    ids=["wrong-key", "stale", "future"],
)
def test_badly_signed_answer_fails_the_attempt(db: str, key: str, skew: float, why: str) -> None:
    with Scripted() as victim, Scripted() as app:
        app.answer = _attack(victim, key=key, now=time.time() + skew)
        run, steps = arun(_one_run(db, app, gateway_allow=("127.0.0.0/8",), **START))
    error = _error(run)
    assert (run.status, error["name"]) == (RunStatus.FAILED, "UnsignedAnswer"), error
    assert why in error["message"], error
    assert victim.requests == []
    assert steps == []


def test_signed_answer_works_with_the_current_or_the_fallback_key(db: str) -> None:
    provider = {"choices": [{"message": {"content": "hi"}}]}
    with Scripted(lambda _r: json_answer(200, provider)) as ai, Scripted() as app:
        app.answer = _attack(ai, key=KEY)
        run, steps = arun(_one_run(db, app, gateway_allow=("127.0.0.1/32",), **START))
        assert run.status is RunStatus.COMPLETED, run.output
        assert _error(run) == {"stolen": {"data": provider}}
        assert [s.step_id for s in steps] == ["ai"]

        # an app still signing with the key being rotated out: the fallback accepts it
        app.answer = _attack(ai, key=OTHER_KEY)
        rotating = {**START, "signing_keys": (KEY, OTHER_KEY)}
        run, _ = arun(_one_run(db, app, gateway_allow=("127.0.0.1/32",), **rotating))
        assert run.status is RunStatus.COMPLETED, run.output


def _streamed(value: Any, key: str | None) -> Answer:
    """A 201: keep-alive spaces, then the envelope with the inner answer's headers."""
    status, headers, body = json_answer(200, value, key=key)
    assert isinstance(body, bytes)
    envelope = {"status": status, "headers": headers, "body": body.decode()}
    return 201, dict(SDK), b"   " + json.dumps(envelope).encode()


@pytest.mark.parametrize("key", [KEY, None], ids=["signed", "unsigned"])
def test_streamed_answer_is_checked_inside_its_envelope(db: str, key: str | None) -> None:
    with Scripted(lambda _r: _streamed({"streamed": True}, key)) as app:
        run, _ = arun(_one_run(db, app, **START))
    if key is None:
        assert _error(run)["name"] == "UnsignedAnswer"
        assert run.status is RunStatus.FAILED
    else:
        assert (run.status, _error(run)) == (RunStatus.COMPLETED, {"streamed": True})


def test_dev_mode_takes_unsigned_answers(db: str) -> None:
    # dev mode trusts whoever registers (its API is open): unchanged
    with Scripted(lambda _r: json_answer(200, "plain")) as app:
        run, _ = arun(_one_run(db, app))
    assert (run.status, run.output) == (RunStatus.COMPLETED, '"plain"')


# -- sizes ----------------------------------------------------------------------------------


def test_oversized_step_output_fails_the_run_naming_step_and_limit(db: str) -> None:
    big = "y" * (64 * 1024)
    op = {"op": "StepRun", "id": "huge", "name": "huge", "displayName": "huge", "data": big}
    with Scripted(lambda _r: json_answer(206, [op], key=KEY)) as app:
        run, steps = arun(_one_run(db, app, max_step_output_bytes=32 * 1024, **START))
    error = _error(run)
    assert run.status is RunStatus.FAILED
    assert error["name"] == "StepOutputTooLarge", error
    assert "step 'huge' returned 65538 bytes" in error["message"]
    assert "32768-byte limit" in error["message"]
    assert "max_step_output_bytes" in error["message"]
    # the step failed with the error; the oversized output is not stored
    [(status, memo)] = [(s.status.value, s.memo) for s in steps]
    assert status == "Failed"
    assert memo["error"]["name"] == "StepOutputTooLarge"
    assert big not in json.dumps(memo)
    assert len(app.hits("/api/inngest")) == 1, "the same output again: not retried"


def test_oversized_answer_fails_the_attempt(db: str) -> None:
    def answer(_request: dict[str, Any]) -> Answer:
        return 200, dict(SDK), chunks(3 * 1024 * 1024)

    with Scripted(answer) as app:
        run, _ = arun(_one_run(db, app, max_body_bytes=1024 * 1024, attempts=1))
    error = _error(run)
    assert (run.status, error["name"]) == (RunStatus.FAILED, "AnswerTooLarge"), error
    assert "larger than 1048576 bytes" in error["message"]
    assert "STEPLINE_MAX_BODY_BYTES" in error["message"]


@pytest.mark.process
@pytest.mark.timeout(120)
def test_a_64_mb_answer_keeps_the_engine_process_small(tmp_path: Path) -> None:
    total = 64 * 1024 * 1024

    def answer(request: dict[str, Any]) -> Answer:
        if json.loads(request["raw"])["event"]["name"] == "sec/warm":
            return json_answer(200, "warm")
        return 200, dict(SDK), chunks(total)

    with Scripted(answer) as app:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parents[1]), *sys.path])}
        done = subprocess.run(
            [sys.executable, str(APPS / "huge_answer_engine.py"), str(tmp_path / "e.db"), app.url],
            check=False,
            capture_output=True,
            text=True,
            timeout=100,
            env=env,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads(done.stdout.strip().splitlines()[-1])
        sent = sum(1 for r in app.requests if b"sec/go" in r["raw"])
    assert sent == 1, "one attempt (no retries configured)"
    assert report["status"] == "Failed", report
    assert report["error"] == "AnswerTooLarge", report
    grown = report["peak_after_kib"] - report["peak_before_kib"]
    # 16 MiB read at most, joined once: well under the 64 MiB answer
    assert grown < 48 * 1024, f"the engine grew by {grown} KiB reading a 64 MiB answer"


def test_an_apps_unsigned_refusal_to_retry_is_heeded(db: str) -> None:
    # an app that cannot verify the engine (another key) answers 401 with no-retry:
    # unsigned, so its body is dropped, but retrying would only be refused again
    refusal = json_answer(401, {"code": "sig_verification_failed", "message": "mismatch"})
    status, headers, body = refusal
    with Scripted(lambda _r: (status, {**headers, "x-inngest-no-retry": "true"}, body)) as app:
        run, _ = arun(_one_run(db, app, **START))
    error = _error(run)
    assert (run.status, error["name"]) == (RunStatus.FAILED, "UnsignedAnswer")
    assert "cannot verify the engine's call" in error["message"]
    assert "mismatch" not in json.dumps(error), "nothing of an unsigned body is kept"
    assert len(app.hits("/api/inngest")) == 1


def test_a_checkpointed_step_output_is_capped_too() -> None:
    from stepline.engine._wire.response import checkpoint_ops

    def op(data: Any) -> dict[str, Any]:
        return {"op": "StepRun", "id": "s", "name": "s", "displayName": "cp", "data": data}

    with pytest.raises(ValueError, match=r"step 'cp' returned 2002 bytes.*max_step_output_bytes"):
        checkpoint_ops({"steps": [op("x" * 2000)]}, max_output=1024)
    assert len(checkpoint_ops({"steps": [op("x" * 100)]}, max_output=1024)) == 1
