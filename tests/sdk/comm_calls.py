"""Driving a ``CommHandler`` with execution requests as the engine sends them.

Bodies follow ``captures/py/11_exec_three_steps_call1.json``; step callables record
their calls in lists so each test can tell exactly what ran.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import stepline
import stepline.flask
from stepline._comm import CommHandler, CommRequest, CommResponse
from stepline._protocol import signing

KEY = "signkey-prod-123abc"
FALLBACK = "signkey-prod-000000"
OTHER_KEY = "signkey-prod-abcdef"
KEY_HASH = "94bab7f22b92278ccab46e15da43a9fb8b079c05fa099d4134c6c39bbcee49f6"
URL = "http://app.test/api/inngest"
RUN_COMPLETE_ID = "0737c22d3bfae812339732d14d8c7dbd6dc4e09c"
#: The ctx fields of a checkpointing (sync-mode) execution request.
CHECKPOINT = {"fn_id": "01FNUUID", "qi_id": "qi-1"}
EVENT = {
    "name": "demo/go",
    "data": {"n": 41},
    "id": "01JEVENT0000000000000000000",
    "ts": 1_700_000_000_000,
    "user": {},
}


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def make_client(**settings: Any) -> stepline.Client:
    options: dict[str, Any] = {"is_production": False, "environ": {}}
    options.update(settings)
    return stepline.Client("app", **options)


def body_for(
    *,
    steps: dict[str, Any] | None = None,
    attempt: int = 0,
    max_attempts: int | None = 3,
    event: dict[str, Any] | None = None,
    **ctx: Any,
) -> dict[str, Any]:
    """An execution body as the engine sends it (``ctx`` keys override the defaults)."""
    the_event = dict(EVENT) if event is None else event
    context: dict[str, Any] = {
        "attempt": attempt,
        "disable_immediate_execution": False,
        "run_id": "01JRUN000000000000000000000",
        "step_id": "step",
        "stack": {"stack": list(steps or {}), "current": len(steps or {})},
    }
    if max_attempts is not None:
        context["max_attempts"] = max_attempts
    context.update(ctx)
    return {
        "event": the_event,
        "events": [the_event],
        "steps": steps or {},
        "ctx": context,
        "use_api": False,
        "version": 2,
    }


def call(
    handler: CommHandler,
    fn_id: str | None = "fn",
    body: dict[str, Any] | bytes | None = None,
    *,
    step_id: str = "step",
    headers: dict[str, str] | None = None,
    query: str = "",
) -> CommResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body or body_for()).encode()
    params = [] if fn_id is None else [f"fnId=app-{fn_id}"]
    params.append(f"stepId={step_id}")
    if query:
        params.append(query)
    url = URL + "?" + "&".join(params)
    request = CommRequest.build(method="POST", url=url, headers=headers or {}, body=raw)
    return handler.handle_sync(request)


def serve(client: stepline.Client, *functions: stepline.Function, **options: Any) -> CommHandler:
    return CommHandler(client=client, functions=list(functions), framework="test", **options)


def decoded(response: CommResponse) -> Any:
    return json.loads(response.body)


def ops(response: CommResponse) -> list[dict[str, Any]]:
    assert response.status == 206, response.body
    out: list[dict[str, Any]] = decoded(response)
    return out


def memo(data: Any) -> dict[str, Any]:
    return {"data": data}


def recorder(calls: list[str], name: str, value: Any) -> Callable[[], Any]:
    def run() -> Any:
        calls.append(name)
        return value

    return run


def three_steps(client: stepline.Client, calls: list[str]) -> stepline.Function:
    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> dict[str, Any]:
        a = ctx.step.run("a", recorder(calls, "a", ctx.event.data["n"] + 1))
        b = ctx.step.run("b", recorder(calls, "b", a * 2))
        c = ctx.step.run("c", recorder(calls, "c", f"result={b}"))
        return {"a": a, "b": b, "c": c}

    return fn


def signed(body: dict[str, Any], key: str, *, age: float = 0.0) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    return raw, {"X-Inngest-Signature": signing.sign(raw, key, now=time.time() - age)}
