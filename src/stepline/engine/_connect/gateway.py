"""One worker's WebSocket: handshake, registration, then its messages until it goes.

The exchange follows the official Connect worker (inngest-py's ``connect``):

1. the engine sends ``GATEWAY_HELLO``; the worker answers ``WORKER_CONNECT`` with its
   connection id, the tokens ``/v0/connect/start`` gave it, and its apps' functions;
2. the tokens are checked, each app is registered as an HTTP sync would register it
   (``GatewayHost.register``), at ``connect://<app id>`` so that its calls come here, and the
   engine sends ``GATEWAY_CONNECTION_READY`` with the heartbeat and lease-extension
   intervals; the worker is ready then (or at ``WORKER_READY`` when it asked to say so);
3. then: ``WORKER_HEARTBEAT`` (answered ``GATEWAY_HEARTBEAT``), acks, lease extensions
   (answered with a new lease id, or none when the call is gone), replies (answered
   ``WORKER_REPLY_ACK``) and ``WORKER_PAUSE`` (drain: no new calls; those in flight finish).

Until its tokens are checked a socket is one of a bounded few, its messages small and its
handshake timed (``limits``). A worker silent for ``Timing.misses`` heartbeats is
dropped; a malformed frame closes the socket with a reason (1003 for a text frame, 1007
for bytes that are not the protocol), and the engine goes on serving everyone else.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import starlette.websockets

from stepline import _json
from stepline._connect import kinds, proto
from stepline.engine._connect import limits
from stepline.engine._connect.hub import Conn, Hub, app_url
from stepline.engine._flow.rules import RegistrationError
from stepline.engine._http import throttle

__all__ = ["PROTOCOL", "GatewayHost", "serve"]

logger = logging.getLogger("stepline.engine.connect")

#: The WebSocket subprotocol the official worker asks for.
PROTOCOL = "v0.connect.inngest.com"
#: Close codes: protocol error, unsupported data, invalid payload, policy, internal error.
_PROTOCOL, _UNSUPPORTED, _INVALID, _POLICY, _INTERNAL = 1002, 1003, 1007, 1008, 1011
#: Close code: try again later (too many sockets being set up).
_TRY_AGAIN = 1013
#: What uvicorn closes a socket with when the server shuts down (Service Restart).
_RESTART = 1012

WebSocket = starlette.websockets.WebSocket


class GatewayHost(Protocol):
    """What the gateway needs of the engine: registration, as ``POST /fn/register``, and
    (several nodes on Postgres) the store the nodes share."""

    store: Any

    async def register(
        self, body: object, *, deploy_url: str | None = None, deploy_id: str | None = None
    ) -> dict[str, Any]:
        """Register an app (a sync)."""
        ...


class Closed(Exception):
    """End the session: close the socket with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


async def serve(
    ws: WebSocket, hub: Hub, host: GatewayHost, vouch: Callable[[str, float], str]
) -> None:
    """Run one worker's session until it closes (or is closed)."""
    if PROTOCOL not in ws.scope.get("subprotocols", []):
        await ws.close(_PROTOCOL, f"want the WebSocket subprotocol {PROTOCOL}")
        return
    client = throttle.client_key(ws.client.host if ws.client else None)
    if not hub.handshakes.take(client):  # refused before accepting: nothing read
        logger.debug("refused a Connect socket from %s: too many being set up", client)
        await ws.close(_TRY_AGAIN, "too many sockets being set up: try again")
        return
    handshaking = True

    def authenticated() -> None:
        """The tokens checked out: the socket leaves the handshakes, its limit lifted."""
        nonlocal handshaking
        if handshaking:
            handshaking = False
            hub.handshakes.give(client)
            limits.lift(ws.scope)

    try:
        await _session(ws, hub, host, vouch, authenticated)
    finally:
        if handshaking:
            handshaking = False
            hub.handshakes.give(client)


async def _session(
    ws: WebSocket,
    hub: Hub,
    host: GatewayHost,
    vouch: Callable[[str, float], str],
    authenticated: Callable[[], None],
) -> None:
    await ws.accept(subprotocol=PROTOCOL)
    lock = asyncio.Lock()

    async def send(frame: bytes) -> None:
        async with lock:  # the engine's calls and this loop's answers share the socket
            await ws.send_bytes(frame)

    conn: Conn | None = None
    why, stopping = "closed its connection", False
    try:
        await send(kinds.frame(kinds.GATEWAY_HELLO))
        kind, payload = await _receive(ws, hub.timing.handshake, "WORKER_CONNECT")
        if kind != kinds.WORKER_CONNECT:
            raise Closed(
                _PROTOCOL, f"want WORKER_CONNECT after GATEWAY_HELLO, got {kinds.name(kind)}"
            )
        conn = await _connect(
            proto_decode("WorkerConnectRequestData", payload),
            hub,
            host,
            vouch,
            send,
            authenticated=authenticated,
        )
        timing = hub.timing
        ready = {
            "heartbeat_interval": f"{timing.heartbeat:g}s",
            "extend_lease_interval": f"{timing.extend}s",
        }
        await send(
            kinds.frame(
                kinds.GATEWAY_CONNECTION_READY, proto.encode("GatewayConnectionReadyData", ready)
            )
        )
        hub.add(conn)
        logger.info(
            "Connect worker %s (%s) serves %s", conn.conn_id, conn.instance_id, sorted(conn.apps)
        )
        while True:
            kind, payload = await _receive(ws, timing.heartbeat * timing.misses)
            conn.last_seen = time.time()
            await _handle(kind, payload, conn, hub, send)
    except Closed as exc:
        why = exc.reason
        logger.warning("closing Connect worker socket: %s", exc.reason)
        await _close(ws, exc.code, exc.reason)
    except _Gone as exc:
        why, stopping = str(exc), exc.stopping
    except starlette.websockets.WebSocketDisconnect as exc:  # gone while we were sending
        why, stopping = f"closed its connection (code {exc.code})", exc.code == _RESTART
    except Exception:  # a fault of ours: this socket closes, the engine serves on
        why = "an error in the engine's gateway"
        logger.exception("the Connect gateway failed on a worker's socket")
        await _close(ws, _INTERNAL, "internal error")
    finally:
        if conn is not None:
            hub.drop(conn, why, stopping=stopping)
            logger.info("Connect worker %s left: %s", conn.conn_id, why)


class _Gone(Exception):
    """The socket closed: the worker closed it, or (``stopping``) the engine's server."""

    def __init__(self, why: str, *, stopping: bool = False) -> None:
        super().__init__(why)
        self.stopping = stopping


async def _receive(
    ws: WebSocket, timeout: float, awaited: str = "missed heartbeats"
) -> tuple[int, bytes]:
    try:
        message = await asyncio.wait_for(ws.receive(), timeout)
    except asyncio.TimeoutError:
        raise Closed(_POLICY, f"no message in {timeout:g}s ({awaited})") from None
    if message["type"] == "websocket.disconnect":
        code = message.get("code")
        if code == _RESTART:  # uvicorn closes every socket so when it shuts down
            raise _Gone("the engine's server is stopping", stopping=True)
        raise _Gone(f"closed its connection (code {code})")
    data = message.get("bytes")
    if data is None:
        raise Closed(_UNSUPPORTED, "want binary frames (protobuf ConnectMessage), got text")
    envelope = proto_decode("ConnectMessage", data)
    return int(envelope.get("kind", 0)), envelope.get("payload", b"")


def proto_decode(message: str, data: bytes) -> dict[str, Any]:
    """``proto.decode``, a failure closing the socket with the reason (1007)."""
    try:
        return proto.decode(message, data)
    except proto.ProtoError as exc:
        raise Closed(_INVALID, f"malformed {message}: {exc}"[:120]) from None


async def _connect(
    data: Mapping[str, Any],
    hub: Hub,
    host: GatewayHost,
    vouch: Callable[[str, float], str],
    send: Callable[[bytes], Awaitable[None]],
    *,
    authenticated: Callable[[], None],
) -> Conn:
    """Check WORKER_CONNECT's tokens (``authenticated`` once they pass), register its apps;
    the worker's ``Conn``."""
    conn_id = str(data.get("connection_id", ""))
    auth = data.get("auth_data") or {}
    now = time.time()
    for kind in ("session", "sync"):
        problem = hub.tokens.check(str(auth.get(f"{kind}_token", "")), kind, conn_id, now=now)
        if problem is not None:
            raise Closed(_POLICY, f"{kind} token refused: {problem}")
    if not hub.claim(conn_id):
        raise Closed(_POLICY, "these tokens were used already: call /v0/connect/start")
    authenticated()
    apps = data.get("apps") or []
    if not apps:
        raise Closed(_PROTOCOL, "WORKER_CONNECT names no app")
    sdk = f"{data.get('sdk_language') or 'unknown'}:v{data.get('sdk_version') or '0'}"
    for app in apps:
        framework = str(data.get("framework") or "connect")
        await _register(app, sdk=sdk, framework=framework, host=host, vouch=vouch, send=send)
    limit = data.get("max_worker_concurrency")
    return Conn(
        conn_id=conn_id,
        instance_id=str(data.get("instance_id") or conn_id)[:200],
        apps=frozenset(str(app.get("app_name", "")) for app in apps),
        send=send,
        sdk=sdk,
        functions={str(a.get("app_name", "")): _function_ids(a) for a in apps},
        versions={str(a.get("app_name", "")): a.get("app_version") or None for a in apps},
        framework=str(data.get("framework") or "")[:100],
        max_inflight=limit if isinstance(limit, int) and limit > 0 else None,
        ready=not data.get("worker_manual_readiness_ack", False),
    )


async def _register(
    app: Mapping[str, Any],
    *,
    sdk: str,
    framework: str,
    host: GatewayHost,
    vouch: Callable[[str, float], str],
    send: Callable[[bytes], Awaitable[None]],
) -> None:
    app_id = str(app.get("app_name", ""))
    url = app_url(app_id)
    try:
        functions = _json.loads(app.get("functions") or b"[]")
        if not isinstance(functions, list):
            raise RegistrationError("functions must be an array")
        body = {
            "url": url,
            "appName": app_id,
            "appVersion": app.get("app_version") or None,
            "framework": framework,
            "sdk": sdk,
            "deployType": "ping",
            "v": "0.1",
            "functions": [_served_here(fn, url) for fn in functions],
        }
        # the worker proved the key (its tokens): a move to connect:// needs no probe
        await host.register(body, deploy_id=vouch(url, time.time()))
    except (RegistrationError, ValueError) as exc:
        error = {"code": "sync_failed", "message": f"app {app_id!r}: {exc}"[:1000]}
        await send(kinds.frame(kinds.SYNC_FAILED, proto.encode("SystemError", error)))
        raise Closed(_POLICY, f"could not register app {app_id!r}"[:120]) from None


def _function_ids(app: Mapping[str, Any]) -> tuple[str, ...]:
    """The ids of the functions an app's ``AppConfiguration`` declares (registered already)."""
    try:
        functions = _json.loads(app.get("functions") or b"[]")
    except ValueError:
        return ()
    if not isinstance(functions, list):
        return ()
    return tuple(str(f["id"]) for f in functions if isinstance(f, dict) and f.get("id"))


def _served_here(function: Any, url: str) -> Any:
    """A function's config with every step's URL at ``url`` (its calls come here)."""
    if not isinstance(function, dict) or not isinstance(function.get("steps"), dict):
        return function
    steps = {
        name: {**step, "runtime": {"type": "http", "url": url}} if isinstance(step, dict) else step
        for name, step in function["steps"].items()
    }
    return {**function, "steps": steps}


async def _handle(
    kind: int, payload: bytes, conn: Conn, hub: Hub, send: Callable[[bytes], Awaitable[None]]
) -> None:
    if kind == kinds.WORKER_HEARTBEAT:
        await send(kinds.frame(kinds.GATEWAY_HEARTBEAT))
    elif kind == kinds.WORKER_REQUEST_ACK:
        hub.acked(conn, str(proto_decode("WorkerRequestAckData", payload).get("request_id", "")))
    elif kind == kinds.WORKER_REQUEST_EXTEND_LEASE:
        data = proto_decode("WorkerRequestExtendLeaseData", payload)
        request_id = str(data.get("request_id", ""))
        new = hub.extend(conn, request_id, str(data.get("lease_id", "")))
        extended = proto.encode(
            "WorkerRequestExtendLeaseAckData",
            {
                "request_id": request_id,
                "app_id": data.get("app_id"),
                "function_slug": data.get("function_slug"),
                "new_lease_id": new,  # none: the call is gone, and the worker stops it
            },
        )
        await send(kinds.frame(kinds.WORKER_REQUEST_EXTEND_LEASE_ACK, extended))
    elif kind == kinds.WORKER_REPLY:
        answer = proto_decode("SDKResponse", payload)
        hub.reply(conn, answer)
        replied = proto.encode("WorkerReplyAckData", {"request_id": answer.get("request_id", "")})
        await send(kinds.frame(kinds.WORKER_REPLY_ACK, replied))
    elif kind == kinds.WORKER_READY:
        conn.ready = True
        hub.changed()
    elif kind == kinds.WORKER_PAUSE:
        conn.draining = True
        hub.changed()  # other nodes stop forwarding to it
        logger.info("Connect worker %s drains: no new calls", conn.conn_id)
    else:
        raise Closed(_PROTOCOL, f"unexpected {kinds.name(kind)} from a worker")


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    try:
        await ws.close(code, reason[:120])
    except Exception:  # the worker went meanwhile
        logger.debug("the socket was gone before it could be closed")
