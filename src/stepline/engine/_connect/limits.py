"""What a Connect socket may cost the engine before its worker has authenticated.

A socket is accepted before its worker proves anything (its tokens come in its first
message, ``WORKER_CONNECT``), so until then:

- its messages are at most ``HANDSHAKE_BYTES``, which ``WORKER_CONNECT`` (the tokens
  and the apps' function configs) fits in. The server enforces that from each frame's
  header, before its payload is read (``stepline.engine._cli.websocket``); the gateway
  lifts the socket to the server's full limit once the tokens check out (``lift``);
- at most ``HANDSHAKES`` sockets are being set up at once, ``HANDSHAKES_PER_CLIENT``
  from one address: past either the upgrade is refused (403) and the worker retries;
- each has ``Timing.handshake`` to send ``WORKER_CONNECT`` (``gateway.serve``).

So unauthenticated sockets hold at most ``HANDSHAKES`` x ``HANDSHAKE_BYTES`` of
messages, for at most a handshake's time each. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["EXTENSION", "HANDSHAKES", "HANDSHAKES_PER_CLIENT", "HANDSHAKE_BYTES", "lift"]

#: The largest message a socket may send before the gateway lifts its limit.
HANDSHAKE_BYTES = 1024 * 1024
#: Sockets being set up (accepted, not yet authenticated) at once, from all addresses.
HANDSHAKES = 64
#: Sockets being set up at once from one address (workers of one host reconnecting).
HANDSHAKES_PER_CLIENT = 16
#: The ASGI scope extension under which the server offers to lift a socket's limit.
EXTENSION = "stepline.websocket.lift"


def lift(scope: Mapping[str, Any]) -> bool:
    """Give the socket of ``scope`` the server's full message limit.

    Returns:
        False if the server offers no lift (not ``stepline dev|start``): its own limit
        holds throughout then.
    """
    extension = (scope.get("extensions") or {}).get(EXTENSION) or {}
    lifting: Callable[[], None] | None = extension.get("lift")
    if lifting is None:
        return False
    lifting()
    return True
