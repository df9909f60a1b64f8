"""An SDK app behind a fault-injecting ASGI layer, scripted per request by its event.

Each run's trigger event carries ``data.faults``: ``{"<call number>": "<fault>"}``. The
layer counts the engine's calls per run (1 = the first call) and answers a scripted call
with the fault instead of, or after, the real SDK answer; every other call reaches the
SDK untouched. Every call (function, run, attempt, start time, fault) and every step
execution (run, step, nonce) is traced, so a test can count attempts, measure the gaps
between them and tell a re-executed recorded step from a retried lost one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import stepline
import stepline.asgi

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

APP_ID = "faults"
STEPS = 3
#: The SDK's own headers: with them a 2xx answer is taken as an SDK's (``_response``).
SDK_HEADERS = [
    (b"content-type", b"application/json"),
    (b"x-inngest-sdk", b"stepline:v0.1.0"),
    (b"x-inngest-req-version", b"1"),
]
#: Faults answered instead of the SDK (the function never runs in that call).
INSTEAD: dict[str, tuple[int, list[tuple[bytes, bytes]], bytes]] = {
    "500": (500, SDK_HEADERS, b'{"name": "Error", "message": "injected 500"}'),
    "500-no-retry": (
        500,
        [*SDK_HEADERS, (b"x-inngest-no-retry", b"true")],
        b'{"name": "Error", "message": "injected final 500"}',
    ),
    "garbage": (206, SDK_HEADERS, b'[{"op": "StepRun", "id": "s0", "data": '),
    "not-utf8": (206, SDK_HEADERS, b"\xff\xfe\x00[not json"),
    "unknown-op": (206, SDK_HEADERS, b'[{"op": "Teleport", "id": "x", "data": 1}]'),
    "op-without-id": (206, SDK_HEADERS, b'[{"op": "StepRun", "data": 1}]'),
    "error-without-error": (206, SDK_HEADERS, b'[{"op": "StepError", "id": "x"}]'),
    "not-an-array": (206, SDK_HEADERS, b'"StepRun"'),
    # a proxy's page: 200 without the SDK header must not complete the run
    "proxy-page": (200, [(b"content-type", b"text/html")], b"<html>502 Bad Gateway</html>"),
}
#: Faults that let the SDK run (its step executes) and then lose the answer.
AFTER = ("timeout", "hangup")


@dataclasses.dataclass(frozen=True)
class Call:
    fn_id: str
    run_id: str
    number: int
    attempt: int
    start: float
    fault: str | None


@dataclasses.dataclass(frozen=True)
class Execution:
    run_id: str
    step: str
    nonce: str
    start: float


class Trace:
    """What happened, thread-safe (the SDK runs sync code on a thread pool)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: list[Call] = []
        self.executions: list[Execution] = []
        self._numbers: dict[str, int] = {}

    def call(self, fn_id: str, run_id: str, attempt: int, faults: dict[str, str]) -> Call:
        with self._lock:
            number = self._numbers[run_id] = self._numbers.get(run_id, 0) + 1
            call = Call(fn_id, run_id, number, attempt, time.time(), faults.get(str(number)))
            self.calls.append(call)
            return call

    def step(self, run_id: str, step: str) -> str:
        nonce = uuid.uuid4().hex[:10]
        with self._lock:
            self.executions.append(Execution(run_id, step, nonce, time.time()))
        return nonce

    def calls_of(self, run_id: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.run_id == run_id]

    def executions_of(self, run_id: str, step: str) -> list[str]:
        with self._lock:
            return [e.nonce for e in self.executions if e.run_id == run_id and e.step == step]


def build(trace: Trace, *, hold: float) -> tuple[stepline.Client, list[stepline.Function], Any]:
    """The SDK app, its functions and the faulty ASGI app serving them.

    Args:
        trace: where calls and step executions are recorded.
        hold: how long a ``timeout`` fault sits on the answer (longer than the
            engine's ``call_timeout``).
    """
    client = stepline.Client(app_id=APP_ID, is_production=False, checkpointing=False)

    @client.function(id="chain", trigger=stepline.TriggerEvent(event="faults/go"), retries=2)
    async def chain(ctx: stepline.Context) -> list[str]:
        out = []
        for i in range(STEPS):
            out.append(await ctx.step.run(f"s{i}", trace.step, ctx.run_id, f"s{i}"))
        return out

    functions = [chain]
    sdk = stepline.asgi.serve(client, functions)
    return client, functions, FaultLayer(sdk, trace, hold=hold)


class FaultLayer:
    """ASGI middleware: answers the engine's scripted calls with faults."""

    def __init__(self, app: Any, trace: Trace, *, hold: float) -> None:
        self.app = app
        self.trace = trace
        self.hold = hold

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        call = self._record(scope, body)
        fault = call.fault if call is not None else None
        if fault in INSTEAD:
            status, headers, payload = INSTEAD[fault]
            await _answer(send, status, headers, payload)
            return
        answered: list[Message] = []

        async def replay() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        async def keep(message: Message) -> None:
            answered.append(message)

        await self.app(scope, replay, keep)  # the SDK runs: its step executes for real
        if fault == "timeout":
            await asyncio.sleep(self.hold)  # the engine gave up meanwhile
        if fault == "hangup":
            start, *chunks = answered
            payload = b"".join(m.get("body", b"") for m in chunks)
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(payload) + 100).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": payload[:10], "more_body": True})
            raise ConnectionAbortedError("injected hang-up mid-response")
        for message in answered:
            await send(message)

    def _record(self, scope: Scope, body: bytes) -> Call | None:
        query = dict(urllib.parse.parse_qsl(scope.get("query_string", b"").decode()))
        try:
            request = json.loads(body)
            ctx = request["ctx"]
            faults = request["event"].get("data", {}).get("faults") or {}
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        return self.trace.call(query.get("fnId", ""), ctx["run_id"], ctx["attempt"], faults)


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
