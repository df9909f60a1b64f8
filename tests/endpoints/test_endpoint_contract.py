"""Durable endpoints, one contract over every framework and every way to reach it.

Each check runs on every variant of ``harness.VARIANTS``: FastAPI and bare ASGI apps in
Starlette (``TestClient`` and uvicorn), Flask (its test client and werkzeug), Tornado
(``AsyncHTTPTestCase`` and a real ``HTTPServer``) and Django (``Client`` and WSGI for its
sync views, ``AsyncClient`` and uvicorn for its async views), with plain ``def`` and
``async def`` handlers and hooks in turn. The app is the shop of
``tests/apps/durable_shop.py``: an embedded engine on SQLite, the kit's run routes at
``/api``, the framework's own login in front of ``note`` and ``unscoped``. The SIGKILL
scenario runs the app as a process on each real server. What is particular to one
framework stays in its own file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import stepline
from tests.apps import durable_crash

from .harness import SERVERS, VARIANTS, Answer, Site, open_site

ADA = {"cookie": "session=tok-ada"}
BOB = {"cookie": "session=tok-bob"}
JSON = {"content-type": "application/json"}
FORM = {"content-type": "application/x-www-form-urlencoded"}
RUN_ID = "x-stepline-run-id"


@pytest.fixture(autouse=True)
def _no_stepline_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own ``STEPLINE_*``/``INNGEST_*`` settings stay out of the apps."""
    for name in list(os.environ):
        if name.startswith(("STEPLINE_", "INNGEST_")):
            monkeypatch.delenv(name)


@pytest.fixture(params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def site(variant: str, tmp_path: Path) -> Iterator[Site]:
    with open_site(variant, tmp_path) as made:
        yield made


def run_id_of(answer: Answer) -> str:
    run_id: str = answer.headers[RUN_ID]
    return run_id


# -- a request's run: inline, handed over, replayed ------------------------------------------


def test_a_route_that_finishes_answers_inline(site: Site) -> None:
    reply = site.post("/orders/42?x=1", {"qty": 2})
    assert reply.status == 200, reply.body
    assert reply.json == {
        "steps": ["a", "b", "c"],
        "oid": "42",
        "sent": {"qty": 2},
        "path": "/orders/42",
        "query": {"x": "1"},
    }
    assert reply.headers["content-type"] == "application/json"
    run_id = run_id_of(reply)
    assert site.shop.marks(run_id) == ["a", "b", "c"]  # each once, in the request
    run = site.client.get_run_sync(run_id).describe()
    assert run.status is stepline.RunStatus.COMPLETED
    assert run.function_id == f"{site.client.app_id}-orders"
    shown = site.request("GET", f"/api/runs/{run_id}")  # the kit's status route
    assert (shown.status, shown.json["status"]) == (200, "Completed")
    assert shown.json["output"]["json"] == reply.json


@pytest.mark.slow
def test_a_sleep_answers_202_and_the_result_route_answers_once_the_run_ends(site: Site) -> None:
    reply = site.post("/nap", {})
    assert reply.status == 202, reply.body
    run_id = run_id_of(reply)
    assert reply.headers["location"] == f"/api/runs/{run_id}/result"
    assert reply.headers["retry-after"] == "1"
    assert reply.json["links"] == {
        "status": f"/api/runs/{run_id}",
        "result": f"/api/runs/{run_id}/result",
        "events": f"/api/runs/{run_id}/events",
    }
    assert site.shop.marks(run_id) == ["first"]  # "then" waits for the engine
    result = site.follow(reply.headers["location"]).json
    assert result["status"] == "Completed"
    assert result["output"] == {
        "status": 201,
        "headers": {"x-nap": "1", "content-type": "application/json"},
        "json": {"ran": ["first", "then"]},
    }
    assert site.shop.marks(run_id) == ["first", "then"]  # the recorded step did not run again


@pytest.mark.slow
def test_a_retried_request_with_the_same_idempotency_key_gets_the_same_run(site: Site) -> None:
    key = {"idempotency-key": "order-7"}
    first = site.post("/orders/7", {"qty": 1}, key)
    assert first.status == 200, first.body
    assert "idempotent-replayed" not in first.headers
    again = site.post("/orders/7", {"qty": 1}, key)
    assert again.status == 200, again.body
    assert run_id_of(again) == run_id_of(first)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json == first.json
    assert site.shop.marks(run_id_of(first)) == ["a", "b", "c"]  # not run again

    napping = site.post("/nap", {}, {"idempotency-key": "nap-1"})
    assert napping.status == 202, napping.body
    run_id = run_id_of(napping)
    while_running = site.post("/nap", {}, {"idempotency-key": "nap-1"})
    assert (while_running.status, run_id_of(while_running)) == (202, run_id)
    site.follow(napping.headers["location"])
    ended = site.post("/nap", {}, {"idempotency-key": "nap-1"})  # its stored response
    assert ended.status == 201, ended.body
    assert ended.json == {"ran": ["first", "then"]}
    assert (ended.headers["x-nap"], ended.headers["idempotent-replayed"]) == ("1", "true")
    assert run_id_of(ended) == run_id
    assert site.shop.marks(run_id) == ["first", "then"]
    other = site.post("/nap", {}, {"idempotency-key": "nap-2"})
    assert run_id_of(other) != run_id
    empty = site.post("/orders/8", {}, {"idempotency-key": ""})
    assert empty.status == 400, empty.body
    assert empty.json == {"error": "Idempotency-Key: want 1-256 characters"}


def test_an_endpoint_response_sets_status_and_headers(site: Site) -> None:
    reply = site.post("/made/7")
    assert reply.status == 201, reply.body
    assert reply.headers["x-order"] == "7"
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    assert reply.body == b"order 7 made"
    assert site.shop.marks(run_id_of(reply)) == ["make"]


def test_a_body_past_max_body_is_413_and_starts_no_run(site: Site) -> None:
    text = {"content-type": "text/plain"}
    fits = site.post("/small", b"x" * 16, text)
    assert (fits.status, fits.json) == (200, {"echo": "x" * 16})
    refused = site.post("/small", b"y" * 17, text)
    assert refused.status == 413, refused.body
    assert refused.json == {"error": "the request body is larger than 16 bytes"}
    assert RUN_ID not in refused.headers
    assert len(site.runs("small")) == 1  # the one that fit
    default = site.post("/orders/1", b"x" * (1024 * 1024 + 1), JSON)  # the default, 1 MiB
    assert default.status == 413, default.body
    assert "larger than 1048576 bytes" in default.json["error"]
    assert site.runs("orders") == []
    assert site.shop.marks() == []


@pytest.mark.process
@pytest.mark.parametrize("server", SERVERS)
def test_a_killed_app_process_is_finished_by_the_engine_without_rerunning_a_step(
    server: str, tmp_path: Path
) -> None:
    """SIGKILL after steps a and b were recorded (c running): the restarted process's
    engine takes the call back when its lease lapses and finishes the run."""
    variant = VARIANTS[server]
    face = "async" if variant.is_async else "sync"
    durable_crash.survives_sigkill(variant.framework, face, tmp_path)


# -- whose run it is ---------------------------------------------------------------------------


def test_a_key_from_a_caller_the_endpoint_does_not_know_is_refused_with_credentials(
    site: Site,
) -> None:
    """``unscoped`` is behind the framework's login but not told who logged in: a key on
    a request carrying credentials would be every user's, so it is refused; without
    credentials the key (a random one) is the only secret, and is taken."""
    key = {"idempotency-key": "k-1"}
    assert site.post("/unscoped", {}).status == 401  # the framework's login
    ada = site.post("/unscoped", {"iban": "ada's"}, ADA)
    assert ada.status == 200, ada.body  # no key: a run, as always
    assert ada.json == {"note": {"iban": "ada's"}, "principal": None}
    bearer = {"authorization": "Bearer tok-ada", **key}
    for headers in (bearer, {**ADA, **key}, {**BOB, **key}):
        refused = site.post("/unscoped", {"iban": "ada's"}, headers)
        assert refused.status == 400, refused.body
        assert "caller=" in refused.json["error"]
        assert "idempotent-replayed" not in refused.headers
        assert b"ada's" not in refused.body
    assert len(site.runs("unscoped")) == 1

    first = site.post("/open", {}, {"idempotency-key": "k-anon"})
    second = site.post("/open", {}, {"idempotency-key": "k-anon"})
    assert (first.status, second.status) == (200, 200), second.body
    assert run_id_of(second) == run_id_of(first)
    assert second.headers["idempotent-replayed"] == "true"


def test_the_caller_hook_scopes_the_key_to_the_framework_authenticated_user(site: Site) -> None:
    key = {"idempotency-key": "k-1"}
    assert site.post("/note", {}, key).status == 401  # the framework's login
    ada = site.post("/note", {"iban": "ada's"}, {**ADA, **key})
    bob = site.post("/note", {"iban": "bob's"}, {**BOB, **key})
    again = site.post("/note", {"iban": "changed"}, {**ADA, **key})
    assert (ada.status, bob.status, again.status) == (200, 200, 200), bob.body
    assert ada.json == {"note": {"iban": "ada's"}, "principal": "user:ada"}
    assert bob.json == {"note": {"iban": "bob's"}, "principal": "user:bob"}
    assert "idempotent-replayed" not in bob.headers
    assert run_id_of(bob) != run_id_of(ada)
    assert run_id_of(again) == run_id_of(ada)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json == ada.json  # ada's own response, replayed
    run = site.client.get_run_sync(run_id_of(bob)).describe()
    assert run.started_by == "user:bob"


@pytest.mark.slow
def test_authorize_names_the_caller_and_scopes_idempotency_keys(site: Site) -> None:
    key = {"idempotency-key": "k", **JSON}
    refused = site.post("/transfer?hold=1", {}, JSON)
    assert (refused.status, refused.json) == (401, {"error": "log in first"})
    assert site.shop.reached == ["authorize"]  # the handler never ran
    ada = site.post("/transfer?hold=1", {}, {**ADA, **key})
    bob = site.post("/transfer?hold=1", {}, {**BOB, **key})
    ada_again = site.post("/transfer?hold=1", {}, {**ADA, **key})
    assert (ada.status, bob.status, ada_again.status) == (202, 202, 202), bob.body
    assert run_id_of(ada) != run_id_of(bob)
    assert run_id_of(ada_again) == run_id_of(ada)
    run = site.client.get_run_sync(run_id_of(ada)).describe()
    assert run.started_by == "user:ada"
    # the kit shows a run to the caller who started it only: to anyone else it is unknown
    status = f"/api/runs/{run_id_of(ada)}"
    assert site.request("GET", status, headers=ADA).status == 200
    for other in (BOB, {}):
        hidden = site.request("GET", status, headers=other)
        assert (hidden.status, hidden.json) == (404, {"error": f"run {run_id_of(ada)} not found"})


@pytest.mark.slow
def test_the_handler_sees_its_caller_on_the_first_call_and_after_a_resume(site: Site) -> None:
    """The caller is the run's starter as the engine recorded it, handed to every call:
    never read from the request it stored (a body naming someone else changes nothing)."""
    answer = site.post("/transfer?nap=1", {"principal": "user:victim"}, {**ADA, **JSON})
    assert answer.status == 202, answer.body
    result = site.follow(answer.headers["location"], ADA).json
    assert result["status"] == "Completed"
    assert result["output"]["json"] == {"to": None, "order": {"by": "user:ada"}, "by": "user:ada"}
    # the request's call (inline), then the engine's call after the sleep
    assert site.shop.seen == ["user:ada", "user:ada", "user:ada"]
    run = site.stored(run_id_of(answer))
    assert run["started_by"] == "user:ada"
    stored = run["events"][0]["data"]
    assert "principal" not in stored  # not recorded with the request
    assert json.loads(stored["body"]["text"]) == {"principal": "user:victim"}  # its body


def test_the_kit_does_not_start_an_endpoints_function(site: Site) -> None:
    forged = {"method": "POST", "path": "/transfer", "body": {"text": '{"to": "mallory"}'}}
    answer = site.post("/api/runs", {"function": "transfer", "data": forged}, BOB)
    assert answer.status == 400, answer.body
    assert "durable endpoint" in answer.json["error"]
    assert "route" in answer.json["error"]
    assert site.runs("transfer") == []
    assert site.shop.reached == []


# -- what a run stores of the request ---------------------------------------------------------

GATEWAY_CREDENTIALS = {
    "x-forwarded-access-token": "oauth2-proxy-s3cret",  # oauth2-proxy
    "cf-access-jwt-assertion": "cloudflare-s3cret",  # Cloudflare Access
    "apikey": "kong-s3cret",  # Kong's key-auth
    "authorization": "Bearer auth-s3cret",
    "cookie": "session=cookie-s3cret",
    "x-api-key": "api-key-s3cret",
}
#: the query, and the credential-looking values a run stores redacted
QUERY = "access_token=query-s3cret&api_key=query-key-s3cret&page=2"


def test_credentials_are_neither_stored_with_the_run_nor_seen_by_the_handler(site: Site) -> None:
    headers = {**GATEWAY_CREDENTIALS, "x-request-id": "req-7", "x-custom": "custom-value"}
    answer = site.post(f"/open?{QUERY}", {}, {**headers, "user-agent": "contract/1"})
    assert answer.status == 200, answer.body
    seen = answer.json
    stored = json.dumps(site.stored(run_id_of(answer)))
    assert "s3cret" not in stored
    assert b"s3cret" not in answer.body  # the handler saw what was stored, no more
    assert seen["query"] == {"access_token": "[redacted]", "api_key": "[redacted]", "page": "2"}
    assert seen["headers"]["x-request-id"] == "req-7"  # the default allowlist
    assert seen["headers"]["user-agent"] == "contract/1"
    assert "x-custom" not in seen["headers"]  # not allowlisted: least data
    assert '"page": "2"' in stored  # the request is in the run read back


def test_keep_headers_and_keep_query_store_the_named_ones(site: Site) -> None:
    sent = {"x-custom": "c", "x-api-key": "k", "authorization": "Bearer t0k", "x-trace": "7"}
    answer = site.post("/kept?api_key=kept&token=t", {}, {**sent, "cookie": "s=1"})
    assert answer.status == 200, answer.body
    seen = answer.json
    assert (seen["headers"]["x-custom"], seen["headers"]["x-api-key"]) == ("c", "k")
    assert "authorization" not in seen["headers"]
    assert "cookie" not in seen["headers"]
    assert "x-trace" not in seen["headers"]  # neither allowlisted nor kept
    assert seen["query"] == {"api_key": "kept", "token": "[redacted]"}
    stored = site.stored(run_id_of(answer))["events"][0]["data"]
    assert stored["headers"]["x-api-key"] == "k"
    assert "t0k" not in json.dumps(stored)


# -- cross-site form posts ----------------------------------------------------------------------

CROSS = [
    {"sec-fetch-site": "cross-site", "origin": "https://evil.example"},
    {"sec-fetch-site": "same-site", "origin": "https://evil.localhost"},
    {"origin": "https://evil.example"},  # a browser without Sec-Fetch-Site
    {"origin": "null"},  # a sandboxed frame, a data: URL
]
SIMPLE = [FORM["content-type"], "text/plain", "multipart/form-data"]


def test_a_cross_site_form_post_with_the_users_cookie_reaches_no_handler(site: Site) -> None:
    for cross in CROSS:
        for kind in SIMPLE:
            headers = {"content-type": kind, **cross, **ADA}
            forged = site.post("/transfer", b"to=mallory", headers)
            assert forged.status == 403, (cross, kind, forged.body)
            assert "another site" in forged.json["error"]
            assert RUN_ID not in forged.headers
    assert site.shop.reached == []  # neither authorize nor the handler ran
    assert site.runs("transfer") == []


def test_same_origin_forms_json_calls_webhooks_and_cross_site_endpoints_are_taken(
    site: Site,
) -> None:
    # the Host the app sees; Django's test Client sends none (a browser always does)
    host = site.post("/open").json["headers"].get("host")
    sent_host = {} if host else {"host": "testserver"}
    origin = f"http://{host or 'testserver'}"
    same = {"sec-fetch-site": "same-origin", "origin": origin, **FORM}
    assert site.post("/transfer", b"to=bob", {**same, **ADA}).json["to"] == "bob"
    old_browser = {"origin": origin, **sent_host, **FORM}  # no Sec-Fetch-Site: Origin, Host
    assert site.post("/transfer", b"to=bob", {**old_browser, **ADA}).status == 200
    # JSON cannot be sent cross-site without the app's CORS permission (a preflight)
    api = {"sec-fetch-site": "cross-site", "origin": "https://partner.example", **JSON}
    assert site.post("/transfer", {"to": "carol"}, {**api, **ADA}).json["to"] == "carol"
    guarded = {"x-stepline-csrf": "1", "sec-fetch-site": "cross-site", **FORM}
    assert site.post("/transfer", b"to=dan", {**guarded, **ADA}).status == 200
    webhook = {**FORM, **ADA}  # no browser: no Origin, no Sec-Fetch-Site
    assert site.post("/transfer", b"to=erin", webhook).status == 200
    assert site.shop.reached.count("handler") == 5
    # a payment provider's page posting the browser back to the app, on purpose
    back = site.post("/transfer-back", b"to=shop", {**CROSS[0], **FORM, **ADA})
    assert back.status == 200, back.body
    assert site.shop.reached[-2:] == ["authorize", "handler"]
    assert back.json == {"to": "shop", "order": {"by": "user:ada"}, "by": "user:ada"}


# -- hostile JSON ---------------------------------------------------------------------------------

HOSTILE = {
    "nested": b"[" * 100_000,
    "nested-data": b'{"x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    "nan": b'{"x": NaN}',
    "infinity": b'{"x": -Infinity}',
    "huge-float": b'{"x": 1e400}',
    "lone-surrogate": b'{"x": "\\ud800"}',
    "not-utf8": b'{"x": "\xff"}',
    "truncated": b'{"x": ',
}


def test_a_body_that_is_not_json_is_the_handlers_400_and_the_run_ends(site: Site) -> None:
    """``ctx.request.json()`` refuses hostile JSON as malformed (the handler answers its
    400); the body is stored as sent, and every request's run ends."""
    for name, raw in HOSTILE.items():
        reply = site.post("/parse", raw, JSON)
        assert reply.status == 400, (name, reply.body)
        assert reply.json["error"].startswith("the request body is not JSON"), name
        assert len(reply.json["error"]) < 300, name
    fine = site.post("/parse", {"x": [1, 2.5, "é"]})
    assert (fine.status, fine.json) == (200, {"parsed": {"x": [1, 2.5, "é"]}})
    runs = site.runs("parse")
    assert len(runs) == len(HOSTILE) + 1
    assert {run.status for run in runs} == {stepline.RunStatus.COMPLETED}
