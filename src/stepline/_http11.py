"""Keep-alive HTTP/1.1 connections to plain-HTTP origins, for the blocking transport.

httpx costs about 0.5 ms of CPU per request on a small VM, four times what the standard
library's ``http.client`` costs for the same exchange; an app that starts a run and waits
for it from a Flask or Django view pays that twice per run, and a call that checkpoints
every step pays it per step. ``Pool`` sends ``http://`` requests over ``http.client``
connections kept alive and shared by threads. ``SyncTransport`` uses it only where httpx
would connect straight to the origin too: plain HTTP, and no ``HTTP_PROXY`` or
``ALL_PROXY`` in the environment (``direct``). HTTPS (httpx's CA bundle) and proxies
(httpx's ``NO_PROXY`` matching) stay with httpx.

Like httpx, a pool follows no redirects and raises for network failures, which the
transport turns into ``status=0`` answers; it asks for no compression (``http.client``
sends ``Accept-Encoding: identity``). An idle connection the server has closed (its
keep-alive timeout) is noticed before reuse and replaced, so it costs no failed request.
"""

from __future__ import annotations

import collections
import http.client
import select
import threading
import urllib.parse
import urllib.request

from stepline import _effects

__all__ = ["ERRORS", "Pool", "direct"]

#: What a request through a pool may raise for a network failure or a malformed answer.
ERRORS = (OSError, http.client.HTTPException, ValueError)
#: Idle connections kept per origin; more than this many at rest are closed.
MAX_IDLE = 16

_Origin = tuple[str, int]


def direct() -> bool:
    """Whether httpx would reach plain-HTTP origins without a proxy (read once per pool)."""
    found = urllib.request.getproxies()
    return not (found.get("http") or found.get("all"))


class Pool:
    """Keep-alive ``http.client`` connections per origin, safe to share between threads."""

    def __init__(self) -> None:
        self._idle: dict[_Origin, collections.deque[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def request(self, request: _effects.HttpRequest) -> _effects.HttpResponse | None:
        """Send ``request`` and read the whole answer; None if its URL is not for a pool
        (not ``http://``, or with credentials in it: httpx sends those as Basic auth).

        Raises:
            OSError, http.client.HTTPException, ValueError: the request failed (``ERRORS``).
        """
        split = _split(request.url)
        if split is None:
            return None
        origin, target = split
        conn = self._take(origin, request.timeout)
        try:
            conn.request(request.method, target, request.body, dict(request.headers))
            answer = conn.getresponse()
            body = answer.read()
        except BaseException:
            conn.close()
            raise
        headers = {name.lower(): value for name, value in answer.getheaders()}
        if answer.will_close:
            conn.close()
        else:
            self._give(origin, conn)
        return _effects.HttpResponse(status=answer.status, headers=headers, body=body)

    def close(self) -> None:
        """Close every idle connection; later requests open new ones."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    def _take(self, origin: _Origin, timeout: float) -> http.client.HTTPConnection:
        """An idle connection to ``origin`` still open, or a new one (connected on use)."""
        while True:
            with self._lock:
                conns = self._idle.get(origin)
                conn = conns.pop() if conns else None
            if conn is None:
                return http.client.HTTPConnection(origin[0], origin[1], timeout=timeout)
            if conn.sock is not None and not _readable(conn):
                conn.sock.settimeout(timeout)
                conn.timeout = timeout
                return conn
            conn.close()  # the server closed it (or sent something unasked): not reusable

    def _give(self, origin: _Origin, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            conns = self._idle.setdefault(origin, collections.deque())
            if len(conns) < MAX_IDLE:
                conns.append(conn)
                return
        conn.close()


def _split(url: str) -> tuple[_Origin, str] | None:
    """``(host, port)`` and the request target of a plain ``http://`` URL, else None.

    Raises:
        ValueError: a malformed URL (an unclosed IPv6 bracket, a port out of range).
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or parts.username is not None or parts.password is not None:
        return None
    if not parts.hostname:
        raise ValueError(f"no host in the URL {url!r}")
    target = parts.path or "/"
    if parts.query:
        target = f"{target}?{parts.query}"
    return (parts.hostname, parts.port or 80), target


def _readable(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle connection has something to read: the server's close, or junk."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        if hasattr(select, "poll"):  # select() fails past fd 1024, as in a busy server
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        ready, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(ready)
