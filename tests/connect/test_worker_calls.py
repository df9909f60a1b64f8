"""The worker's side of one call (``stepline._connect.calls``), pure: the POST it stands
for runs through ``CommHandler`` as ``serve()``'s does, signature check included."""

from __future__ import annotations

import asyncio
import json
import time

import stepline
from stepline._comm.handler import CommHandler
from stepline._comm.messages import CommResponse
from stepline._connect import calls
from stepline._protocol import signing

KEY = "signkey-prod-" + "5a6b" * 16


def _handler() -> CommHandler:
    client = stepline.Client("calls", is_production=True, signing_key=KEY, environ={})

    @client.function(id="hi", trigger=stepline.TriggerEvent(event="calls/hi"))
    async def hi(ctx: stepline.Context) -> str:
        return "hi"

    return CommHandler(client=client, functions=[hi], framework="connect", streaming="disable")


def _call(body: bytes, signature: str | None) -> dict[str, object]:
    return {
        "request_id": "r1",
        "app_id": "calls",
        "app_name": "calls",
        "function_slug": "calls-hi",
        "step_id": "step",
        "request_payload": body,
        "signature": signature,
        "run_id": "run-1",
    }


def test_a_call_runs_only_with_the_engines_signature() -> None:
    body = json.dumps(
        {
            "event": {"name": "calls/hi", "data": {}},
            "events": [{"name": "calls/hi", "data": {}}],
            "steps": {},
            "ctx": {"run_id": "run-1", "fn_id": "calls-hi", "step_id": "step", "attempt": 0},
            "version": 1,
            "use_api": False,
        }
    ).encode()
    handler = _handler()
    try:
        signed = calls.comm_request(_call(body, signing.sign(body, KEY, now=time.time())))
        assert signed.query == {"fnId": "calls-hi", "stepId": "step"}
        answer = asyncio.run(handler.handle(signed))
        assert (answer.status, json.loads(answer.body)) == (200, "hi")
        reply = calls.sdk_response(_call(body, None), answer)
        assert (reply["status"], reply["request_id"], reply["run_id"]) == (1, "r1", "run-1")
        for forged in (None, signing.sign(body, "signkey-prod-" + "7c8d" * 16, now=time.time())):
            refused = asyncio.run(handler.handle(calls.comm_request(_call(body, forged))))
            assert refused.status == 401, refused.body
            assert calls.sdk_response(_call(body, forged), refused)["status"] == 2  # ERROR
    finally:
        handler.close()


def test_answers_map_to_sdk_responses() -> None:
    partial = CommResponse(
        206,
        {"X-Inngest-No-Retry": "true", "Retry-After": "5", "X-Inngest-Req-Version": "2"},
        b"[]",
    )
    reply = calls.sdk_response({"request_id": "r"}, partial)
    assert (reply["status"], reply["no_retry"], reply["retry_after"]) == (0, True, "5")
    assert reply["request_version"] == 2
    assert calls.sdk_response({}, CommResponse(500, {}, b"x"))["no_retry"] is False


def test_intervals_the_gateway_announces() -> None:
    assert calls.interval("10s", 1.0) == 10.0
    assert calls.interval("500ms", 1.0) == 0.5
    assert calls.interval("1m", 1.0) == 60.0
    assert calls.interval("5", 1.0) == 5.0
    for bad in ("", None, "0s", "soon", "-1s"):
        assert calls.interval(bad, 7.0) == 7.0
    assert calls.app_url("a b") == "connect://a%20b/v0/connect"
