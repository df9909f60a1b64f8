"""CommHandler POST: signatures, the trust probe, and bad requests leaving it intact."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from stepline._comm import CommHandler, CommRequest
from stepline._protocol import jcs, signing

from .comm_calls import (
    EVENT,
    FALLBACK,
    KEY,
    OTHER_KEY,
    URL,
    body_for,
    call,
    decoded,
    make_client,
    ops,
    serve,
    signed,
    three_steps,
)

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
