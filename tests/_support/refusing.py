"""A localhost address where a connection is refused at once, for the whole test process.

Its port is bound and never listened on: a connect gets a reset straight away, and no
port picked for another server while the process lives can be it. A fixed port (the
engine's 8288, or 1 or 9) may have a listener on someone's machine; this one cannot.
"""

from __future__ import annotations

import socket

_held: list[socket.socket] = []


def port() -> int:
    """The port, bound on first use."""
    if not _held:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        _held.append(sock)
    return int(_held[0].getsockname()[1])


def url(path: str = "") -> str:
    """``http://127.0.0.1:PORT`` followed by ``path``."""
    return f"http://127.0.0.1:{port()}{path}"


def release() -> None:
    """Close the port (at the end of the session)."""
    while _held:
        _held.pop().close()
