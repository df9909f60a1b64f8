"""Golden tests: every inngest-py exchange in ``captures/py`` replayed against stepline.

The stepline twin of the captured app (``golden_holdout``) must answer each captured
request with the same status, the headers that matter, the same op codes, ids and data.
Timings, versions and tracebacks' text are ignored.
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
from typing import Any

import flask
import pytest

import stepline
import stepline.flask
from tests._support.captures import CAPTURES, load_capture
from tests._support.stub_server import StubServer
from tests.apps import golden_holdout

EXCHANGES = sorted(
    p.name
    for p in (CAPTURES / "py").glob("*.json")
    if re.match(r"^\d\d[a-z]?_(exec|probe|inspect)", p.name)
)
SYNC_EXCHANGES = ["02_sync_put.json", "02b_sync_put_deployid.json"]
# Response headers whose values must match the capture exactly.
EXACT_HEADERS = (
    "content-type",
    "x-inngest-req-version",
    "x-inngest-framework",
    "x-inngest-expected-server-kind",
    "x-inngest-no-retry",
    "x-inngest-sync-kind",
    "x-inngest-sdk-handled",
)
SDK_HEADER = re.compile(r"^[a-z0-9-]+:v\d+\.\d+\.\d+$")


def make_app(**client_settings: Any) -> flask.Flask:
    app = flask.Flask("holdout")
    client = golden_holdout.make_client(**client_settings)
    stepline.flask.serve(app, client, golden_holdout.make_functions(client))
    return app


def replay(app: flask.Flask, request: dict[str, Any]) -> Any:
    url = urllib.parse.urlsplit(request["url"])
    body = request["body"]
    return app.test_client().open(
        url.path + ("?" + url.query if url.query else ""),
        method=request["method"],
        headers={
            k: v for k, v in request["headers"].items() if k not in ("host", "content-length")
        },
        json=body if body is not None else None,
    )


def check_headers(actual: Any, expected: dict[str, str]) -> None:
    for name in EXACT_HEADERS:
        assert actual.headers.get(name) == expected.get(name), name
    assert SDK_HEADER.match(actual.headers["x-inngest-sdk"])
    assert actual.headers["user-agent"] == actual.headers["x-inngest-sdk"]


def normalise_op(op: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in op.items() if k not in ("timing",)}
    if op["op"] == "Sleep":
        out["name"] = "<time>"
    if isinstance(op.get("error"), dict):
        out["error"] = {**op["error"], "stack": type(op["error"].get("stack")).__name__}
    return out


def normalise_body(body: Any, status: int) -> Any:
    if status == 206:
        return [normalise_op(op) for op in body]
    if isinstance(body, dict) and "stack" in body:
        return {**body, "stack": type(body["stack"]).__name__}
    return body


@pytest.mark.parametrize("name", EXCHANGES)
def test_exchange_matches_capture(name: str) -> None:
    capture = load_capture("py", name)
    expected = capture["response"]
    response = replay(make_app(), capture["request"])
    assert response.status_code == expected["status"]
    check_headers(response, expected["headers"])
    status = expected["status"]
    assert normalise_body(response.get_json(), status) == normalise_body(expected["body"], status)


def test_sleep_wakes_at_now_plus_duration() -> None:
    capture = load_capture("py", "21_exec_ops_call1.json")
    before = dt.datetime.now(dt.timezone.utc)
    response = replay(make_app(), capture["request"])
    [op] = response.get_json()
    wake = dt.datetime.fromisoformat(op["name"].replace("Z", "+00:00"))
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", op["name"])
    assert dt.timedelta(seconds=4) <= wake - before <= dt.timedelta(seconds=6)


def normalise_register(body: dict[str, Any], origin: str) -> dict[str, Any]:
    """Registration bodies differ only in spelling and origin between the two SDKs."""
    out = dict(body)
    out["appName"] = out.pop("appname", out.get("appName"))
    out["deployType"] = out.pop("deploy_type", out.get("deployType"))
    out.pop("sdk")
    text = stepline._serde.dumps(out)
    return dict(stepline._serde.json.loads(text.replace(origin, "<origin>")))


@pytest.mark.slow
@pytest.mark.parametrize("name", SYNC_EXCHANGES)
def test_sync_matches_capture(name: str, stub_server: StubServer) -> None:
    capture = load_capture("py", name)
    [outgoing] = capture["outgoing_requests_made_by_sdk"]
    stub_server.answer = lambda _req: (200, {"ok": True, "modified": True})
    app = make_app(api_base_url=stub_server.url)
    response = replay(app, capture["request"])

    assert response.status_code == capture["response"]["status"]
    check_headers(response, capture["response"]["headers"])
    assert response.get_json() == capture["response"]["body"]
    [sent] = stub_server.requests
    assert sent["path"] == outgoing["path"]
    captured_origin = urllib.parse.urlsplit(capture["request"]["url"])
    expected = normalise_register(outgoing["body"], f"http://{captured_origin.netloc}")
    assert normalise_register(sent["body"], "http://localhost") == expected
    assert sent["body"]["sdk"] == f"py:v{stepline.__version__}"
    for header in (
        "content-type",
        "x-inngest-framework",
        "x-inngest-req-version",
        "x-inngest-expected-server-kind",
    ):
        assert sent["headers"][header] == outgoing["headers"][header]


@pytest.mark.slow
def test_send_event_matches_capture(stub_server: StubServer) -> None:
    capture = load_capture("py", "03_send_event.json")
    [recorded] = capture["requests"]
    stub_server.answer = lambda _req: (200, recorded["stub_response"])
    client = golden_holdout.make_client(event_api_base_url=stub_server.url)
    ids = client.send_sync(stepline.Event(name="demo/three", data={"n": 41}))
    assert ids == capture["returned_ids"]
    [sent] = stub_server.requests
    assert sent["path"] == recorded["path"]
    assert [{k: v for k, v in e.items() if k != "ts"} for e in sent["body"]] == [
        {k: v for k, v in e.items() if k != "ts"} for e in recorded["body"]
    ]
    assert abs(sent["body"][0]["ts"] - int(dt.datetime.now().timestamp() * 1000)) < 60_000
    seed_ms, seed = sent["headers"]["x-inngest-event-id-seed"].split(",")
    assert int(seed_ms) == sent["body"][0]["ts"]
    assert len(__import__("base64").b64decode(seed)) == 10
