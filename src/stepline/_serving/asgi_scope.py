"""Reading an ASGI ``http`` connection: the body (bounded) and the path under the mount.

Shared by ``stepline.asgi``, the FastAPI adapter and the embedded engine's mount, which
all read a request the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

__all__ = [
    "Message",
    "Receive",
    "Scope",
    "Send",
    "full_path",
    "origin",
    "read_body",
    "relative_path",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def read_body(receive: Receive, limit: int) -> bytes:
    """Read the request body; stops once past ``limit`` (the reader then answers 413)."""
    body = bytearray()
    while len(body) <= limit:
        message = await receive()
        body += message.get("body", b"")
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            break
    return bytes(body)


def full_path(scope: Scope) -> str:
    """The path the client asked for, the mount's ``root_path`` included."""
    # ASGI servers now put root_path inside path; older hosts and mounts left it out.
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path if path.startswith(root) else root + path


def relative_path(scope: Scope) -> str:
    """The path under the mount point (``""`` at the mount point itself)."""
    return full_path(scope)[len(scope.get("root_path", "")) :]


def origin(scope: Mapping[str, Any], *, root_path: bool = False) -> str | None:
    """``scheme://host`` from the ``Host`` header (else the server address), with the
    ``root_path`` when asked; None when neither names a host."""
    scheme = scope.get("scheme", "http")
    host = next((v.decode("latin-1") for k, v in scope.get("headers") or () if k == b"host"), None)
    server = scope.get("server")
    if host is None and server:
        host = f"{server[0]}:{server[1]}"
    if host is None:
        return None
    return f"{scheme}://{host}" + (scope.get("root_path", "") if root_path else "")
