"""The Connect routes: ``POST /v0/connect/start``, ``/v0/connect/flush`` and the socket.

``start`` is authorized as the SDK-facing routes are (``Authorization: Bearer`` with the
signing key's hash in ``start`` mode; open in ``dev``) and answers a protobuf
``StartResponse``: a new connection id, the gateway's ``ws://`` (``wss://`` behind TLS)
URL on this very engine, and a session and a sync token bound to that id. The URL's host
is the request's ``Host``, checked to be a bare host name or address with an optional
port (nothing a URL could be bent with); the worker that asked for it sent that ``Host``
itself, and in dev mode the guard answers only loopback names. ``flush`` takes a reply
the worker could not get acknowledged over its socket (``SDKResponse``). ``GET
/v1/connect/workers`` and ``GET /v1/apps/{app_id}/workers`` list the connected workers
(``listing``).
"""

from __future__ import annotations

import importlib.util
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable

import starlette.requests
import starlette.responses
import starlette.routing
import starlette.websockets

from stepline import _json
from stepline._connect import proto
from stepline._protocol import headers as wire_headers
from stepline.engine._config import EngineSettings
from stepline.engine._connect import cluster, gateway, listing
from stepline.engine._connect.hub import Hub, app_url
from stepline.engine._http import guard, wire
from stepline.engine._http.wire import ApiError
from stepline.engine._ids import ulid

__all__ = [
    "GATEWAY_PATH",
    "gateway_host",
    "proto_body",
    "table",
    "websocket_routes",
    "websocket_server_missing",
]

GATEWAY_PATH = "/v0/connect/gateway"
#: where Inngest's dev server serves its gateway (on its own port): an alias of ours
INNGEST_GATEWAY_PATH = "/v0/connect"
PROTOBUF = "application/protobuf"
#: The most a start or flush body may hold (a reply's body is capped as answers are).
_START_BYTES = 64 * 1024
_HOST = re.compile(
    r"(?:[A-Za-z0-9][A-Za-z0-9.-]{0,252}|\[[0-9A-Fa-f:.]{2,45}\])(?::(?P<port>[0-9]{1,5}))?"
)

Request = starlette.requests.Request
Response = starlette.responses.Response
Handler = Callable[[Request], Awaitable[Response]]
SocketHandler = Callable[[starlette.websockets.WebSocket], Awaitable[None]]


def table(hub: Hub, settings: EngineSettings) -> list[tuple[str, str, Handler]]:
    """The HTTP routes, as ``api._Api.routes`` lists them (method, path, handler)."""

    async def start(request: Request) -> Response:
        missing = websocket_server_missing()
        if missing is not None:
            raise ApiError(501, missing)
        limit = min(_START_BYTES, settings.max_body_bytes)
        proto_body("StartRequest", await _read(request, limit))
        host = gateway_host(request.headers.get("host", ""))
        if host is None:
            raise ApiError(400, "the request's Host header is not a host name (and port)")
        scheme = "wss" if request.url.scheme == "https" else "ws"
        now = time.time()
        conn_id = ulid(int(now * 1000))
        answer = {
            "connection_id": conn_id,
            "gateway_endpoint": f"{scheme}://{host}{GATEWAY_PATH}",
            "gateway_group": "stepline",
            "session_token": hub.tokens.issue("session", conn_id, now=now),
            "sync_token": hub.tokens.issue("sync", conn_id, now=now),
        }
        return Response(proto.encode("StartResponse", answer), media_type=PROTOBUF)

    async def flush(request: Request) -> Response:
        answer = proto_body("SDKResponse", await _read(request, settings.max_body_bytes))
        if not hub.reply(None, answer):
            raise ApiError(404, "no call waits for this reply (answered, timed out or unknown)")
        ack = proto.encode("FlushResponse", {"request_id": answer.get("request_id", "")})
        return Response(ack, media_type=PROTOBUF)

    async def workers(request: Request) -> Response:
        conns = sorted(hub.workers(), key=lambda c: (c.connected_at, c.conn_id))
        if "env_id" in request.path_params:  # Inngest's dev server's listing, its shape
            mine = [listing.dev_server_conn(c, hub.node) for c in conns]
            merged = listing.in_connection_order(await _with_other_nodes(request, mine))
            return wire.json_response({"data": merged})
        found = [listing.worker(c, hub.node) for c in conns]
        return wire.json_response({"data": await _with_other_nodes(request, found)})

    async def app_workers(request: Request) -> Response:
        app_id = request.path_params["app_id"]
        conns = sorted(hub.workers(app_id), key=lambda c: (c.connected_at, c.conn_id))
        found = [listing.worker(c, hub.node, app_id) for c in conns]
        return wire.json_response({"data": await _with_other_nodes(request, found)})

    async def _with_other_nodes(
        request: Request, found: list[dict[str, object]]
    ) -> list[dict[str, object]]:
        """``found``, and (several nodes, unless ``?local=1``) the other nodes' workers."""
        if hub.cluster is None or request.query_params.get("local") == "1":
            return found
        return [*found, *await hub.cluster.listed(request.url.path)]

    async def forward(request: Request) -> Response:
        """A call another node leased for an app whose worker is connected here."""
        body = await _read(request, settings.max_body_bytes)
        query = request.query_params
        app_id, function_id = query.get("app", ""), query.get("fnId", "")
        if not app_id or not function_id:
            raise ApiError(400, "the query must name the app and the function (app, fnId)")
        if not any(c.ready and not c.draining for c in hub.workers(app_id)):
            return _marked(503, "no-worker", f"no ready worker of app {app_id!r} on this node")
        call = {"fnId": function_id, **({"stepId": query["stepId"]} if "stepId" in query else {})}
        url = f"{app_url(app_id)}?{urllib.parse.urlencode(call)}"
        signature = request.headers.get(wire_headers.SIGNATURE)
        sent = {wire_headers.SIGNATURE: signature} if signature else {}
        timeout = _timeout(request.headers.get(cluster.TIMEOUT), settings.call_timeout)
        raw = await hub.request("POST", url, body, sent, timeout, forwarded=True)
        if raw.error is not None:
            return _marked(502, "error", raw.error)
        return Response(raw.body, status_code=raw.status, headers=dict(raw.headers))

    return [
        ("POST", "/v0/connect/start", start),
        ("POST", "/v0/connect/flush", flush),
        ("POST", cluster.FORWARD_PATH, forward),
        ("GET", "/v1/connect/workers", workers),
        # the Inngest dev server's listing (any env id): tooling waits on it for a worker
        ("GET", "/v0/connect/envs/{env_id}/conns", workers),
        ("GET", "/v1/apps/{app_id}/workers", app_workers),
    ]


def websocket_routes(
    hub: Hub,
    host: gateway.GatewayHost,
    vouch: Callable[[str, float], str],
    settings: EngineSettings,
) -> list[tuple[str, SocketHandler]]:
    """The gateway's socket at ``GATEWAY_PATH`` and at Inngest's dev server's path (tools
    written for it dial ``/v0/connect`` directly), as ``(path, endpoint)`` for ``api`` to
    route; dev mode answers only loopback pages. The Connect token is checked by the
    handshake (``gateway.serve``): the worker sends it in its first frame."""

    if settings.database_url.startswith(("postgres://", "postgresql://")):
        hub.cluster = cluster.Cluster(hub, host.store, settings)  # nodes share the database

    async def endpoint(ws: starlette.websockets.WebSocket) -> None:
        if settings.mode == "dev":  # a web page may open a WebSocket to localhost
            headers = {k.lower(): v for k, v in ws.headers.items()}
            refused = guard.refusal("GET", headers, allow_public=settings.allow_public_bind)
            if refused is not None:
                await ws.close(1008, refused.message[:120])
                return
        await gateway.serve(ws, hub, host, vouch)

    return [(GATEWAY_PATH, endpoint), (INNGEST_GATEWAY_PATH, endpoint)]


def _marked(status: int, mark: str, error: str) -> Response:
    body = _json.dumps({"error": error}).encode()
    return Response(body, status, {cluster.MARK: mark}, media_type="application/json")


def _timeout(text: str | None, default: float) -> float:
    try:
        value = float(text or "")
    except ValueError:
        return default
    return value if 0 < value <= 7 * 86400 else default


def gateway_host(host: str) -> str | None:
    """``host`` if it is a bare host name or address with an optional port, else None."""
    found = _HOST.fullmatch(host)
    if found is None:
        return None
    port = found.group("port")
    return host if port is None or 0 < int(port) < 65536 else None


def proto_body(message: str, body: bytes) -> dict[str, object]:
    """A protobuf request body, or a 400 naming what is wrong with it."""
    try:
        return proto.decode(message, body)
    except proto.ProtoError as exc:
        raise ApiError(400, f"body is not a protobuf {message}: {exc}") from None


async def _read(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _websockets_installed() -> bool:
    return any(importlib.util.find_spec(name) for name in ("websockets", "wsproto"))


def websocket_server_missing() -> str | None:
    """Why this process cannot serve Connect, naming the extra to install; None: it can.

    The base install leaves the WebSocket package out: its apps serve over HTTP, and
    Connect is the one feature that needs it (``stepline[connect]`` brings it, for the
    engine and for the worker alike).
    """
    if _websockets_installed():
        return None
    return (
        "Connect needs a WebSocket server for uvicorn (the websockets package): "
        "pip install 'stepline[connect]'"
    )
