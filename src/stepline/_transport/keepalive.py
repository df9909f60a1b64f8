"""Keep-alive HTTP/1.1 connections to plain-HTTP origins, for the blocking transport.

httpx costs about 0.5 ms of CPU per request on a small VM, and the standard library's
``http.client`` still spends most of its 0.17 ms parsing the answer's headers through
the ``email`` package; an app that starts a run and waits for it from a Flask or Django
view pays that per request, and a call that checkpoints every step pays it per step.
``Pool`` speaks HTTP/1.1 (``_h1``: the request's head, the answer's reading) on sockets
it keeps alive and shares between threads, for ``http://`` origins where httpx would
connect straight to the origin too: no ``HTTP_PROXY`` or ``ALL_PROXY`` in the
environment (``direct``). HTTPS (httpx's CA bundle) and proxies (httpx's ``NO_PROXY``
matching) stay with httpx.

Like httpx, a pool follows no redirects and raises for network failures and malformed
answers, which the transport turns into ``status=0`` answers, and asks for no
compression (``Accept-Encoding: identity``). An idle connection the server has closed
(its keep-alive timeout) is noticed before reuse and replaced, so it costs no failed
request; one that received bytes past its last answer is not reused.
"""

from __future__ import annotations

import collections
import select
import socket
import threading
import urllib.request

from stepline._transport import effects
from stepline._transport.h1 import AnswerReader, ProtocolError, request_head, split_url

__all__ = ["ERRORS", "Pool", "ProtocolError", "direct"]

#: What a request through a pool may raise for a network failure or a malformed answer.
ERRORS = (OSError, ValueError)
#: Idle connections kept per origin; more than this many at rest are closed.
MAX_IDLE = 16
#: Bodies up to this size go out in the same write as the head.
_JOINED = 64 * 1024
_READ = 65536

_Origin = tuple[str, int]


def direct() -> bool:
    """Whether httpx would reach plain-HTTP origins without a proxy (read once per pool)."""
    found = urllib.request.getproxies()
    return not (found.get("http") or found.get("all"))


class Pool:
    """Keep-alive HTTP/1.1 connections per origin, safe to share between threads."""

    def __init__(self) -> None:
        self._idle: dict[_Origin, collections.deque[socket.socket]] = {}
        self._lock = threading.Lock()

    def request(self, request: effects.HttpRequest) -> effects.HttpResponse | None:
        """Send ``request`` and read the whole answer; None if its URL is not for a pool
        (not ``http://``, or with credentials in it: httpx sends those as Basic auth).

        Raises:
            OSError, ValueError: the request failed (``ERRORS``); ``ProtocolError`` for
                a malformed answer, or a request that cannot be sent as it is.
        """
        split = split_url(request.url)
        if split is None:
            return None
        origin, target = split
        body = request.body
        head = request_head(request.method, target, origin, request.headers, body)
        sock = self._take(origin, request.timeout)
        try:
            if body is not None and len(body) > _JOINED:
                sock.sendall(head)
                sock.sendall(body)
            else:
                sock.sendall(head + (body or b""))
            answer = _read(sock, AnswerReader(request.method))
        except BaseException:
            sock.close()
            raise
        if answer.keep and not answer.extra:
            self._give(origin, sock)
        else:
            sock.close()
        return effects.HttpResponse(status=answer.status, headers=answer.headers, body=answer.body)

    def close(self) -> None:
        """Close every idle connection; later requests open new ones."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for socks in idle.values():
            for sock in socks:
                sock.close()

    def _take(self, origin: _Origin, timeout: float) -> socket.socket:
        """An idle connection to ``origin`` still open, or a new one."""
        while True:
            with self._lock:
                socks = self._idle.get(origin)
                sock = socks.pop() if socks else None
            if sock is None:
                sock = socket.create_connection(origin, timeout=timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return sock
            if not _readable(sock):
                sock.settimeout(timeout)
                return sock
            sock.close()  # the server closed it (or sent something unasked): not reusable

    def _give(self, origin: _Origin, sock: socket.socket) -> None:
        with self._lock:
            socks = self._idle.setdefault(origin, collections.deque())
            if len(socks) < MAX_IDLE:
                socks.append(sock)
                return
        sock.close()


def _read(sock: socket.socket, answer: AnswerReader) -> AnswerReader:
    """``answer``, fed from ``sock`` until it is whole.

    Raises:
        ConnectionError: the server closed the connection before answering.
        ProtocolError: a malformed answer, or one cut short.
        OSError: the socket failed, or timed out.
    """
    while True:
        chunk = sock.recv(_READ)
        if not chunk:
            if answer.closed():
                return answer
            raise ConnectionError("the server closed the connection without answering")
        if answer.feed(chunk):
            return answer


def _readable(sock: socket.socket) -> bool:
    """Whether an idle connection has something to read: the server's close, or junk."""
    try:
        if hasattr(select, "poll"):  # select() fails past fd 1024, as in a busy server
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        ready, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(ready)
