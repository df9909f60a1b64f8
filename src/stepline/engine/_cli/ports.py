"""Why the engine could not listen, said with the fix: another port (``--port``)."""

from __future__ import annotations

import errno
import socket
import sys
from typing import TextIO


def in_use(host: str, port: int) -> bool:
    """Whether ``host:port`` is taken (binding it now fails with "address in use")."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno in (errno.EADDRINUSE, errno.EACCES)
    return False


def hint(command: str, port: int) -> str:
    """The line printed when the port is taken: what to do next."""
    # two up, not one: an engine on ``port`` may hold ``port + 1`` for its Connect gateway
    other = port + 2 if port < 65534 else port - 2
    return (
        f"stepline {command}: port {port} is already in use (another engine or server "
        f"listens there): stop it, or pick another port with --port {other} (env "
        f"STEPLINE_PORT; the Connect gateway takes the next one unless "
        f"--connect-gateway-port says otherwise); point your apps at it, e.g. "
        f"STEPLINE_DEV=http://127.0.0.1:{other}"
    )


def explain(command: str, host: str, port: int, stream: TextIO | None = None) -> None:
    """After a failed start: print ``hint`` if the port is the reason (else nothing)."""
    if in_use(host, port):
        print(hint(command, port), file=stream or sys.stderr)
