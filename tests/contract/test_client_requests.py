"""The Python client's requests against the document: what it sends is what the engine reads.

``test_client_models.py`` holds what the client reads to the document; this holds what it
writes. A ``stepline.Client`` in production mode (its bearer key) drives a production
engine through every kind of call it makes (start with every option, list with every
filter, read a run's steps, tokens and attributes, cancel, replay, signal, pause, resume,
metrics, bulk actions, approvals, conversations); an ASGI recorder in front of the engine
notes each request. Every ``/v1`` request must be an operation of the document, with only
the query parameters it declares (each value valid under its schema) and a body valid
under its request schema; and the engine answered none of them with a 400 or a 5xx. A
client request the document does not describe (a renamed parameter, a new body field)
fails here.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest

import stepline
from stepline._protocol import signing
from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app
from stepline.engine._http.contract import document
from tests._support.server_thread import ServerThread
from tests.contract.fuzz_run import APP

pytestmark = [pytest.mark.timeout(120)]

SIGNING_KEY = "signkey-prod-" + "f00d" * 16
DOCUMENT = document.document()
SCHEMAS = DOCUMENT["components"]["schemas"]


class Recorder:
    """ASGI middleware noting each request (method, path, query, body) and its status."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = b""
        chunks: list[Any] = []
        while True:
            message = await receive()
            chunks.append(message)
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        entry = {
            "method": scope["method"],
            "path": scope["path"],
            "query": urllib.parse.parse_qsl(scope["query_string"].decode(), True),
            "body": body,
            "status": None,
        }
        self.seen.append(entry)

        async def replayed() -> Any:
            return chunks.pop(0) if chunks else await receive()

        async def noting(message: Any) -> None:
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
            await send(message)

        await self.app(scope, replayed, noting)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Recorder]]:
    settings = EngineSettings(
        mode="start",
        database_url=str(tmp_path_factory.mktemp("client") / "e.db"),
        signing_keys=(SIGNING_KEY,),
        event_keys=("client-event-key",),
        poll_interval=0.05,
    )
    recorder = Recorder(build_app(Engine(settings)))
    server = ServerThread("engine")
    server.start(recorder)
    try:
        auth = {"authorization": signing.bearer_token(SIGNING_KEY)}
        registered = httpx.post(f"{server.url}/fn/register", json=APP, headers=auth, timeout=10)
        assert registered.status_code == 200, registered.text
        yield server.url, recorder
    finally:
        server.stop()


def _operation(method: str, path: str) -> tuple[str, dict[str, Any]]:
    """The document's operation serving ``method path``, and its template."""
    for template, item in DOCUMENT["paths"].items():
        pattern = re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path) and method.lower() in item:
            return template, item[method.lower()]
    raise AssertionError(f"the client sent {method} {path}, which the document does not have")


def _valid(value: Any, schema: dict[str, Any]) -> None:
    whole = {**schema, "components": {"schemas": SCHEMAS}}
    jsonschema.validate(value, whole, cls=jsonschema.Draft202012Validator)


def _closed(schema: Any) -> Any:
    """``schema`` with every object that lists its properties closed to others: a field
    the client sends must be one the document names (answers stay open; requests too, for
    other clients, but the client's own fields are all described)."""
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: _closed(value) for key, value in schema.items()}
    if "properties" in schema and "additionalProperties" not in schema:
        closed["additionalProperties"] = False
    return closed


def _query_value(raw: str, schema: dict[str, Any]) -> Any:
    """A query string's value as the schema's type reads it (``limit=5`` is an integer)."""
    kind = schema.get("type")
    if kind == "integer" and re.fullmatch(r"-?\d+", raw):
        return int(raw)
    if kind == "number":
        try:
            return float(raw)
        except ValueError:
            return raw
    if kind == "boolean" and raw in ("true", "false"):
        return raw == "true"
    return raw


def _conforms(request: dict[str, Any]) -> str:
    """Checks one request against its operation; its ``METHOD template``."""
    template, op = _operation(request["method"], request["path"])
    label = f"{request['method']} {template}"
    declared = {p["name"]: p for p in op.get("parameters", []) if p["in"] == "query"}
    for name, raw in request["query"]:
        assert name in declared, f"{label}: query parameter {name!r} is not in the document"
        schema = declared[name]["schema"]
        if schema.get("type") == "array":
            schema = schema["items"]
        _valid(_query_value(raw, schema), schema)
    if request["body"].strip():
        assert "requestBody" in op, f"{label}: a body the document does not take"
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        _valid(json.loads(request["body"]), _closed(schema))
    elif op.get("requestBody", {}).get("required"):
        raise AssertionError(f"{label}: no body, and the document requires one")
    return label


async def _drive(client: stepline.Client) -> None:
    """Every kind of call the client makes to REST v1."""
    handle = await client.start(
        "fn",
        {"n": 1},
        idempotency_key="order-1",
        started_by="user-1",
        attributes={"plan": "pro", "seats": 3, "trial": False},
    )
    again = await client.start("fn", {"n": 1}, idempotency_key="order-1", started_by="user-1")
    assert again.run_id == handle.run_id
    await handle.describe()
    await handle.steps()
    await handle.tokens()
    await handle.set_attributes({"tier": "gold"})
    await client.list_runs(function="fn", status=["Queued", "Running"], limit=5)
    await client.list_runs(attributes={"plan": "pro"}, query='status != "Failed"')
    with pytest.raises(stepline.ManagementError):
        await handle.signal("approved", {"ok": True})  # nothing waits: the engine's 404
    await handle.cancel()
    replayed = await handle.replay()
    await replayed.describe()
    await client.rerun(handle.run_id)
    function = client.get_function("fn")
    await function.pause(reason="maintenance", crons="skip")
    await function.resume()
    await function.metrics()
    await function.metrics(window="1h")
    await function.tokens()
    bulk = await client.bulk_cancel(function="fn", status=["Queued"], idempotency_key="b1")
    await client.bulk_cancel(
        event="fuzz/x", if_exp='event.data.plan == "free"', attributes={"plan": "pro"}
    )
    await bulk.describe()
    await client.bulk_replay(function="fn", status=["Cancelled"], since=0)
    await client.approvals(function="fn", limit=5)
    await client.conversation_runs("conversation-1")
    with pytest.raises(stepline.ManagementError):
        await client.signal_key("nobody-waits", {"n": 1})
    await client.aclose()


def test_every_request_the_client_makes_is_one_the_document_describes(
    engine: tuple[str, Recorder],
) -> None:
    url, recorder = engine
    client = stepline.Client(
        app_id="fuzz",
        is_production=True,
        signing_key=SIGNING_KEY,
        api_base_url=url,
        event_api_base_url=url,
        environ={},
    )
    asyncio.run(_drive(client))
    sent = [r for r in recorder.seen if r["path"].startswith("/v1/")]
    checked = {_conforms(request) for request in sent}
    for request in sent:
        where = f"{request['method']} {request['path']}"
        assert request["status"] is not None, where
        assert request["status"] != 400, f"{where}: the engine refused the client's request"
        assert request["status"] < 500, where
    # the calls above reach these operations at least; a client call that stopped reaching
    # REST v1 (or one the document lost) shows here
    wanted = {
        "POST /v1/functions/{function_id}/runs",
        "GET /v1/runs/{run_id}",
        "GET /v1/runs",
        "GET /v1/runs/{run_id}/steps",
        "POST /v1/runs/{run_id}/cancel",
        "POST /v1/runs/{run_id}/replay",
        "POST /v1/runs/{run_id}/rerun",
        "POST /v1/functions/{function_id}/pause",
        "POST /v1/functions/{function_id}/resume",
        "GET /v1/functions/{function_id}/metrics",
        "POST /v1/bulk/cancel",
        "POST /v1/bulk/replay",
        "GET /v1/bulk/{bulk_id}",
        "GET /v1/approvals",
    }
    assert wanted <= checked, sorted(wanted - checked)


def test_a_request_the_document_does_not_take_fails_the_check() -> None:
    start = {"method": "POST", "path": "/v1/functions/app-fn/runs", "query": []}
    assert _conforms({**start, "body": b'{"data": {"n": 1}}'})
    with pytest.raises(jsonschema.ValidationError):
        _conforms({**start, "body": b'{"data": {"n": 1}, "idempotency_key": ""}'})
    with pytest.raises(jsonschema.ValidationError, match="'priority' was unexpected"):
        _conforms({**start, "body": b'{"data": {}, "priority": 1}'})
    with pytest.raises(AssertionError, match="'page' is not in the document"):
        _conforms({"method": "GET", "path": "/v1/runs", "query": [("page", "2")], "body": b""})
    with pytest.raises(AssertionError, match="does not have"):
        _conforms({"method": "GET", "path": "/v1/nothing", "query": [], "body": b""})
