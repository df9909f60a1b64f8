"""The Connect gateway on a port of its own, where Inngest's dev server has it.

Inngest's dev server serves its Connect gateway on a second port (8289: the API's port
plus one) at ``/v0/connect``. Workers find the gateway through ``POST /v0/connect/start``
and need none of this, but tools and test suites written for that dev server dial the
address directly (the official SDK's Connect scenarios among them). ``stepline dev``
listens there too, by default, with the same app (the gateway answers at
``/v0/connect`` as well as at its own path); ``stepline start`` only when asked. A port
already taken is said in one line and the engine goes on without it. Two dev engines on
neighbouring ports would both want the second one's port: ``--connect-gateway-port auto``
(or ``STEPLINE_CONNECT_GATEWAY_PORT``) takes a free port instead, and the banner names it.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
from collections.abc import Mapping
from typing import Literal, TextIO

__all__ = ["AUTO", "ENV", "add_argument", "bind", "chosen", "no_delay", "parse"]

#: ``--connect-gateway-port auto``: a free port the system picks (the banner names it).
AUTO: Literal["auto"] = "auto"
#: The environment variable ``--connect-gateway-port`` defaults to.
ENV = "STEPLINE_CONNECT_GATEWAY_PORT"

Choice = int | Literal["auto"]


def parse(text: str) -> Choice:
    """``--connect-gateway-port``'s value: a port (0: none), or ``auto``.

    Raises:
        ValueError: neither a port number nor ``auto``.
    """
    cleaned = text.strip().lower()
    if cleaned == AUTO:
        return AUTO
    try:
        port = int(cleaned)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ValueError(f"want a port (0-65535; 0: none) or 'auto', got {text!r}")
    return port


def _argument(text: str) -> Choice:
    try:
        return parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_argument(parser: argparse.ArgumentParser) -> None:
    """``--connect-gateway-port`` on ``dev`` and ``start``."""
    parser.add_argument(
        "--connect-gateway-port",
        type=_argument,
        metavar="PORT",
        help="also serve the Connect gateway at ws://HOST:PORT/v0/connect, as Inngest's dev "
        "server does (dev default: --port + 1; auto: a free port; 0: not at all; "
        f"env {ENV})",
    )


def chosen(
    mode: str, port: int, given: Choice | None, environ: Mapping[str, str] | None = None
) -> Choice | None:
    """The second port to listen on (``AUTO``: a free one), if any.

    Args:
        mode: ``dev`` or ``start``.
        port: the engine's own port.
        given: ``--connect-gateway-port`` (None: not given).
        environ: where ``STEPLINE_CONNECT_GATEWAY_PORT`` is read when it was not given.

    Raises:
        ValueError: the environment variable is neither a port nor ``auto``.
    """
    if given is None and environ is not None and environ.get(ENV, "").strip():
        try:
            given = parse(environ[ENV])
        except ValueError as exc:
            raise ValueError(f"{ENV}: {exc}") from None
    if given is not None:
        return given or None
    return port + 1 if mode == "dev" and port else None


def bind(host: str, port: Choice, stream: TextIO = sys.stderr) -> socket.socket | None:
    """A listening-ready socket on ``host:port``, or None (said on ``stream``) if taken.

    Args:
        host: the engine's interface.
        port: the gateway's port, or ``AUTO`` for one the system picks (its
            ``getsockname()`` says which).
        stream: where a port in use is reported.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, 0 if port == AUTO else port))
    except OSError as exc:
        with contextlib.suppress(OSError):
            sock.close()
        print(
            f"  ! the Connect gateway's own port {port} is not free ({exc.strerror}): workers "
            "still reach the gateway through /v0/connect/start (--connect-gateway-port auto "
            "takes a free one; 0 hides this line)",
            file=stream,
        )
        return None
    sock.set_inheritable(True)
    return no_delay(sock)


def no_delay(sock: socket.socket) -> socket.socket:
    """``sock`` with Nagle's algorithm off, for the connections it accepts too.

    Serving sockets it was given (``server.serve(sockets)``, as the engine does to listen
    on this second port), uvicorn's loop leaves the accepted connections as the kernel
    makes them: with Nagle on, a keep-alive response written in two parts waits for the
    client's delayed ACK, 40 ms a request. Linux copies the option to accepted sockets.
    """
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock
