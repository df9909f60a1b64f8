"""Keeping a replay's code off the network: what the deploy check and ``TestEnv.replay`` run under.

A replay answers every recorded step from the journal, so no step's code runs; the code
*between* steps runs as on any replay. ``offline()`` blocks what that code could do to
the world through sockets while it is active in this thread (or this task, for async
code): every ``connect``, name lookup and datagram is refused with ``NetworkBlockedError``
and noted, so the check can say what the code tried. It works by a Python audit hook,
installed once per process on first use and idle outside ``offline()`` (a hook cannot be
removed; idle, it costs one context-variable read per audited event).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import sys
from collections.abc import Iterator
from typing import Any

from stepline._errors import SteplineError

__all__ = ["Attempts", "NetworkBlockedError", "offline"]

#: The audit events that reach the network.
_NETWORK_EVENTS = frozenset(
    {
        "socket.connect",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.sendto",
        "socket.sendmsg",
    }
)


class NetworkBlockedError(SteplineError):
    """Code outside steps tried to reach the network during a replay, and was refused."""

    code = "network_blocked"


class Attempts:
    """What the code tried while ``offline()`` was active: one line per attempt."""

    __slots__ = ("tried",)

    def __init__(self) -> None:
        self.tried: list[str] = []

    def __bool__(self) -> bool:
        return bool(self.tried)


_active: contextvars.ContextVar[Attempts | None] = contextvars.ContextVar(
    "stepline_offline", default=None
)


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event[:7] != "socket." or event not in _NETWORK_EVENTS:
        return
    attempts = _active.get()
    if attempts is None:
        return
    where = _address(event, args)
    attempts.tried.append(where)
    raise NetworkBlockedError(
        f"{where}: code outside steps tried to reach the network while replaying; a "
        "replay sends nothing (read ctx.dry_run to skip such code, or move it into a step)"
    )


def _address(event: str, args: tuple[Any, ...]) -> str:
    if event == "socket.getaddrinfo" and len(args) >= 2:
        return f"look up {args[0]}:{args[1]}"
    if event == "socket.gethostbyname" and args:
        return f"look up {args[0]}"
    if len(args) >= 2:
        address = args[1]
        if isinstance(address, tuple) and len(address) >= 2:
            return f"connect to {address[0]}:{address[1]}"
        return f"connect to {address!r}"
    return event


@functools.cache
def _install() -> None:
    sys.addaudithook(_hook)


@contextlib.contextmanager
def offline() -> Iterator[Attempts]:
    """Refuse network access to the code run inside; yields what it tried."""
    _install()
    attempts = Attempts()
    token = _active.set(attempts)
    try:
        yield attempts
    finally:
        _active.reset(token)
