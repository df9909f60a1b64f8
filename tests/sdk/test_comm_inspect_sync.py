"""CommHandler GET (inspection) and PUT (sync), driven through real requests.

Out-of-band sync talks to ``stub_server`` (a real local HTTP server), so the outgoing
``/fn/register`` call is observed exactly as the engine would receive it.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
from typing import Any

import flask
import pytest

import stepline
import stepline.flask
from stepline._comm import CommHandler, CommRequest, CommResponse
from stepline._protocol import signing
from tests._support import refusing
from tests._support.stub_server import StubServer

pytestmark = [pytest.mark.slow]

KEY = "signkey-prod-123abc"
KEY_HASH = "94bab7f22b92278ccab46e15da43a9fb8b079c05fa099d4134c6c39bbcee49f6"
FALLBACK = "signkey-prod-000000"
FALLBACK_HASH = "709e80c88487a2411e1ee4dfb9f22a861492d20c4765150c0c794abd70f8147c"
OTHER_KEY = "signkey-prod-abcdef"
EVENT_KEY_HASH = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"  # "test"
URL = "http://app.test/api/inngest"

UNAUTH_KEYS = {
    "schema_version",
    "function_count",
    "has_event_key",
    "has_signing_key",
    "has_signing_key_fallback",
    "mode",
}
AUTH_ONLY_KEYS = {
    "api_origin",
    "app_id",
    "authentication_succeeded",
    "capabilities",
    "env",
    "event_api_origin",
    "event_key_hash",
    "framework",
    "sdk_language",
    "sdk_version",
    "serve_origin",
    "serve_path",
    "signing_key_fallback_hash",
    "signing_key_hash",
}


# --- helpers ------------------------------------------------------------------------


def make_client(**settings: Any) -> stepline.Client:
    options: dict[str, Any] = {"is_production": False, "environ": {}}
    options.update(settings)
    return stepline.Client("app", **options)


def make_functions(client: stepline.Client) -> list[stepline.Function]:
    def on_failure(ctx: stepline.SyncContext) -> None:
        return None

    @client.function(
        id="fn", trigger=stepline.TriggerEvent(event="demo/go"), retries=2, on_failure=on_failure
    )
    def fn(ctx: stepline.SyncContext) -> str:
        return "done"

    @client.function(id="other", trigger=stepline.TriggerCron(cron="*/5 * * * *"))
    def other(ctx: stepline.SyncContext) -> None:
        return None

    return [fn, other]


def make_handler(client: stepline.Client, **options: Any) -> CommHandler:
    return CommHandler(client=client, functions=make_functions(client), framework="test", **options)


def req(
    method: str,
    url: str = URL,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> CommRequest:
    return CommRequest.build(method=method, url=url, headers=headers or {}, body=body)


def signed_headers(body: bytes, key: str, *, age: float = 0.0) -> dict[str, str]:
    return {"X-Inngest-Signature": signing.sign(body, key, now=time.time() - age)}


def signed_put(key: str = KEY, headers: dict[str, str] | None = None) -> CommRequest:
    """An out-of-band sync as the engine sends it in production: signed, naming the URL."""
    body = json.dumps({"url": URL}).encode()
    return req("PUT", headers={**(headers or {}), **signed_headers(body, key)}, body=body)


def decoded(response: CommResponse) -> Any:
    return json.loads(response.body)


def assert_sdk_headers(response: CommResponse) -> None:
    assert response.headers["x-inngest-sdk"].startswith("stepline-py:v")
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-inngest-framework"] == "test"
    assert response.headers["x-inngest-req-version"] == "2"


def response_key(response: CommResponse) -> str:
    """The key that signed a response (fails if unsigned or signed by no known key)."""
    header = response.headers["x-inngest-signature"]
    return signing.verify(response.body, header, [KEY, FALLBACK], now=time.time())


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- GET: inspection ----------------------------------------------------------------


def test_get_dev_unauthenticated_body() -> None:
    handler = make_handler(make_client())
    response = handler.handle_sync(req("GET"))
    assert response.status == 200
    assert_sdk_headers(response)
    assert response.headers["x-inngest-expected-server-kind"] == "dev"
    body = decoded(response)
    assert set(body) == UNAUTH_KEYS
    assert body == {
        "schema_version": "2024-05-24",
        "function_count": 2,  # the synthesized on-failure function is not counted
        "has_event_key": False,
        "has_signing_key": False,
        "has_signing_key_fallback": False,
        "mode": "dev",
    }
    assert "x-inngest-signature" not in response.headers


def test_get_cloud_unsigned_is_unauthenticated_but_reports_keys() -> None:
    client = make_client(
        is_production=True, signing_key=KEY, signing_key_fallback=FALLBACK, event_key="test"
    )
    response = make_handler(client).handle_sync(req("GET"))
    assert response.status == 200
    body = decoded(response)
    assert set(body) == UNAUTH_KEYS
    assert body["mode"] == "cloud"
    assert body["has_signing_key"] is True
    assert body["has_signing_key_fallback"] is True
    assert body["has_event_key"] is True
    assert KEY_HASH not in response.body.decode()
    assert "x-inngest-signature" not in response.headers


def test_get_cloud_signed_is_authenticated_and_signed() -> None:
    client = make_client(
        is_production=True,
        signing_key=KEY,
        signing_key_fallback=FALLBACK,
        event_key="test",
        env="feature-x",
        api_base_url="https://api.inngest.com",  # Inngest Cloud, named: its event API follows
    )
    handler = make_handler(client, serve_origin="https://public.example")
    response = handler.handle_sync(req("GET", headers=signed_headers(b"", KEY)))
    assert response.status == 200
    assert response.headers["x-inngest-expected-server-kind"] == "cloud"
    assert response.headers["x-inngest-env"] == "feature-x"
    body = decoded(response)
    assert set(body) == UNAUTH_KEYS | AUTH_ONLY_KEYS
    assert body["authentication_succeeded"] is True
    assert body["signing_key_hash"] == KEY_HASH
    assert body["signing_key_fallback_hash"] == FALLBACK_HASH
    assert body["event_key_hash"] == EVENT_KEY_HASH
    assert body["app_id"] == "app"
    assert body["mode"] == "cloud"
    assert body["env"] == "feature-x"
    assert body["framework"] == "test"
    assert body["sdk_language"] == "py"
    assert body["sdk_version"] == stepline.__version__
    assert body["serve_origin"] == "https://public.example"
    assert body["api_origin"] == "https://api.inngest.com"
    assert body["event_api_origin"] == "https://inn.gs"
    assert body["capabilities"] == {"connect": "v1", "in_band_sync": "v1", "trust_probe": "v1"}
    assert body["function_count"] == 2
    assert response_key(response) == KEY


def test_get_signed_with_fallback_key_is_authenticated_and_signed_with_it() -> None:
    client = make_client(is_production=True, signing_key=KEY, signing_key_fallback=FALLBACK)
    response = make_handler(client).handle_sync(req("GET", headers=signed_headers(b"", FALLBACK)))
    assert response.status == 200
    body = decoded(response)
    assert body["authentication_succeeded"] is True
    assert body["signing_key_hash"] == KEY_HASH
    assert response_key(response) == FALLBACK


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(signing.sign(b"", OTHER_KEY, now=time.time()), id="wrong-key"),
        pytest.param("t=123&s=nothex", id="malformed"),
        pytest.param("garbage", id="garbage"),
        pytest.param("stale", id="stale"),
        pytest.param(signing.sign(b"x", KEY, now=time.time()), id="other-body"),
    ],
)
def test_get_badly_signed_gets_unauthenticated_body_without_hashes(signature: str) -> None:
    if signature == "stale":
        signature = signing.sign(b"", KEY, now=time.time() - 600)
    client = make_client(
        is_production=True, signing_key=KEY, signing_key_fallback=FALLBACK, event_key="test"
    )
    response = make_handler(client).handle_sync(
        req("GET", headers={"x-inngest-signature": signature})
    )
    assert response.status == 200
    body = decoded(response)
    assert set(body) == UNAUTH_KEYS
    text = response.body.decode()
    for secret in (KEY_HASH, FALLBACK_HASH, EVENT_KEY_HASH):
        assert secret not in text
    assert "x-inngest-signature" not in response.headers


@pytest.mark.parametrize(
    ("production", "kind"),
    [(False, "cloud"), (True, "dev")],
)
def test_get_server_kind_mismatch_is_403(production: bool, kind: str) -> None:
    client = make_client(is_production=production, signing_key=KEY)
    response = make_handler(client).handle_sync(
        req("GET", headers={"X-Inngest-Server-Kind": kind, **signed_headers(b"", KEY)})
    )
    assert response.status == 403
    assert decoded(response) == {}
    assert_sdk_headers(response)


def test_get_matching_server_kind_is_served() -> None:
    response = make_handler(make_client()).handle_sync(
        req("GET", headers={"x-inngest-server-kind": "dev"})
    )
    assert response.status == 200
    assert decoded(response)["mode"] == "dev"


def test_get_dev_mode_with_key_and_valid_signature_is_authenticated() -> None:
    client = make_client(is_production=False, signing_key=KEY)
    response = make_handler(client).handle_sync(req("GET", headers=signed_headers(b"", KEY)))
    body = decoded(response)
    assert body["authentication_succeeded"] is True
    assert body["mode"] == "dev"
    assert body["signing_key_hash"] == KEY_HASH


# --- PUT: out-of-band sync ----------------------------------------------------------


def test_put_registers_out_of_band(stub_server: StubServer) -> None:
    stub_server.answer = lambda _req: (200, {"ok": True, "modified": True, "app_id": "x"})
    handler = make_handler(make_client(api_base_url=stub_server.url))
    response = handler.handle_sync(req("PUT"))

    assert response.status == 200
    assert_sdk_headers(response)
    assert response.headers["x-inngest-sync-kind"] == "out_of_band"
    assert decoded(response) == {"ok": True, "modified": True, "app_id": "x"}

    [sent] = stub_server.requests
    assert sent["method"] == "POST"
    assert sent["path"] == "/fn/register"
    assert sent["headers"]["content-type"] == "application/json"
    assert sent["headers"]["x-inngest-framework"] == "test"
    assert sent["headers"]["x-inngest-sdk"] == response.headers["x-inngest-sdk"]
    assert "authorization" not in sent["headers"]
    assert "x-inngest-expected-server-kind" not in sent["headers"]
    body = sent["body"]
    assert body["url"] == URL
    assert body["appName"] == "app"
    assert body["framework"] == "test"
    assert body["sdk"] == f"py:v{stepline.__version__}"
    assert body["capabilities"] == {"connect": "v1", "in_band_sync": "v1", "trust_probe": "v1"}
    ids = [f["id"] for f in body["functions"]]
    assert ids == ["app-fn", "app-fn-failure", "app-other"]
    step = body["functions"][0]["steps"]["step"]
    assert step["runtime"] == {"type": "http", "url": f"{URL}?fnId=app-fn&stepId=step"}
    assert step["retries"] == {"attempts": 2}


def test_put_without_a_json_answer_reports_success(stub_server: StubServer) -> None:
    stub_server.answer = lambda _req: (200, ["not", "an", "object"])
    response = make_handler(make_client(api_base_url=stub_server.url)).handle_sync(req("PUT"))
    assert response.status == 200
    assert decoded(response) == {"message": "Successfully registered", "modified": False}


def test_put_sends_bearer_hash_of_signing_key(stub_server: StubServer) -> None:
    stub_server.answer = lambda _req: (200, {"ok": True})
    client = make_client(
        is_production=True,
        signing_key=KEY,
        signing_key_fallback=FALLBACK,
        api_base_url=stub_server.url,
    )
    response = make_handler(client).handle_sync(signed_put())
    assert response.status == 200
    [sent] = stub_server.requests  # the primary key worked: no fallback attempt
    assert sent["headers"]["authorization"] == f"Bearer {KEY_HASH}"


@pytest.mark.parametrize("refusal", [401, 403])
def test_put_retries_with_fallback_key_after_refusal(stub_server: StubServer, refusal: int) -> None:
    def answer(record: dict[str, Any]) -> tuple[int, Any]:
        if record["headers"].get("authorization") == f"Bearer {KEY_HASH}":
            return refusal, {"error": "bad key"}
        return 200, {"ok": True, "modified": False}

    stub_server.answer = answer
    client = make_client(
        is_production=True,
        signing_key=KEY,
        signing_key_fallback=FALLBACK,
        api_base_url=stub_server.url,
    )
    response = make_handler(client).handle_sync(signed_put())
    assert response.status == 200
    assert decoded(response) == {"ok": True, "modified": False}
    auths = [r["headers"]["authorization"] for r in stub_server.requests]
    assert auths == [f"Bearer {KEY_HASH}", f"Bearer {FALLBACK_HASH}"]
    assert stub_server.requests[0]["body"] == stub_server.requests[1]["body"]


def test_put_refused_by_both_keys_fails(stub_server: StubServer) -> None:
    stub_server.answer = lambda _req: (401, {"error": "unauthorized"})
    client = make_client(
        is_production=True,
        signing_key=KEY,
        signing_key_fallback=FALLBACK,
        api_base_url=stub_server.url,
    )
    response = make_handler(client).handle_sync(signed_put())
    assert response.status == 500
    body = decoded(response)
    assert body["code"] == "registration_failed"
    assert "401" in body["message"]
    assert "unauthorized" in body["message"]
    assert len(stub_server.requests) == 2


def test_put_forwards_deploy_id_to_register_url_only(stub_server: StubServer) -> None:
    stub_server.answer = lambda _req: (200, {"ok": True})
    handler = make_handler(make_client(api_base_url=stub_server.url))
    response = handler.handle_sync(req("PUT", url=URL + "?deployId=dep-42"))
    assert response.status == 200
    [sent] = stub_server.requests
    parts = urllib.parse.urlsplit(sent["path"])
    assert parts.path == "/fn/register"
    assert urllib.parse.parse_qs(parts.query) == {"deployId": ["dep-42"]}
    assert "deployId" not in sent["body"]["url"]
    assert "deployId" not in json.dumps(sent["body"]["functions"])


@pytest.mark.parametrize(("production", "kind"), [(False, "dev"), (True, "cloud")])
def test_put_echoes_server_kind_as_expected_server_kind(
    stub_server: StubServer, production: bool, kind: str
) -> None:
    stub_server.answer = lambda _req: (200, {"ok": True})
    client = make_client(is_production=production, signing_key=KEY, api_base_url=stub_server.url)
    response = make_handler(client).handle_sync(signed_put(headers={"X-Inngest-Server-Kind": kind}))
    assert response.status == 200
    [sent] = stub_server.requests
    assert sent["headers"]["x-inngest-expected-server-kind"] == kind


def test_put_stub_failure_is_500_registration_failed(stub_server: StubServer) -> None:
    stub_server.answer = lambda _req: (500, {"error": "database is down"})
    handler = make_handler(make_client(api_base_url=stub_server.url))
    response = handler.handle_sync(req("PUT"))
    assert response.status == 500
    assert_sdk_headers(response)
    body = decoded(response)
    assert body["code"] == "registration_failed"
    assert body["name"] == "RegistrationFailedError"
    assert f"{stub_server.url}/fn/register" in body["message"]
    assert "500" in body["message"]
    assert "database is down" in body["message"]
    assert len(stub_server.requests) == 1  # a 500 is not retried with another key


def test_put_unreachable_engine_is_500_registration_failed() -> None:
    base = f"http://127.0.0.1:{unused_port()}"
    handler = make_handler(make_client(api_base_url=base))
    response = handler.handle_sync(req("PUT"))
    assert response.status == 500
    body = decoded(response)
    assert body["code"] == "registration_failed"
    assert f"{base}/fn/register" in body["message"]
    assert "failed" in body["message"]
    assert "refused" in body["message"].lower()  # the network error itself is named


@pytest.mark.parametrize(("production", "kind"), [(False, "cloud"), (True, "dev")])
def test_put_server_kind_mismatch_is_400_without_calling_out(
    stub_server: StubServer, production: bool, kind: str
) -> None:
    client = make_client(is_production=production, signing_key=KEY, api_base_url=stub_server.url)
    response = make_handler(client).handle_sync(req("PUT", headers={"x-inngest-server-kind": kind}))
    assert response.status == 400
    body = decoded(response)
    assert body["code"] == "server_kind_mismatch"
    assert kind in body["message"]
    assert stub_server.requests == []


# --- PUT: in-band sync --------------------------------------------------------------


def in_band_request(url: str, key: str | None) -> CommRequest:
    body = json.dumps({"url": url}).encode()
    headers = {"X-Inngest-Sync-Kind": "in_band", "content-type": "application/json"}
    if key is not None:
        headers.update(signed_headers(body, key))
    return req("PUT", url="http://10.0.0.5:8000/api/inngest", headers=headers, body=body)


def test_put_in_band_answers_with_the_app(stub_server: StubServer) -> None:
    client = make_client(
        is_production=True, signing_key=KEY, event_key="test", api_base_url=stub_server.url
    )
    response = make_handler(client).handle_sync(
        in_band_request("https://public.example/api/inngest", KEY)
    )
    assert response.status == 200
    assert_sdk_headers(response)
    assert response.headers["x-inngest-sync-kind"] == "in_band"
    body = decoded(response)
    assert {"app_id", "functions", "inspection", "url", "sdk_language", "sdk_version"} <= set(body)
    assert body["app_id"] == "app"
    assert body["url"] == "https://public.example/api/inngest"
    assert body["sdk_language"] == "py"
    assert [f["id"] for f in body["functions"]] == ["app-fn", "app-fn-failure", "app-other"]
    runtime = body["functions"][0]["steps"]["step"]["runtime"]
    assert runtime["url"] == "https://public.example/api/inngest?fnId=app-fn&stepId=step"
    inspection = body["inspection"]
    assert inspection["authentication_succeeded"] is True
    assert inspection["signing_key_hash"] == KEY_HASH
    assert inspection["event_key_hash"] == EVENT_KEY_HASH
    assert None not in body.values()  # nulls are stripped
    assert response_key(response) == KEY
    assert stub_server.requests == []  # in band: nothing is registered out of band


@pytest.mark.parametrize("key", [None, OTHER_KEY], ids=["unsigned", "wrong-key"])
def test_put_in_band_unsigned_or_badly_signed_is_401(
    stub_server: StubServer, key: str | None
) -> None:
    client = make_client(is_production=True, signing_key=KEY, api_base_url=stub_server.url)
    response = make_handler(client).handle_sync(in_band_request("https://public.example/", key))
    assert response.status == 401
    body = decoded(response)
    assert body["code"] == "sig_verification_failed"
    assert KEY_HASH not in response.body.decode()
    assert stub_server.requests == []


def test_put_in_band_in_dev_mode_without_key_is_401(stub_server: StubServer) -> None:
    client = make_client(api_base_url=stub_server.url)
    response = make_handler(client).handle_sync(in_band_request("https://public.example/", None))
    assert response.status == 401
    assert decoded(response)["code"] == "sig_verification_failed"
    assert stub_server.requests == []


def test_put_in_band_disallowed_falls_back_to_out_of_band(stub_server: StubServer) -> None:
    stub_server.answer = lambda _req: (200, {"ok": True, "modified": True})
    client = make_client(
        is_production=True,
        signing_key=KEY,
        api_base_url=stub_server.url,
        allow_in_band_sync=False,
    )
    response = make_handler(client).handle_sync(
        in_band_request("https://public.example/api/inngest", KEY)
    )
    assert response.status == 200
    assert response.headers["x-inngest-sync-kind"] == "out_of_band"
    assert decoded(response) == {"ok": True, "modified": True}
    [sent] = stub_server.requests
    assert sent["path"] == "/fn/register"
    assert sent["headers"]["authorization"] == f"Bearer {KEY_HASH}"
    # Out of band and signed, the URL is the one the signed body names, not the request's
    # Host (which the signature does not cover).
    assert sent["body"]["url"] == "https://public.example/api/inngest"


# --- other methods and limits -------------------------------------------------------


@pytest.mark.parametrize("method", ["DELETE", "PATCH", "OPTIONS"])
def test_unsupported_method_is_405(method: str) -> None:
    response = make_handler(make_client()).handle_sync(req(method))
    assert response.status == 405
    assert_sdk_headers(response)
    assert decoded(response)["code"] == "method_not_allowed"


@pytest.mark.parametrize("method", ["POST", "PUT", "GET"])
def test_oversized_body_is_413(stub_server: StubServer, method: str) -> None:
    handler = make_handler(make_client(api_base_url=stub_server.url), max_body_bytes=32)
    response = handler.handle_sync(req(method, body=b"x" * 33))
    assert response.status == 413
    body = decoded(response)
    assert body["code"] == "body_too_large"
    assert "33" in body["message"]
    assert stub_server.requests == []


def test_body_at_the_limit_is_accepted(stub_server: StubServer) -> None:
    stub_server.answer = lambda _req: (200, {"ok": True})
    handler = make_handler(make_client(api_base_url=stub_server.url), max_body_bytes=32)
    response = handler.handle_sync(req("PUT", body=b"x" * 32))
    assert response.status == 200
    assert len(stub_server.requests) == 1


# --- through Flask ------------------------------------------------------------------


def flask_app(client: stepline.Client) -> flask.Flask:
    app = flask.Flask("inspect-sync")
    stepline.flask.serve(app, client, make_functions(client))
    return app


def test_flask_get_signed_and_unsigned() -> None:
    client = make_client(is_production=True, signing_key=KEY, api_base_url=refusing.url())
    web = flask_app(client).test_client()

    plain = web.get("/api/inngest")
    assert plain.status_code == 200
    assert set(plain.get_json()) == UNAUTH_KEYS
    assert plain.headers["x-inngest-framework"] == "flask"

    signed = web.get("/api/inngest", headers=signed_headers(b"", KEY))
    assert signed.status_code == 200
    body = signed.get_json()
    assert body["signing_key_hash"] == KEY_HASH
    assert body["framework"] == "flask"
    header = signed.headers["x-inngest-signature"]
    assert signing.verify(signed.get_data(), header, [KEY], now=time.time()) == KEY

    mismatch = web.get("/api/inngest", headers={"x-inngest-server-kind": "dev"})
    assert mismatch.status_code == 403


def test_flask_put_registers_with_request_url(stub_server: StubServer) -> None:
    stub_server.answer = lambda _req: (200, {"ok": True, "modified": True})
    client = make_client(api_base_url=stub_server.url)
    web = flask_app(client).test_client()
    response = web.put("/api/inngest?deployId=d1", headers={"x-inngest-server-kind": "dev"})
    assert response.status_code == 200
    assert response.headers["x-inngest-sync-kind"] == "out_of_band"
    assert response.get_json() == {"ok": True, "modified": True}
    [sent] = stub_server.requests
    assert sent["path"] == "/fn/register?deployId=d1"
    assert sent["body"]["url"] == "http://localhost/api/inngest"
    assert sent["body"]["framework"] == "flask"
    assert sent["headers"]["x-inngest-expected-server-kind"] == "dev"


def test_flask_rejects_delete() -> None:
    web = flask_app(make_client()).test_client()
    assert web.delete("/api/inngest").status_code == 405
