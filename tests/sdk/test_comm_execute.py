"""CommHandler POST (execution), driven through real requests.

Bodies follow ``captures/py/11_exec_three_steps_call1.json``; step callables record
their calls in lists so each test can tell exactly what ran.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import flask
import pydantic
import pytest

import stepline
import stepline.flask
from conftest import StubServer
from stepline import _settings
from stepline._comm import CommHandler, CommRequest, CommResponse
from stepline._protocol import durations, jcs, signing

KEY = "signkey-prod-123abc"
FALLBACK = "signkey-prod-000000"
OTHER_KEY = "signkey-prod-abcdef"
KEY_HASH = "94bab7f22b92278ccab46e15da43a9fb8b079c05fa099d4134c6c39bbcee49f6"
URL = "http://app.test/api/inngest"
RUN_COMPLETE_ID = "0737c22d3bfae812339732d14d8c7dbd6dc4e09c"
EVENT = {
    "name": "demo/go",
    "data": {"n": 41},
    "id": "01JEVENT0000000000000000000",
    "ts": 1_700_000_000_000,
    "user": {},
}


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


# --- helpers ------------------------------------------------------------------------


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


# --- signatures ---------------------------------------------------------------------


def cloud_setup(calls: list[str], **settings: Any) -> CommHandler:
    client = make_client(is_production=True, **settings)
    return serve(client, three_steps(client, calls))


def test_cloud_unsigned_post_is_401() -> None:
    calls: list[str] = []
    handler = cloud_setup(calls, signing_key=KEY)
    response = call(handler)
    assert response.status == 401
    body = decoded(response)
    assert body["code"] == "sig_verification_failed"
    assert body["name"] == "SignatureVerificationError"
    assert response.headers["x-inngest-no-retry"] == "true"
    assert "x-inngest-signature" not in response.headers
    assert calls == []


@pytest.mark.parametrize(
    ("key", "age"),
    [(KEY, 600.0), (KEY, -600.0), (OTHER_KEY, 0.0)],
    ids=["stale", "future", "wrong-key"],
)
def test_cloud_bad_signature_is_401(key: str, age: float) -> None:
    calls: list[str] = []
    handler = cloud_setup(calls, signing_key=KEY, signing_key_fallback=FALLBACK)
    raw, headers = signed(body_for(), key, age=age)
    response = call(handler, body=raw, headers=headers)
    assert response.status == 401
    assert decoded(response)["code"] == "sig_verification_failed"
    assert calls == []


def test_cloud_signature_over_another_body_is_401() -> None:
    calls: list[str] = []
    handler = cloud_setup(calls, signing_key=KEY)
    _, headers = signed(body_for(), KEY)
    tampered = json.dumps(body_for(event={**EVENT, "data": {"n": 1}})).encode()
    assert call(handler, body=tampered, headers=headers).status == 401
    assert calls == []


@pytest.mark.parametrize("key", [KEY, FALLBACK], ids=["primary", "fallback"])
def test_cloud_valid_signature_runs_and_signs_response(key: str) -> None:
    calls: list[str] = []
    handler = cloud_setup(calls, signing_key=KEY, signing_key_fallback=FALLBACK)
    raw, headers = signed(body_for(), key)
    response = call(handler, body=raw, headers=headers)
    [op] = ops(response)
    assert op["data"] == 42
    assert calls == ["a"]
    header = response.headers["x-inngest-signature"]
    assert signing.verify(response.body, header, [KEY, FALLBACK], now=time.time()) == key


def test_cloud_signature_over_canonical_body_is_accepted() -> None:
    calls: list[str] = []
    handler = cloud_setup(calls, signing_key=KEY)
    body = body_for()
    canonical = jcs.canonicalize_bytes(json.dumps(body).encode())
    sent = json.dumps(body, indent=2).encode()  # same JSON, other bytes
    assert sent != canonical
    headers = {"x-inngest-signature": signing.sign(canonical, KEY, now=time.time())}
    assert ops(call(handler, body=sent, headers=headers))[0]["data"] == 42


def test_cloud_without_any_key_is_500_signing_key_unspecified() -> None:
    calls: list[str] = []
    handler = cloud_setup(calls)
    response = call(handler)
    assert response.status == 500
    assert decoded(response)["code"] == "signing_key_unspecified"
    assert response.headers["x-inngest-no-retry"] == "true"
    assert calls == []


def test_dev_mode_ignores_missing_signature_but_checks_a_present_one() -> None:
    calls: list[str] = []
    client = make_client(signing_key=KEY)
    handler = serve(client, three_steps(client, calls))
    assert call(handler).status == 206
    _, bad = signed(body_for(), OTHER_KEY)
    assert call(handler, headers=bad).status == 401
    assert calls == ["a"]


# --- trust probe --------------------------------------------------------------------


def test_trust_probe_dev() -> None:
    calls: list[str] = []
    client = make_client()
    handler = serve(client, three_steps(client, calls))
    request = CommRequest.build(method="POST", url=URL + "?probe=trust", headers={}, body=b"")
    response = handler.handle_sync(request)
    assert response.status == 200
    assert response.body == b"null"
    assert calls == []


def test_trust_probe_cloud_is_signed_and_requires_signature() -> None:
    calls: list[str] = []
    handler = cloud_setup(calls, signing_key=KEY)
    url = URL + "?probe=trust"
    headers = {"x-inngest-signature": signing.sign(b"", KEY, now=time.time())}
    response = handler.handle_sync(
        CommRequest.build(method="POST", url=url, headers=headers, body=b"")
    )
    assert response.status == 200
    assert json.loads(response.body) is None
    assert signing.verify(
        response.body, response.headers["x-inngest-signature"], [KEY], now=time.time()
    )
    unsigned = handler.handle_sync(CommRequest.build(method="POST", url=url, headers={}, body=b""))
    assert unsigned.status == 401


# --- bad requests leave the handler intact ------------------------------------------


def _no_run_id() -> bytes:
    body = body_for()
    del body["ctx"]["run_id"]
    return json.dumps(body).encode()


BAD_REQUESTS = [
    pytest.param(None, None, 400, "query_param_missing", id="missing-fnId"),
    pytest.param("nope", None, 500, "function_not_found", id="unknown-fn"),
    pytest.param("fn", b"{not json", 400, "body_invalid", id="malformed-json"),
    pytest.param("fn", b"[1, 2]", 400, "body_invalid", id="not-an-object"),
    pytest.param("fn", b"", 400, "body_invalid", id="empty-body"),
    pytest.param("fn", _no_run_id(), 400, "body_invalid", id="missing-run-id"),
    pytest.param(
        "fn",
        json.dumps(body_for(event={**EVENT, "ts": 1.5})).encode(),
        400,
        "body_invalid",
        id="float-ts",
    ),
    pytest.param(
        "fn",
        json.dumps(body_for(event={**EVENT, "ts": "1700000000000"})).encode(),
        400,
        "body_invalid",
        id="string-ts",
    ),
    pytest.param(
        "fn",
        json.dumps(body_for(event={"data": {}})).encode(),
        400,
        "body_invalid",
        id="event-without-name",
    ),
    pytest.param(
        "fn",
        json.dumps(body_for(attempt="0")).encode(),  # type: ignore[arg-type]
        400,
        "body_invalid",
        id="string-attempt",
    ),
]


@pytest.mark.parametrize(("fn_id", "raw", "status", "code"), BAD_REQUESTS)
def test_bad_request_then_good_request(
    fn_id: str | None, raw: bytes | None, status: int, code: str
) -> None:
    calls: list[str] = []
    client = make_client()
    handler = serve(client, three_steps(client, calls))
    bad = call(handler, fn_id, raw if raw is not None else body_for())
    assert bad.status == status
    body = decoded(bad)
    assert body["code"] == code
    assert body["message"]
    assert bad.headers["x-inngest-sdk"].startswith("stepline-py:v")
    assert calls == []

    good = call(handler)
    [op] = ops(good)
    assert op["op"] == "StepRun"
    assert op["data"] == 42
    assert calls == ["a"]


def test_unknown_function_message_names_it() -> None:
    client = make_client()
    handler = serve(client, three_steps(client, []))
    body = decoded(call(handler, "missing"))
    assert "app-missing" in body["message"]
    assert body["name"] == "FunctionNotFoundError"


def test_integral_float_ts_is_tolerated() -> None:
    calls: list[str] = []
    client = make_client()
    handler = serve(client, three_steps(client, calls))
    response = call(handler, body=body_for(event={**EVENT, "ts": 1_700_000_000_000.0}))
    assert ops(response)[0]["data"] == 42


# --- memoized replay ----------------------------------------------------------------


def test_memoized_replay_runs_only_the_new_step() -> None:
    calls: list[str] = []
    client = make_client()
    handler = serve(client, three_steps(client, calls))
    steps = {sha1("a"): memo(42), sha1("b"): memo(84)}
    [op] = ops(call(handler, body=body_for(steps=steps)))
    assert calls == ["c"]
    assert op == {
        "displayName": "c",
        "id": sha1("c"),
        "name": "c",
        "op": "StepRun",
        "opts": None,
        "userland": {"id": "c", "index": None},
        "data": "result=84",
    }
    steps[sha1("c")] = memo("result=84")
    done = call(handler, body=body_for(steps=steps))
    assert done.status == 200
    assert decoded(done) == {"a": 42, "b": 84, "c": "result=84"}
    assert calls == ["c"]  # the last replay ran nothing


def test_memos_are_used_regardless_of_order_and_values_come_from_memos() -> None:
    calls: list[str] = []
    client = make_client()
    handler = serve(client, three_steps(client, calls))
    # The memo values win over what the callables would return now.
    steps = {sha1("b"): memo(1000), sha1("a"): memo(7)}
    [op] = ops(call(handler, body=body_for(steps=steps)))
    assert op["data"] == "result=1000"
    assert calls == ["c"]


def test_repeated_step_ids_are_numbered() -> None:
    calls: list[str] = []
    client = make_client()

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> list[int]:
        first = ctx.step.run("a", recorder(calls, "a#1", 1))
        second = ctx.step.run("a", recorder(calls, "a#2", 2))
        return [first, second]

    handler = serve(client, fn)
    [op1] = ops(call(handler))
    assert op1["id"] == sha1("a")
    assert op1["userland"] == {"id": "a", "index": None}

    [op2] = ops(call(handler, body=body_for(steps={sha1("a"): memo(1)})))
    assert op2["id"] == sha1("a:1")
    assert op2["userland"] == {"id": "a", "index": 1}
    assert op2["displayName"] == "a"
    assert op2["name"] == "a"
    assert op2["data"] == 2

    done = call(handler, body=body_for(steps={sha1("a"): memo(1), sha1("a:1"): memo(2)}))
    assert done.status == 200
    assert decoded(done) == [1, 2]
    assert calls == ["a#1", "a#2"]


# --- step errors --------------------------------------------------------------------


def failing(client: stepline.Client, exc: BaseException) -> stepline.Function:
    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> str:
        def boom() -> None:
            raise exc

        ctx.step.run("boom", boom)
        return "unreachable"

    return fn


def test_step_error_while_attempts_remain() -> None:
    client = make_client()
    handler = serve(client, failing(client, ValueError("broken")))
    response = call(handler, body=body_for(attempt=0, max_attempts=3))
    [op] = ops(response)
    assert op["op"] == "StepError"
    assert op["id"] == sha1("boom")
    assert op["error"]["name"] == "ValueError"
    assert op["error"]["message"] == "broken"
    assert op["error"]["code"] == "unknown"
    assert "ValueError: broken" in op["error"]["stack"]
    assert "x-inngest-no-retry" not in response.headers


def test_step_failed_on_last_attempt() -> None:
    client = make_client()
    handler = serve(client, failing(client, ValueError("broken")))
    response = call(handler, body=body_for(attempt=2, max_attempts=3))
    [op] = ops(response)
    assert op["op"] == "StepFailed"
    assert op["error"]["name"] == "ValueError"
    assert op["error"]["message"] == "broken"
    assert "x-inngest-no-retry" not in response.headers


def test_step_error_without_max_attempts_leaves_the_decision_to_the_engine() -> None:
    client = make_client()
    handler = serve(client, failing(client, ValueError("broken")))
    [op] = ops(call(handler, body=body_for(attempt=50, max_attempts=None)))
    assert op["op"] == "StepError"


def test_non_retriable_error_in_step_fails_the_function() -> None:
    client = make_client()
    handler = serve(client, failing(client, stepline.NonRetriableError("stop now")))
    response = call(handler)
    assert response.status == 500
    assert response.headers["x-inngest-no-retry"] == "true"
    body = decoded(response)
    assert body["code"] == "non_retriable_error"
    assert body["name"] == "NonRetriableError"
    assert body["message"] == "stop now"
    assert isinstance(body["stack"], str)


def test_retry_after_error_in_step_sets_retry_after() -> None:
    client = make_client()
    error = stepline.RetryAfterError("later", retry_after=dt.timedelta(seconds=30))
    handler = serve(client, failing(client, error))
    before = dt.datetime.now(dt.timezone.utc)
    response = call(handler)
    after = dt.datetime.now(dt.timezone.utc)
    assert response.status == 500
    assert "x-inngest-no-retry" not in response.headers
    body = decoded(response)
    assert body["code"] == "retry_after_error"
    assert body["message"] == "later"
    when = durations.parse_timestamp(response.headers["retry-after"])
    assert before + dt.timedelta(seconds=29) <= when <= after + dt.timedelta(seconds=31)


def test_function_level_plain_error_is_retriable_500() -> None:
    client = make_client()

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> None:
        raise KeyError("missing")

    response = call(serve(client, fn))
    assert response.status == 500
    assert "x-inngest-no-retry" not in response.headers
    body = decoded(response)
    assert body["code"] == "unknown"
    assert body["name"] == "KeyError"


MEMO_ERROR = {"error": {"name": "ValueError", "message": "x", "stack": "s"}}


def test_memoized_error_is_a_catchable_step_error() -> None:
    client = make_client()
    seen: list[BaseException] = []
    calls: list[str] = []

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> dict[str, Any]:
        try:
            ctx.step.run("boom", recorder(calls, "boom", None))
        except stepline.StepError as exc:
            seen.append(exc)
            return {"name": exc.name, "message": exc.message, "stack": exc.stack}
        return {}

    response = call(serve(client, fn), body=body_for(steps={sha1("boom"): MEMO_ERROR}))
    assert response.status == 200
    assert decoded(response) == {"name": "ValueError", "message": "x", "stack": "s"}
    [exc] = seen
    assert isinstance(exc, stepline.StepError)
    assert calls == []


def test_uncaught_memoized_error_is_step_errored_without_retry() -> None:
    client = make_client()
    calls: list[str] = []

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> None:
        ctx.step.run("boom", recorder(calls, "boom", None))
        calls.append("after")

    response = call(serve(client, fn), body=body_for(steps={sha1("boom"): MEMO_ERROR}))
    assert response.status == 500
    assert response.headers["x-inngest-no-retry"] == "true"
    assert decoded(response) == {
        "code": "step_errored",
        "message": "x",
        "name": "ValueError",
        "stack": "s",
    }
    assert calls == []


def test_nested_step_fails_the_outer_step() -> None:
    client = make_client()
    calls: list[str] = []

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> None:
        ctx.step.run("outer", lambda: ctx.step.run("inner", recorder(calls, "inner", 1)))

    response = call(serve(client, fn))
    [op] = ops(response)
    assert op["op"] == "StepFailed"
    assert op["id"] == sha1("outer")
    assert op["error"]["code"] == "step_nested"
    assert op["error"]["message"] == "Nested steps are not supported."
    assert response.headers["x-inngest-no-retry"] == "true"
    assert calls == []


# --- unserializable output ----------------------------------------------------------


def test_unserializable_step_output_is_500() -> None:
    client = make_client()
    calls: list[str] = []

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> None:
        ctx.step.run("bad", recorder(calls, "bad", object()))
        calls.append("after")

    response = call(serve(client, fn))
    assert response.status == 500
    body = decoded(response)
    assert body["code"] == "output_unserializable"
    assert "bad" in body["message"]
    assert calls == ["bad"]


def test_unserializable_function_output_is_500() -> None:
    client = make_client()

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> object:
        return {"value": object()}

    response = call(serve(client, fn))
    assert response.status == 500
    body = decoded(response)
    assert body["code"] == "output_unserializable"
    assert "function output" in body["message"]


def test_unserializable_function_output_under_checkpointing_is_500() -> None:
    client = make_client()

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> object:
        ctx.step.run("a", lambda: 1)
        return object()

    handler = serve(client, fn)
    # The step that ran is reported first (progress is never lost) ...
    first = call(handler, body=body_for(fn_id="fn-uuid", qi_id="qi-1"))
    assert first.status == 206
    assert [op["op"] for op in decoded(first)] == ["StepRun"]
    # ... and the next call, replaying it, fails with a clear 500.
    memo = {sha1("a"): {"data": 1}}
    response = call(handler, body=body_for(fn_id="fn-uuid", qi_id="qi-1", steps=memo))
    assert response.status == 500
    assert decoded(response)["code"] == "output_unserializable"


# --- planning, targeting, parallel --------------------------------------------------


def test_disable_immediate_execution_plans_the_step() -> None:
    calls: list[str] = []
    client = make_client()
    handler = serve(client, three_steps(client, calls))
    [op] = ops(call(handler, body=body_for(disable_immediate_execution=True)))
    assert op["op"] == "StepPlanned"
    assert op["id"] == sha1("a")
    assert op["data"] is None
    assert calls == []


def parallel_fn(client: stepline.Client, calls: list[str], mode: str = "wait") -> stepline.Function:
    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> list[str]:
        results = ctx.step.parallel(
            [
                lambda: ctx.step.run("p-a", recorder(calls, "p-a", "A")),
                lambda: ctx.step.run("p-b", recorder(calls, "p-b", "B")),
            ],
            mode=mode,  # type: ignore[arg-type]
        )
        return list(results)

    return fn


def test_parallel_discovery_plans_every_branch() -> None:
    calls: list[str] = []
    client = make_client()
    response = call(serve(client, parallel_fn(client, calls)))
    planned = ops(response)
    assert [(op["op"], op["id"]) for op in planned] == [
        ("StepPlanned", sha1("p-a")),
        ("StepPlanned", sha1("p-b")),
    ]
    assert all(op["opts"] is None for op in planned)
    assert calls == []


def test_parallel_race_mode_is_reported() -> None:
    calls: list[str] = []
    client = make_client()
    planned = ops(call(serve(client, parallel_fn(client, calls, "race"))))
    assert [op["op"] for op in planned] == ["StepPlanned", "StepPlanned"]
    assert [op["opts"] for op in planned] == [{"parallelMode": "race"}] * 2
    assert calls == []


def test_targeting_runs_only_the_targeted_step() -> None:
    calls: list[str] = []
    client = make_client()
    handler = serve(client, parallel_fn(client, calls))
    [op] = ops(call(handler, step_id=sha1("p-b")))
    assert op["op"] == "StepRun"
    assert op["id"] == sha1("p-b")
    assert op["data"] == "B"
    assert calls == ["p-b"]

    # The query's stepId wins over ctx.step_id.
    [op] = ops(call(handler, body=body_for(step_id="step"), step_id=sha1("p-a")))
    assert op["id"] == sha1("p-a")
    assert calls == ["p-b", "p-a"]


def test_targeting_with_a_new_step_outside_a_parallel_group_is_step_unexpected() -> None:
    calls: list[str] = []
    client = make_client()
    handler = serve(client, three_steps(client, calls))
    response = call(handler, step_id=sha1("b"))
    assert response.status == 500
    body = decoded(response)
    assert body["code"] == "step_unexpected"
    assert body["name"] == "StepUnexpectedError"
    assert '"a"' in body["message"]
    assert "x-inngest-no-retry" not in response.headers
    assert calls == []


def test_targeting_after_memos_runs_the_target() -> None:
    calls: list[str] = []
    client = make_client()
    handler = serve(client, three_steps(client, calls))
    [op] = ops(call(handler, body=body_for(steps={sha1("a"): memo(42)}), step_id=sha1("b")))
    assert op["id"] == sha1("b")
    assert op["data"] == 84
    assert calls == ["b"]


def test_targeting_ignores_disable_immediate_execution() -> None:
    calls: list[str] = []
    client = make_client()
    handler = serve(client, parallel_fn(client, calls))
    body = body_for(disable_immediate_execution=True)
    [op] = ops(call(handler, body=body, step_id=sha1("p-a")))
    assert (op["op"], op["data"]) == ("StepRun", "A")
    assert calls == ["p-a"]


def test_parallel_with_one_branch_memoized_plans_only_the_other() -> None:
    calls: list[str] = []
    client = make_client()
    handler = serve(client, parallel_fn(client, calls))
    [op] = ops(call(handler, body=body_for(steps={sha1("p-a"): memo("A")})))
    assert (op["op"], op["id"]) == ("StepPlanned", sha1("p-b"))
    done = call(handler, body=body_for(steps={sha1("p-a"): memo("A"), sha1("p-b"): memo("B")}))
    assert done.status == 200
    assert decoded(done) == ["A", "B"]
    assert calls == []


def test_engine_ops_in_a_parallel_group_keep_their_opcode() -> None:
    client = make_client()

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> None:
        ctx.step.parallel(
            [
                lambda: ctx.step.sleep("nap", dt.timedelta(seconds=5)),
                lambda: ctx.step.run("work", lambda: 1),
            ]
        )

    reported = ops(call(serve(client, fn)))
    assert [(op["op"], op["id"]) for op in reported] == [
        ("Sleep", sha1("nap")),
        ("StepPlanned", sha1("work")),
    ]


# --- checkpointing ------------------------------------------------------------------


CHECKPOINT = {"fn_id": "01FNUUID", "qi_id": "qi-1"}


def test_checkpointing_runs_every_step_in_one_request() -> None:
    calls: list[str] = []
    client = make_client()
    handler = serve(client, three_steps(client, calls))
    response = call(handler, body=body_for(**CHECKPOINT))
    reported = ops(response)
    assert [op["op"] for op in reported] == ["StepRun", "StepRun", "StepRun", "RunComplete"]
    assert [op["id"] for op in reported[:3]] == [sha1("a"), sha1("b"), sha1("c")]
    assert [op["data"] for op in reported[:3]] == [42, 84, "result=84"]
    assert reported[3]["id"] == RUN_COMPLETE_ID
    assert reported[3]["data"] == {"a": 42, "b": 84, "c": "result=84"}
    assert calls == ["a", "b", "c"]


def test_checkpointing_stops_at_an_async_op() -> None:
    client = make_client()
    calls: list[str] = []

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> str:
        ctx.step.run("a", recorder(calls, "a", 1))
        ctx.step.run("b", recorder(calls, "b", 2))
        ctx.step.sleep("nap", dt.timedelta(minutes=5))
        ctx.step.run("c", recorder(calls, "c", 3))
        return "done"

    reported = ops(call(serve(client, fn), body=body_for(**CHECKPOINT)))
    assert [op["op"] for op in reported] == ["StepRun", "StepRun", "Sleep"]
    assert reported[2]["id"] == sha1("nap")
    assert calls == ["a", "b"]


def test_without_qi_id_there_is_one_step_per_request() -> None:
    calls: list[str] = []
    client = make_client()
    handler = serve(client, three_steps(client, calls))
    [op] = ops(call(handler, body=body_for(fn_id="01FNUUID")))
    assert op["id"] == sha1("a")
    assert calls == ["a"]


def test_checkpointing_off_in_settings_is_classic() -> None:
    calls: list[str] = []
    client = make_client()
    client.settings = _settings.resolve(
        app_id="app", environ={}, is_production=False, checkpointing=False
    )
    handler = serve(client, three_steps(client, calls))
    [op] = ops(call(handler, body=body_for(**CHECKPOINT)))
    assert op["id"] == sha1("a")
    assert calls == ["a"]


def test_checkpointing_keeps_successes_before_a_step_error() -> None:
    client = make_client()
    calls: list[str] = []

    def boom() -> None:
        calls.append("c")
        raise ValueError("third fails")

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> str:
        ctx.step.run("a", recorder(calls, "a", 1))
        ctx.step.run("b", recorder(calls, "b", 2))
        ctx.step.run("c", boom)
        return "done"

    reported = ops(call(serve(client, fn), body=body_for(**CHECKPOINT)))
    assert [op["op"] for op in reported] == ["StepRun", "StepRun", "StepError"]
    assert [op["data"] for op in reported[:2]] == [1, 2]
    assert reported[2]["error"]["message"] == "third fails"
    assert calls == ["a", "b", "c"]


def test_checkpointing_keeps_progress_when_the_function_raises() -> None:
    client = make_client()
    calls: list[str] = []

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> str:
        ctx.step.run("a", recorder(calls, "a", 1))
        ctx.step.run("b", recorder(calls, "b", 2))
        raise RuntimeError("after the steps")

    handler = serve(client, fn)
    reported = ops(call(handler, body=body_for(**CHECKPOINT)))
    assert [op["op"] for op in reported] == ["StepRun", "StepRun"]
    assert [op["id"] for op in reported] == [sha1("a"), sha1("b")]
    # The next call, with those memos, meets the failure for real.
    steps = {sha1("a"): memo(1), sha1("b"): memo(2)}
    again = call(handler, body=body_for(steps=steps, **CHECKPOINT))
    assert again.status == 500
    assert decoded(again)["message"] == "after the steps"
    assert calls == ["a", "b"]


def test_checkpointing_not_used_when_targeting_or_force_planning() -> None:
    calls: list[str] = []
    client = make_client()
    handler = serve(client, three_steps(client, calls))
    [planned] = ops(call(handler, body=body_for(disable_immediate_execution=True, **CHECKPOINT)))
    assert planned["op"] == "StepPlanned"
    [targeted] = ops(
        call(handler, body=body_for(steps={sha1("a"): memo(42)}, **CHECKPOINT), step_id=sha1("b"))
    )
    assert targeted["id"] == sha1("b")
    assert calls == ["b"]


# --- pydantic -----------------------------------------------------------------------


class Item(pydantic.BaseModel):
    name: str
    qty: int


def test_pydantic_step_output_is_json_and_revived_with_output_type() -> None:
    client = make_client()
    seen: list[object] = []

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> int:
        item = ctx.step.run("make", lambda: Item(name="bolt", qty=3), output_type=Item)
        seen.append(item)
        return item.qty * 2

    handler = serve(client, fn)
    [op] = ops(call(handler))
    assert op["data"] == {"name": "bolt", "qty": 3}

    done = call(handler, body=body_for(steps={sha1("make"): memo({"name": "bolt", "qty": 3})}))
    assert done.status == 200
    assert decoded(done) == 6
    [item] = seen
    assert isinstance(item, Item)
    assert item == Item(name="bolt", qty=3)


def test_checkpointed_step_value_matches_its_replayed_value() -> None:
    client = make_client()
    seen: list[object] = []

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> str:
        typed = ctx.step.run("typed", lambda: Item(name="a", qty=1), output_type=Item)
        plain = ctx.step.run("plain", lambda: Item(name="b", qty=2))
        seen.extend([typed, plain])
        return "ok"

    handler = serve(client, fn)
    reported = ops(call(handler, body=body_for(**CHECKPOINT)))
    assert [op["op"] for op in reported] == ["StepRun", "StepRun", "RunComplete"]
    steps = {sha1("typed"): memo(reported[0]["data"]), sha1("plain"): memo(reported[1]["data"])}
    assert call(handler, body=body_for(steps=steps)).status == 200
    # Run live (checkpointed) and replayed from memos, the function sees the same values.
    assert seen[:2] == seen[2:]
    assert seen[0] == Item(name="a", qty=1)
    assert seen[1] == {"name": "b", "qty": 2}


def test_pydantic_function_output_is_json() -> None:
    client = make_client()

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> Item:
        return Item(name="nut", qty=1)

    response = call(serve(client, fn))
    assert response.status == 200
    assert decoded(response) == {"name": "nut", "qty": 1}


def test_pydantic_event_data() -> None:
    event = stepline.Event(name="demo/item", data=Item(name="bolt", qty=3))
    wire = event.to_wire()
    assert wire == {"name": "demo/item", "data": {"name": "bolt", "qty": 3}}
    assert type(wire["data"]) is dict
    received = stepline.Event(name="demo/item", data={"name": "nut", "qty": 2})
    assert received.data_as(Item) == Item(name="nut", qty=2)


def test_event_data_as_model_inside_a_function() -> None:
    client = make_client()

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> str:
        return ctx.event.data_as(Item).name

    event = {**EVENT, "data": {"name": "washer", "qty": 9}}
    response = call(serve(client, fn), body=body_for(event=event))
    assert decoded(response) == "washer"


# --- logging ------------------------------------------------------------------------


def test_logger_is_silent_while_replaying(caplog: pytest.LogCaptureFixture) -> None:
    client = make_client(logger=logging.getLogger("stepline.tests.replay"))

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> str:
        ctx.logger.info("before a")
        ctx.step.run("a", lambda: 1)
        ctx.logger.info("between a and b")
        ctx.step.run("b", lambda: 2)
        ctx.logger.warning("after b")
        ctx.step.run("c", lambda: 3)
        return "done"

    handler = serve(client, fn)
    caplog.set_level(logging.INFO, logger="stepline.tests.replay")

    steps = {sha1("a"): memo(1), sha1("b"): memo(2)}
    assert call(handler, body=body_for(steps=steps)).status == 206
    messages = [r.getMessage() for r in caplog.records if r.name == "stepline.tests.replay"]
    assert messages == ["after b"]
    [record] = [r for r in caplog.records if r.name == "stepline.tests.replay"]
    assert record.run_id == "01JRUN000000000000000000000"  # type: ignore[attr-defined]

    caplog.clear()
    assert call(handler).status == 206  # nothing memoized: logs before the first step
    messages = [r.getMessage() for r in caplog.records if r.name == "stepline.tests.replay"]
    assert messages == ["before a"]


# --- through Flask ------------------------------------------------------------------


def test_flask_post_executes_like_the_handler() -> None:
    calls: list[str] = []
    client = make_client(is_production=True, signing_key=KEY)
    app = flask.Flask("execute")
    stepline.flask.serve(app, client, [three_steps(client, calls)])
    web = app.test_client()

    raw, headers = signed(body_for(steps={sha1("a"): memo(42)}), KEY)
    response = web.post(
        "/api/inngest?fnId=app-fn&stepId=step",
        data=raw,
        headers={**headers, "content-type": "application/json"},
    )
    assert response.status_code == 206
    [op] = response.get_json()
    assert op["id"] == sha1("b")
    assert op["data"] == 84
    assert response.headers["x-inngest-framework"] == "flask"
    assert signing.verify(
        response.get_data(), response.headers["x-inngest-signature"], [KEY], now=time.time()
    )
    assert calls == ["b"]

    unsigned = web.post("/api/inngest?fnId=app-fn&stepId=step", json=body_for())
    assert unsigned.status_code == 401
    assert unsigned.get_json()["code"] == "sig_verification_failed"

    probe = web.post("/api/inngest?probe=trust", headers=signed(body_for(), KEY)[1])
    assert probe.status_code == 401  # signed over another body
    assert calls == ["b"]


# --- large payloads, routing, event shapes ------------------------------------------


def test_use_api_loads_events_and_memos_from_the_engine(stub_server: StubServer) -> None:
    big_event = {**EVENT, "data": {"n": 99}}

    def answer(record: dict[str, Any]) -> tuple[int, Any]:
        if record["path"].endswith("/batch"):
            return 200, [big_event]
        return 200, {sha1("a"): memo(100)}

    stub_server.answer = answer
    calls: list[str] = []
    client = make_client(is_production=True, signing_key=KEY, api_base_url=stub_server.url)
    handler = serve(client, three_steps(client, calls))
    body = body_for(event={**EVENT, "data": {}}, use_api=True)
    body["use_api"] = True
    body["events"] = []
    raw, headers = signed(body, KEY)
    [op] = ops(call(handler, body=raw, headers=headers))
    assert op["id"] == sha1("b")
    assert op["data"] == 200  # from the memo fetched for "a"
    assert calls == ["b"]
    paths = sorted(r["path"] for r in stub_server.requests)
    run = "01JRUN000000000000000000000"
    assert paths == [f"/v0/runs/{run}/actions", f"/v0/runs/{run}/batch"]
    for record in stub_server.requests:
        assert record["method"] == "GET"
        assert record["headers"]["authorization"] == f"Bearer {KEY_HASH}"


def test_use_api_failure_is_500(stub_server: StubServer) -> None:
    stub_server.answer = lambda _req: (410, {"error": "gone"})
    calls: list[str] = []
    client = make_client(api_base_url=stub_server.url)
    handler = serve(client, three_steps(client, calls))
    body = body_for(use_api=True)
    body["use_api"] = True
    response = call(handler, body=body)
    assert response.status == 500
    assert "410" in decoded(response)["message"]
    assert calls == []


def test_on_failure_handler_is_routed_by_its_own_id() -> None:
    client = make_client()
    seen: list[dict[str, Any]] = []

    def on_failure(ctx: stepline.SyncContext) -> str:
        seen.append(dict(ctx.event.data))  # type: ignore[arg-type]
        return "handled"

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"), on_failure=on_failure)
    def fn(ctx: stepline.SyncContext) -> None:
        raise AssertionError("the main function must not run")

    failed = {
        "name": "inngest/function.failed",
        "data": {"function_id": "app-fn", "error": {"message": "boom"}},
        "id": "01JFAILED",
        "ts": 1_700_000_000_000,
    }
    response = call(serve(client, fn), "fn-failure", body_for(event=failed))
    assert response.status == 200
    assert decoded(response) == "handled"
    assert seen == [failed["data"]]


def test_null_event_data_is_an_empty_object() -> None:
    client = make_client()

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> dict[str, Any]:
        return {"data": dict(ctx.event.data), "count": len(ctx.events)}  # type: ignore[arg-type]

    body = body_for(event={**EVENT, "data": None})
    del body["events"]
    response = call(serve(client, fn), body=body)
    assert decoded(response) == {"data": {}, "count": 1}


def test_use_api_retries_with_the_fallback_key(stub_server: StubServer) -> None:
    fallback_hash = signing.hash_signing_key(FALLBACK)

    def answer(record: dict[str, Any]) -> tuple[int, Any]:
        if record["headers"].get("authorization") != f"Bearer {fallback_hash}":
            return 401, {"error": "unauthorized"}
        if record["path"].endswith("/batch"):
            return 200, [EVENT]
        return 200, {sha1("a"): memo(42)}

    stub_server.answer = answer
    calls: list[str] = []
    client = make_client(
        is_production=True,
        signing_key=KEY,
        signing_key_fallback=FALLBACK,
        api_base_url=stub_server.url,
    )
    handler = serve(client, three_steps(client, calls))
    body = body_for(use_api=True)
    body["use_api"] = True
    raw, headers = signed(body, KEY)
    response = call(handler, body=raw, headers=headers)
    assert response.status == 206, response.body
    assert calls == ["b"]
