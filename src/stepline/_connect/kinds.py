"""The Connect message kinds (``GatewayMessageType``) and the frame around each message."""

from __future__ import annotations

from stepline._connect import proto

__all__ = ["frame", "name"]

GATEWAY_HELLO = 0
WORKER_CONNECT = 1
GATEWAY_CONNECTION_READY = 2
GATEWAY_EXECUTOR_REQUEST = 3
WORKER_READY = 4
WORKER_REQUEST_ACK = 5
WORKER_REPLY = 6
WORKER_REPLY_ACK = 7
WORKER_PAUSE = 8
WORKER_HEARTBEAT = 9
GATEWAY_HEARTBEAT = 10
GATEWAY_CLOSING = 11
WORKER_REQUEST_EXTEND_LEASE = 12
WORKER_REQUEST_EXTEND_LEASE_ACK = 13
SYNC_FAILED = 14

_NAMES = {
    value: key for key, value in globals().items() if key.isupper() and isinstance(value, int)
}


def frame(kind: int, payload: bytes = b"") -> bytes:
    """One WebSocket message: a ``ConnectMessage`` of ``kind`` around ``payload``."""
    return proto.encode("ConnectMessage", {"kind": kind, "payload": payload})


def name(kind: int) -> str:
    """The kind's name (``WORKER_REPLY``), or its number if unknown."""
    return _NAMES.get(kind, str(kind))
