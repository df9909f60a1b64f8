"""Fuzz what apps answer the engine: any status, headers and body, however malformed.

The engine calls a fake app through its driver; each run's calls are answered from a
generated script (statuses, SDK headers, ``Retry-After``, request versions, bodies of
random bytes, random JSON, and op lists with every opcode and malformed ids, names,
durations, timestamps, expressions, NaN...). Afterwards the run must reach a state the
REST API can render (valid JSON, no NaN), or sit waiting until it is cancelled, and the
engine must never log an internal error (a job that fails inside the engine is retried
until its lease lapses, for ever: a poisoned run). A bystander run in flight throughout
completes as if nothing happened.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stepline._protocol.opcodes import Opcode
from stepline.engine import Engine, EngineSettings
from stepline.engine._http import views
from stepline.engine._wire.response import RawResponse
from tests._support.logs import captured_logs
from tests._support.polling import await_until
from tests._support.targets import BYSTANDER_EVENT, RELEASE_EVENT, bystander, expected

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
APP_URL = "http://fuzzed.invalid/api/inngest"
SDK = {"content-type": "application/json", "x-inngest-sdk": "fuzz:v1"}
DONE = RawResponse(200, SDK, b'"done"')

# -- strategies ------------------------------------------------------------------------------

_texts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "\x00", "a\x00b", "\ud800", "step", "s0", "fz-f", " ", "é" * 3]),
)
_json: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | _texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_texts, inner, max_size=3),
    max_leaves=8,
)
_times = st.one_of(
    st.sampled_from(
        [
            "1s",
            "0s",
            "-1s",
            "1.5h",
            "9999999999w",
            "9" * 400 + "s",
            "1e400s",
            "banana",
            "2027-01-01T00:00:00Z",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "2027-13-45T99:99:99Z",
        ]
    ),
    _texts,
    st.integers(),
)
_expressions = st.one_of(
    st.sampled_from(
        [
            "async.data.k == event.data.k",
            "event.data.k >",
            "(" * 200 + "1" + ")" * 200,
            "size(event.data) > 1000000",
            "async.data.x.y.z == 1",
            "1 / 0 == 1",
        ]
    ),
    _texts,
)
_opcodes = st.one_of(
    st.sampled_from([o.value for o in Opcode] + ["steprun", "SLEEP", "Teleport"]), _texts
)
_opts = st.fixed_dictionaries(
    {},
    optional={
        "duration": _times,
        "timeout": _times,
        "event": _texts,
        "if": _expressions,
        "function_id": st.sampled_from(["fz-f", "nope", "bystander-steady", ""]),
        "payload": _json,
        "url": st.sampled_from(["http://[bad", "", "ftp://x", "http://127.0.0.1:1/x", "\x00"]),
        "body": _json,
        "format": st.sampled_from(["openai", "anthropic", "gemini", "bedrock", ""]),
        "auth_key": _texts,
        "headers": _json,
        "parallelMode": st.sampled_from(["race", "wait", 1]),
    },
)
_ops = st.fixed_dictionaries(
    {"op": _opcodes, "id": _texts},
    optional={
        "name": _texts,
        "displayName": _json,
        "data": _json,
        "error": st.one_of(_json, st.fixed_dictionaries({"name": _texts, "message": _texts})),
        "opts": st.one_of(_opts, _json),
        "userland": _json,
    },
)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


_bodies = st.one_of(
    st.lists(_ops, max_size=3).map(_dumps),
    _ops.map(_dumps),
    _json.map(_dumps),
    st.binary(max_size=40),
    st.fixed_dictionaries(
        {"status": st.one_of(st.sampled_from([200, 206, 500]), _json), "body": _json},
        optional={"headers": _json, "error": _json},
    ).map(_dumps),
)
_headers = st.fixed_dictionaries(
    {},
    optional={
        "x-inngest-sdk": st.just("fuzz:v1"),
        "x-inngest-no-retry": st.sampled_from(["true", "false", "TRUE", ""]),
        "retry-after": st.one_of(_times.map(str), st.integers(-5, 10**12).map(str)),
        "x-inngest-req-version": st.one_of(
            _texts, st.sampled_from(["-1", "0", "1", "2", "9" * 30])
        ),
    },
)
_answers = st.one_of(
    st.builds(
        RawResponse,
        status=st.one_of(st.sampled_from([200, 201, 206, 206, 206, 400, 500]), st.integers(0, 999)),
        headers=_headers,
        body=_bodies,
    ),
    st.just(RawResponse(0, {}, b"", error="ConnectError: injected")),
)


# -- the fake app ------------------------------------------------------------------------------


class ScriptedApp:
    """Answers the engine's calls to ``APP_URL`` from a script per run (by ``data.k``)."""

    def __init__(self) -> None:
        self.scripts: dict[int, list[RawResponse]] = {}

    async def request(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> RawResponse:
        if not url.startswith(APP_URL):  # a gateway call: nobody there
            return RawResponse(0, {}, b"", error="ConnectError: no such host")
        event = json.loads(body)["event"]
        script = self.scripts.get(event.get("data", {}).get("k"), [])
        return script.pop(0) if script else DONE

    async def close(self) -> None:
        pass


def _registration() -> dict[str, Any]:
    step = {"id": "step", "name": "step", "runtime": {"type": "http", "url": APP_URL}}
    function = {
        "id": "fz-f",
        "name": "fuzzed",
        "triggers": [{"event": "fz/go"}],
        "steps": {"step": step},
        "retries": {"attempts": 1},
    }
    return {"appName": "fz", "url": APP_URL, "sdk": "py:v1", "functions": [function]}


async def _settle(engine: Engine, run_id: str) -> None:
    """Until the run ends, or nothing is due or in flight for a while (it waits)."""
    idle = 0

    async def settled() -> bool:
        nonlocal idle
        if (await engine.get_run(run_id)).status.terminal:
            return True
        idle = idle + 1 if await engine.idle() else 0
        return idle >= 5

    await await_until(settled, timeout=5.0, interval=0.005, message="the run to settle")


@pytest.mark.slow
def test_any_answer_ends_the_run_cleanly_and_spares_the_bystander(db: str) -> None:
    app = ScriptedApp()
    options = {"retry_scale": 0.0, "retry_jitter": 0.0, "poll_interval": 0.02}
    engine = Engine(EngineSettings(database_url=db, **options), http=app)
    loop = asyncio.new_event_loop()
    counter = iter(range(10**6))

    async def start() -> str:
        await engine.start()
        await engine.register(_registration())
        client, functions = bystander()
        await engine.serve(client, functions)
        (event_id,) = await engine.send({"name": BYSTANDER_EVENT, "data": {"n": 21}})
        links = await engine.event_runs(event_id)
        return str(links[0].run_id)

    async def one(answers: list[RawResponse]) -> None:
        k = next(counter)
        app.scripts[k] = list(answers)
        (event_id,) = await engine.send({"name": "fz/go", "data": {"k": k}})
        links = [link for link in await engine.event_runs(event_id) if link.run_id]
        assert len(links) == 1
        run_id = str(links[0].run_id)
        await _settle(engine, run_id)
        run = await engine.get_run(run_id)
        if not run.status.terminal:  # sleeping, waiting or invoking: it may wait
            await engine.cancel(run_id)
            run = await engine.get_run(run_id)
        assert run.status.terminal, run
        # what the REST API would answer must be valid JSON (Starlette refuses NaN)
        json.dumps(views.run(run, with_events=True), allow_nan=False)
        for step in await engine.run_steps(run_id):
            json.dumps(views.step(step), allow_nan=False)

    with captured_logs("stepline", level=logging.ERROR) as errors:
        bystander_run = loop.run_until_complete(start())
        try:

            @FUZZ
            @given(st.lists(_answers, min_size=1, max_size=3))
            def check(answers: list[RawResponse]) -> None:
                loop.run_until_complete(one(answers))
                assert not errors, "\n".join(errors)

            check()

            async def release() -> Any:
                await engine.send({"name": RELEASE_EVENT, "data": {"n": 21, "by": 1}})
                return await engine.wait_for_run(bystander_run, timeout=20)

            finished = loop.run_until_complete(release())
            assert finished.status.value == "Completed", finished
            assert json.loads(str(finished.output)) == expected(21)
        finally:
            loop.run_until_complete(engine.stop())
            loop.close()
    assert not errors, "\n".join(errors)


def test_a_retry_after_of_unicode_digits_is_ignored() -> None:
    """Found by the fuzzer: ``"³".isdigit()`` is true, and ``float("³")`` raised."""
    from stepline.engine._wire import response

    for value in ("³", "١٢", "²⁵"):
        raw = response.RawResponse(500, {"retry-after": value}, b'{"message": "boom"}')
        outcome = response.decode(raw, now=0.0)
        assert isinstance(outcome, response.Failed)
        assert outcome.retry_after is None


def test_a_streamed_envelope_whose_headers_are_not_an_object_fails_the_call() -> None:
    """Found by the fuzzer: ``"headers": true`` raised inside the engine."""
    from stepline.engine._wire import response

    for headers in (True, 1, "x", ["a"]):
        body = json.dumps({"status": 200, "headers": headers, "body": "null"}).encode()
        outcome = response.decode(response.RawResponse(201, {}, body), now=0.0)
        assert isinstance(outcome, response.Failed), headers
        assert "headers" in str(outcome.error.get("message")), outcome.error
