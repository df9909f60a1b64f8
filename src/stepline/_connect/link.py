"""One gateway connection of the SDK's worker: its socket, frames in and out, backoff.

The parts of ``worker`` that touch the WebSocket (the ``websockets`` package, imported
only when a worker is built) and the clocks: what the worker does with the messages is
``worker``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from typing import Any

from stepline import _errors
from stepline._connect import kinds, proto

__all__ = ["Lost", "Socket", "backoff", "beat", "is_socket_error", "receive", "wait", "websockets"]

_BACKOFF_FIRST, _BACKOFF_MAX = 0.25, 5.0


class Lost(Exception):
    """The socket is gone, or no longer to be used: connect again."""


@dataclasses.dataclass(eq=False)
class Socket:
    """One gateway connection: sends are serialized; replies wait for their acks."""

    ws: Any
    conn_id: str
    extend_every: float = 5.0
    open: bool = True
    acks: dict[str, asyncio.Future[None]] = dataclasses.field(default_factory=dict)
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)

    async def send(self, kind: int, message: str | None = None, **values: Any) -> None:
        payload = proto.encode(message, values) if message else b""
        async with self.lock:
            await self.ws.send(kinds.frame(kind, payload))


async def receive(ws: Any, timeout: float) -> tuple[int, bytes]:
    try:
        raw = await asyncio.wait_for(ws.recv(), timeout)
    except asyncio.TimeoutError:
        raise Lost(f"no message from the gateway in {timeout:g}s") from None
    except Exception as exc:
        if is_socket_error(exc):
            raise Lost(f"the socket closed ({exc})") from None
        raise
    if isinstance(raw, str):
        raise Lost("the gateway sent a text frame")
    try:
        envelope = proto.decode("ConnectMessage", raw)
    except proto.ProtoError as exc:
        raise Lost(f"the gateway sent a malformed frame: {exc}") from None
    return int(envelope.get("kind", 0)), bytes(envelope.get("payload", b""))


async def beat(sock: Socket, every: float) -> None:
    while sock.open:
        await asyncio.sleep(every)
        with contextlib.suppress(Exception):  # the reader notices a dead socket
            await sock.send(kinds.WORKER_HEARTBEAT)


async def wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


def backoff(failures: int) -> float:
    if failures <= 0:
        return 0.0
    return min(_BACKOFF_FIRST * 2.0 ** (failures - 1), _BACKOFF_MAX) * random.uniform(0.5, 1.0)


def is_socket_error(exc: BaseException) -> bool:
    module = type(exc).__module__
    return module.startswith("websockets")


def websockets() -> Any:
    try:
        from websockets.asyncio.client import connect
    except ImportError:
        raise _errors.ConfigError(
            "stepline.connect needs the websockets package: pip install 'stepline[connect]'"
        ) from None
    return connect
