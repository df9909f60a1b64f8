"""Dev mode's guard against web pages: no cross-site writes, no DNS rebinding.

``stepline dev`` (and the embedded engine's mount in a dev-mode app) has no sign-in, so
the browser of the developer running it is the way in for any web page they open:

* A page may send a "simple" cross-site request (``POST`` with ``text/plain``, a form
  encoding or no content type) without asking the server first. So a ``POST`` must be
  JSON (``Content-Type: application/json`` or ``…+json``) or carry ``X-Stepline-Csrf``
  or an ``X-Inngest-*`` header (what the dashboard and every SDK send): none of these
  can be sent cross-site without a CORS preflight, which the engine never grants (nor
  does it ever send CORS headers). ``PUT``, ``PATCH`` and ``DELETE`` always need that
  preflight, so they cannot be forged either.
* A request whose ``Origin`` is not the engine's own origin is refused whatever its
  method.
* DNS rebinding points a name the attacker controls at ``127.0.0.1``, making the engine
  same-origin with the attacker's page; the browser still sends the attacker's name in
  ``Host``. So only loopback host names are answered (``localhost``, ``*.localhost``,
  ``127.0.0.0/8``, ``[::1]``, and the unspecified ``0.0.0.0`` and ``[::]``, any port)
  unless the engine was told ``--allow-public``.

The decision is pure (``refusal``); ``Guard`` applies it to ``stepline dev``'s ASGI app and
``stepline.embedded`` to its mounts. ``ServerKind``, the other middleware around the
engine's app, stamps every answer (refusals included) with ``X-Inngest-Server-Kind``.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import json
import logging
import urllib.parse
from collections.abc import Mapping

import starlette.datastructures
import starlette.types

from stepline._serving import csrf
from stepline.engine._http import wire

logger = logging.getLogger("stepline.engine.api")

__all__ = [
    "Guard",
    "Refusal",
    "ServerKind",
    "logged_path",
    "loopback_host",
    "refusal",
    "same_origin",
]

#: The header the dashboard sends with every request (any value).
CSRF_HEADER = csrf.HEADER.lower()
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclasses.dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is refused: the status to answer and a message saying what to do."""

    status: int
    message: str


def refusal(method: str, headers: Mapping[str, str], *, allow_public: bool) -> Refusal | None:
    """Whether a dev-mode request could have been forged by a web page.

    Args:
        method: the request's method.
        headers: its headers, names lower-cased.
        allow_public: the engine runs with ``--allow-public`` (any ``Host`` is answered).

    Returns:
        The refusal, or None when the request may proceed.
    """
    host = headers.get("host", "")
    # no Host at all is no browser's request (every browser sends one): nothing to rebind
    if host and not allow_public and not loopback_host(host):
        return Refusal(
            403,
            f"this dev-mode engine answers only loopback host names (localhost, 127.0.0.1, "
            f"[::1]), not Host {_shown(host)}, so that a web page cannot reach it by DNS "
            "rebinding; open it at http://127.0.0.1:<port>/, or start it with "
            "--allow-public to answer any host name",
        )
    origin = headers.get("origin")
    if origin is not None and not same_origin(origin, host, headers.get("x-forwarded-host")):
        return Refusal(
            403,
            f"cross-origin request refused: Origin {_shown(origin)} is not this engine's "
            "origin; a dev-mode engine answers only its own dashboard and non-browser "
            "clients (SDKs, curl)",
        )
    # POST is the one state-changing method a page may send unasked (PUT, PATCH and DELETE
    # always need a preflight, which is never granted)
    if method.upper() == "POST" and not _preflighted(headers):
        kind = headers.get("content-type", "").split(";", 1)[0].strip()
        ask = (
            "send JSON (Content-Type: application/json) or the header X-Stepline-Csrf: 1, "
            "which no web page can send on your behalf"
        )
        if kind:
            return Refusal(415, f"Content-Type {_shown(kind)} is not accepted here; {ask}")
        return Refusal(403, f"a POST without a JSON body needs a header (cross-site guard): {ask}")
    return None


@functools.lru_cache(maxsize=256)  # pure; a request's Host is one of a few
def loopback_host(host: str) -> bool:
    """Whether a ``Host`` header names this machine's loopback interface.

    Args:
        host: the header value: a name or address, optionally with ``:port``.

    Returns:
        True for ``localhost``, ``*.localhost``, ``127.0.0.0/8`` and ``[::1]``, and the
        unspecified addresses ``0.0.0.0`` and ``[::]``, which reach this machine too (the
        official SDK's tooling calls its dev server at ``http://0.0.0.0:8288``): an
        address is no name an attacker can point elsewhere, so it rebinds nothing.
    """
    parsed = _host_port(host)
    if parsed is None:
        return False
    name = parsed[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def same_origin(origin: str, host: str, forwarded_host: str | None = None) -> bool:
    """Whether an ``Origin`` header names the server the request was sent to.

    Args:
        origin: the ``Origin`` header (``null`` and anything unparsable never match).
        host: the ``Host`` header.
        forwarded_host: ``X-Forwarded-Host``, as a reverse proxy sets it (a web page
            cannot add it to a cross-site request without a preflight).

    Returns:
        True if the origin's host and port are those of ``host`` or ``forwarded_host``.
    """
    try:
        parts = urllib.parse.urlsplit(origin.strip())
        default = _DEFAULT_PORTS.get(parts.scheme)
        origin_port = parts.port or default
    except ValueError:
        return False
    if default is None or not parts.hostname:
        return False
    for candidate in (host, (forwarded_host or "").split(",")[0]):
        parsed = _host_port(candidate)
        if parsed is None:
            continue
        name, port = parsed
        if name == parts.hostname.rstrip(".").lower() and (port or default) == origin_port:
            return True
    return False


def _host_port(host: str) -> tuple[str, int | None] | None:
    """``(lower-case name without brackets or trailing dot, port)``, or None if malformed."""
    host = host.strip()
    if host.startswith("["):
        name, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        digits = rest[1:] if rest else None
    else:
        name, colon, digits_text = host.partition(":")
        digits = digits_text if colon else None
    port: int | None = None
    if digits is not None:
        if not (digits.isascii() and digits.isdigit() and len(digits) <= 5):
            return None
        port = int(digits)
        if not 0 < port < 65536:
            return None
    name = name.rstrip(".").lower()
    return (name, port) if name else None


def _preflighted(headers: Mapping[str, str]) -> bool:
    """Whether a browser would have had to ask (CORS preflight) before sending this."""
    kind = headers.get("content-type", "")
    if csrf.is_json(kind) or kind.split(";", 1)[0].strip().lower() == "application/protobuf":
        return True  # neither is a type a page may send cross-site unasked (Connect's start)
    return CSRF_HEADER in headers or any(name.startswith("x-inngest-") for name in headers)


def _shown(value: str) -> str:
    return repr(value if len(value) <= 100 else value[:100] + "...")


def logged_path(path: str) -> str:
    """``path`` for a log line: an event key is a path segment, and never logged."""
    head, sep, _ = path.partition("/e/")
    return f"{head}/e/{{key}}" if sep else path[:200]


def answer(
    method: str, path: str, headers: Mapping[str, str], *, allow_public: bool
) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
    """``refusal`` as an HTTP answer (status, headers, JSON body), logged; None to proceed.

    Args:
        method: the request's method.
        path: its path, for the log line.
        headers: its headers, names lower-cased.
        allow_public: answer any ``Host``.
    """
    refused = refusal(method, headers, allow_public=allow_public)
    if refused is None:
        return None
    logger.warning(
        "refused %s %s: %d %s", method, logged_path(path), refused.status, refused.message
    )
    body = json.dumps(wire.error_body(refused.status, refused.message)).encode()
    out = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return refused.status, out, body


class Guard:
    """ASGI middleware refusing what ``refusal`` refuses, with a JSON error and a log line.

    Args:
        app: the engine's app.
        allow_public: answer any ``Host`` (``--allow-public``).
    """

    def __init__(self, app: starlette.types.ASGIApp, *, allow_public: bool) -> None:
        self.app = app
        self.allow_public = allow_public

    async def __call__(
        self,
        scope: starlette.types.Scope,
        receive: starlette.types.Receive,
        send: starlette.types.Send,
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
        path = scope.get("path", "/")
        refused = answer(scope["method"], path, headers, allow_public=self.allow_public)
        if refused is None:
            await self.app(scope, receive, send)
            return
        status, out, body = refused
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": body})


class ServerKind:
    """Stamp ``X-Inngest-Server-Kind`` on every response, errors included."""

    def __init__(self, app: starlette.types.ASGIApp, kind: str) -> None:
        self.app = app
        self.kind = kind

    async def __call__(
        self,
        scope: starlette.types.Scope,
        receive: starlette.types.Receive,
        send: starlette.types.Send,
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def stamped(message: starlette.types.Message) -> None:
            if message["type"] == "http.response.start":
                headers = starlette.datastructures.MutableHeaders(scope=message)
                headers["X-Inngest-Server-Kind"] = self.kind
            await send(message)

        await self.app(scope, receive, stamped)
