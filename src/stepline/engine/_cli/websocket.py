"""The WebSocket protocol ``stepline dev|start`` serve with: small messages until auth.

uvicorn takes a whole WebSocket message in (up to its ``ws_max_size``) before the app
sees a byte of it, so a socket nobody has authenticated yet could make the engine hold
that much. ``Protocol`` is uvicorn's own sans-I/O protocol with each socket starting at
``limits.HANDSHAKE_BYTES``: a larger frame closes the socket (1009) from its header,
before its payload is read. The Connect gateway lifts a socket to ``ws_max_size`` once
its worker's tokens check out (``limits.lift``, through the scope extension
``limits.EXTENSION``). Importing this needs the ``websockets`` package.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

from stepline.engine._connect import limits

__all__ = ["Protocol"]


class Protocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, each socket starting small."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn.max_message_size = min(limits.HANDSHAKE_BYTES, self.config.ws_max_size)

    def handle_connect(self, event: Request) -> None:
        """uvicorn's upgrade; the scope (which the app's task reads once it starts, after
        this) offers the socket's lift."""
        super().handle_connect(event)
        scope = self.__dict__.get("scope")  # only an accepted upgrade has one
        if scope is not None:
            scope["extensions"][limits.EXTENSION] = {"lift": self._lift}

    def _lift(self) -> None:
        self.conn.max_message_size = self.config.ws_max_size
