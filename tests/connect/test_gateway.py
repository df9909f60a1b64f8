"""The gateway's socket against a hand-written client: what it refuses, and how.

A malformed frame, a text frame, forged or foreign tokens, a sync that fails and a
silent worker each close that one socket with a code and a reason; the engine keeps
serving the official worker connected beside them (``stack``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
import websockets.exceptions
from starlette.testclient import TestClient
from websockets.sync.client import ClientConnection, connect

from stepline._connect import kinds, proto
from stepline.engine import Engine, EngineSettings
from stepline.engine._connect import routes
from stepline.engine._http.api import build_app
from tests._support.polling import wait_until

from .harness import Node, Workers

pytestmark = [pytest.mark.process, pytest.mark.timeout(60)]
PROTOCOL = websockets.Subprotocol("v0.connect.inngest.com")
FUNCTIONS = [
    {
        "id": "raw-app-fn",
        "name": "fn",
        "triggers": [{"event": "raw/x"}],
        "steps": {
            "step": {"id": "step", "name": "step", "runtime": {"type": "http", "url": "wss://x"}}
        },
    }
]


def _start(engine: Node) -> dict[str, Any]:
    answer = httpx.post(
        f"{engine.url}/v0/connect/start",
        content=proto.encode("StartRequest", {"exclude_gateways": ["g1"]}),
        headers={"content-type": "application/protobuf"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/protobuf"
    return proto.decode("StartResponse", answer.content)


@dataclasses.dataclass
class Raw:
    """A hand-driven socket and the start answer it was opened with."""

    ws: ClientConnection
    start: dict[str, Any]

    def recv(self) -> tuple[int, dict[str, Any] | bytes]:
        message = self.ws.recv(timeout=10)
        assert isinstance(message, bytes)
        envelope = proto.decode("ConnectMessage", message)
        return envelope.get("kind", 0), envelope.get("payload", b"")

    def send(self, kind: int, message: str | None = None, **fields: Any) -> None:
        payload = proto.encode(message, fields) if message else b""
        self.ws.send(kinds.frame(kind, payload))

    def connect(self, **override: Any) -> None:
        """Send WORKER_CONNECT with the start's tokens (or ``override``'s fields)."""
        fields: dict[str, Any] = {
            "connection_id": self.start["connection_id"],
            "instance_id": "raw",
            "auth_data": {
                "session_token": self.start["session_token"],
                "sync_token": self.start["sync_token"],
            },
            "apps": [{"app_name": "raw-app", "functions": json.dumps(FUNCTIONS).encode()}],
            "sdk_language": "py",
            "sdk_version": "0.0.1",
            "framework": "connect",
        }
        fields.update(override)
        self.send(kinds.WORKER_CONNECT, "WorkerConnectRequestData", **fields)

    def closed(self) -> tuple[int, str]:
        """The close frame's code and reason (after draining what came before it)."""

        def drain() -> None:
            while True:
                self.ws.recv(timeout=10)

        with pytest.raises(websockets.exceptions.ConnectionClosed) as caught:
            drain()
        received = caught.value.rcvd
        assert received is not None, "the engine closed the socket without a close frame"
        return received.code, received.reason


@pytest.fixture
def raw(stack: tuple[Node, Workers]) -> Iterator[Raw]:
    engine, _ = stack
    start = _start(engine)
    with connect(start["gateway_endpoint"], subprotocols=[PROTOCOL]) as ws:
        client = Raw(ws, start)
        assert client.recv() == (kinds.GATEWAY_HELLO, b"")
        yield client
    # whatever that socket did, the engine serves the official worker beside it
    assert engine.run("steps", {"n": 7})["output"] == 70


def test_the_start_answer_points_at_this_engine(stack: tuple[Node, Workers]) -> None:
    engine, _ = stack
    start = _start(engine)
    assert start["gateway_endpoint"] == f"ws://127.0.0.1:{engine.server.port}/v0/connect/gateway"
    assert start["session_token"].startswith(f"session.{start['connection_id']}.")
    assert start["sync_token"].startswith(f"sync.{start['connection_id']}.")
    protobuf = {"content-type": "application/protobuf"}
    bad = httpx.post(f"{engine.url}/v0/connect/start", content=b"\x0a\x09ab", headers=protobuf)
    assert bad.status_code == 400
    assert bad.json()["error"].startswith("body is not a protobuf StartRequest: ")
    page = httpx.post(
        f"{engine.url}/v0/connect/start", content=b"", headers={"content-type": "text/plain"}
    )
    assert page.status_code == 415, "dev mode: a page's simple request is refused"


def test_a_socket_without_the_subprotocol_or_from_a_web_page_is_refused(
    stack: tuple[Node, Workers],
) -> None:
    engine, _ = stack
    endpoint = _start(engine)["gateway_endpoint"]
    with pytest.raises(websockets.exceptions.InvalidStatus) as plain:
        connect(endpoint)
    assert plain.value.response.status_code == 403
    with pytest.raises(websockets.exceptions.InvalidStatus) as page:  # dev mode: no CSWSH
        connect(endpoint, subprotocols=[PROTOCOL], origin=websockets.Origin("http://evil.example"))
    assert page.value.response.status_code == 403


def test_bytes_that_are_not_protobuf_close_the_socket_with_the_reason(raw: Raw) -> None:
    raw.ws.send(b"\xff\xff\xff")
    code, reason = raw.closed()
    assert code == 1007
    assert reason.startswith("malformed ConnectMessage: ")


def test_a_text_frame_closes_the_socket(raw: Raw) -> None:
    raw.ws.send("hello")
    assert raw.closed() == (1003, "want binary frames (protobuf ConnectMessage), got text")


def test_forged_and_foreign_tokens_are_refused(stack: tuple[Node, Workers], raw: Raw) -> None:
    engine, _ = stack
    other = _start(engine)  # genuine tokens, issued for another connection id
    raw.connect(
        auth_data={"session_token": other["session_token"], "sync_token": other["sync_token"]}
    )
    assert raw.closed() == (1008, "session token refused: token issued for another connection")
    assert "raw-app" not in {a["app_id"] for a in engine.get("/v1/apps")["data"]}


def test_tokens_open_one_socket_only(stack: tuple[Node, Workers], raw: Raw) -> None:
    raw.connect()
    assert raw.recv()[0] == kinds.GATEWAY_CONNECTION_READY
    with connect(raw.start["gateway_endpoint"], subprotocols=[PROTOCOL]) as ws:
        again = Raw(ws, raw.start)
        assert again.recv() == (kinds.GATEWAY_HELLO, b"")
        again.connect()  # the same tokens, while the first socket is open
        assert again.closed() == (1008, "these tokens were used already: call /v0/connect/start")


def test_a_forged_token_is_refused(raw: Raw) -> None:
    forged = raw.start["session_token"].rsplit(".", 1)[0] + "." + "0" * 64
    raw.connect(auth_data={"session_token": forged, "sync_token": raw.start["sync_token"]})
    assert raw.closed() == (1008, "session token refused: token not signed by this engine")


def test_a_sync_that_fails_says_so_and_closes(raw: Raw) -> None:
    raw.connect(apps=[{"app_name": "raw-app", "functions": b"{not json"}])
    kind, payload = raw.recv()
    assert kind == kinds.SYNC_FAILED
    assert isinstance(payload, bytes)
    assert proto.decode("SystemError", payload)["code"] == "sync_failed"
    assert raw.closed() == (1008, "could not register app 'raw-app'")


def test_a_malformed_message_after_the_handshake_closes_the_socket(raw: Raw) -> None:
    raw.connect()
    kind, payload = raw.recv()
    assert kind == kinds.GATEWAY_CONNECTION_READY
    assert isinstance(payload, bytes)
    ready = proto.decode("GatewayConnectionReadyData", payload)
    assert ready["heartbeat_interval"] == "10s"
    raw.send(kinds.WORKER_HEARTBEAT)
    assert raw.recv() == (kinds.GATEWAY_HEARTBEAT, b"")
    raw.ws.send(kinds.frame(kinds.WORKER_REPLY, b"\x0a\x50short"))  # a length past the end
    code, reason = raw.closed()
    assert (code, reason.split(":")[0]) == (1007, "malformed SDKResponse")


def test_a_worker_that_misses_its_heartbeats_is_dropped(
    stack: tuple[Node, Workers], raw: Raw
) -> None:
    engine, _ = stack
    hub = engine.engine.connect
    before = hub.timing
    hub.timing = dataclasses.replace(before, heartbeat=0.3, misses=2)
    try:
        raw.connect()
        assert raw.recv()[0] == kinds.GATEWAY_CONNECTION_READY
        assert any(c.instance_id == "raw" for c in hub.workers("raw-app"))
        started = time.monotonic()
        code, reason = raw.closed()  # silent from now on
        assert time.monotonic() - started < 3
        assert (code, reason) == (1008, "no message in 0.6s (missed heartbeats)")
        wait_until(lambda: not hub.workers("raw-app"), message="the silent worker to be dropped")
    finally:
        hub.timing = before


def test_without_a_websocket_package_start_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(routes, "_websockets_installed", lambda: False)
    app = build_app(Engine(EngineSettings(database_url=str(tmp_path / "e.db"))))
    with TestClient(app, base_url="http://127.0.0.1") as http:
        answer = http.post("/v0/connect/start", headers={"content-type": "application/protobuf"})
    assert answer.status_code == 501
    assert answer.json()["error"] == (
        "Connect needs a WebSocket server for uvicorn (the websockets package): "
        "pip install 'stepline[connect]'"
    )


def test_a_reply_flushed_over_http_answers_the_call(stack: tuple[Node, Workers], raw: Raw) -> None:
    engine, _ = stack
    raw.connect()
    assert raw.recv()[0] == kinds.GATEWAY_CONNECTION_READY
    sent = engine.http.post("/e/k", json={"name": "raw/x", "data": {}})
    [event_id] = sent.json()["ids"]
    kind, payload = raw.recv()
    assert kind == kinds.GATEWAY_EXECUTOR_REQUEST
    assert isinstance(payload, bytes)
    call = proto.decode("GatewayExecutorRequestData", payload)
    assert (call["app_name"], call["function_slug"]) == ("raw-app", "raw-app-fn")
    assert json.loads(call["request_payload"])["event"]["name"] == "raw/x"
    raw.send(kinds.WORKER_REQUEST_ACK, "WorkerRequestAckData", request_id=call["request_id"])
    reply = {
        "request_id": call["request_id"],
        "status": 1,
        "body": b'"flushed"',
        "sdk_version": "raw",
    }
    protobuf = {"content-type": "application/protobuf"}
    url = f"{engine.url}/v0/connect/flush"
    flushed = httpx.post(url, content=proto.encode("SDKResponse", reply), headers=protobuf)
    assert flushed.status_code == 200
    assert proto.decode("FlushResponse", flushed.content) == {"request_id": call["request_id"]}
    run = engine.finished(engine.run_of(event_id))
    assert (run["status"], run["output"]) == ("Completed", "flushed")
    again = httpx.post(url, content=proto.encode("SDKResponse", reply), headers=protobuf)
    assert again.status_code == 404, "answered once"
    assert again.json()["error"] == "no call waits for this reply (answered, timed out or unknown)"


def test_a_socket_that_never_sends_worker_connect_is_closed(stack: tuple[Node, Workers]) -> None:
    engine, _ = stack
    hub = engine.engine.connect
    before = hub.timing
    hub.timing = dataclasses.replace(before, handshake=0.3)
    try:
        start = _start(engine)
        with connect(start["gateway_endpoint"], subprotocols=[PROTOCOL]) as ws:
            client = Raw(ws, start)
            assert client.recv() == (kinds.GATEWAY_HELLO, b"")
            assert client.closed() == (1008, "no message in 0.3s (WORKER_CONNECT)")
    finally:
        hub.timing = before
