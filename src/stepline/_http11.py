"""Keep-alive HTTP/1.1 connections to plain-HTTP origins, for the blocking transport.

httpx costs about 0.5 ms of CPU per request on a small VM, and the standard library's
``http.client`` still spends most of its 0.17 ms parsing the answer's headers through
the ``email`` package; an app that starts a run and waits for it from a Flask or Django
view pays that per request, and a call that checkpoints every step pays it per step.
``Pool`` speaks HTTP/1.1 on sockets it keeps alive and shares between threads (0.07 ms a
request), for ``http://`` origins where httpx would connect straight to the origin too:
no ``HTTP_PROXY`` or ``ALL_PROXY`` in the environment (``direct``). HTTPS (httpx's CA
bundle) and proxies (httpx's ``NO_PROXY`` matching) stay with httpx.

As ``http.client`` does, a request refuses a header name or value, or a request target,
that would break the request's framing (CR, LF, NUL, a space in the target); an answer is
read by its ``Content-Length``, as chunks, or to the connection's close, with the same
limits on line lengths (64 KiB) and header counts (100); interim ``1xx`` answers are
skipped; duplicate headers are joined with ``", "`` as httpx joins them. Like httpx, a
pool follows no redirects and raises for network failures and malformed answers, which
the transport turns into ``status=0`` answers, and asks for no compression
(``Accept-Encoding: identity``). An idle connection the server has closed (its
keep-alive timeout) is noticed before reuse and replaced, so it costs no failed request.
"""

from __future__ import annotations

import collections
import functools
import re
import select
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Mapping

from stepline import _effects

__all__ = ["ERRORS", "Pool", "ProtocolError", "direct"]


class ProtocolError(ValueError):
    """An answer that is not well-formed HTTP/1.x, or a request that would not be."""


#: What a request through a pool may raise for a network failure or a malformed answer.
ERRORS = (OSError, ValueError)
#: Idle connections kept per origin; more than this many at rest are closed.
MAX_IDLE = 16
#: The longest status, header or chunk-size line read, and the most header lines.
MAX_LINE = 65536
MAX_HEADERS = 100
#: The longest head (status line and headers) read.
MAX_HEAD = 4 * MAX_LINE
#: Bodies up to this size go out in the same write as the head.
_JOINED = 64 * 1024

_Origin = tuple[str, int]
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_NOT_TOKEN = re.compile(r"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
_BAD_VALUE = re.compile("[\x00\r\n]")
_BAD_TARGET = re.compile("[\x00-\x20\x7f]")
_STATUS = re.compile(r"HTTP/1\.([0-9]) ([1-9][0-9][0-9])(?: [^\r\n]*)?")
_LINES = re.compile("\r?\n")
_LINE_END = re.compile(b"\n")
_HEAD_END = re.compile(b"\r?\n\r?\n")
_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?\r?\n")
_FRAMING = frozenset({"content-length", "transfer-encoding"})


def direct() -> bool:
    """Whether httpx would reach plain-HTTP origins without a proxy (read once per pool)."""
    found = urllib.request.getproxies()
    return not (found.get("http") or found.get("all"))


class _Connection:
    """A socket to one origin and what has been read from it but not used yet."""

    __slots__ = ("_buffer", "sock")

    def __init__(self, origin: _Origin, timeout: float) -> None:
        self.sock = socket.create_connection(origin, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = bytearray()

    @property
    def clean(self) -> bool:
        """Whether nothing beyond the last answer has arrived (else it is not reusable)."""
        return not self._buffer

    def close(self) -> None:
        self.sock.close()

    def line(self) -> bytes:
        """The next line, ending in LF; what is left before the peer closed, if it did.

        Raises:
            ProtocolError: a line longer than ``MAX_LINE``.
        """
        return self._through(_LINE_END, MAX_LINE, "a line of the answer")

    def head(self) -> bytes:
        """The next answer's status line and headers, up to and with the blank line
        (lines may end in a bare LF, as ``http.client`` tolerates); what is left before
        the peer closed, if it did.

        Raises:
            ProtocolError: a head longer than ``MAX_HEAD``.
        """
        return self._through(_HEAD_END, MAX_HEAD, "the answer's head")

    def _through(self, end: re.Pattern[bytes], limit: int, what: str) -> bytes:
        buffer = self._buffer
        start = 0
        while True:
            found = end.search(buffer, start)
            if found is not None:
                taken = bytes(buffer[: found.end()])
                del buffer[: found.end()]
                return taken
            if len(buffer) > limit:
                raise ProtocolError(f"{what} is longer than {limit} bytes")
            start = max(len(buffer) - 3, 0)  # an end may straddle two reads
            if not self._fill():
                taken = bytes(buffer)
                buffer.clear()
                return taken

    def exactly(self, size: int) -> bytes:
        """The next ``size`` bytes.

        Raises:
            ProtocolError: the peer closed before sending them all.
        """
        buffer = self._buffer
        while len(buffer) < size:
            if not self._fill(size - len(buffer)):
                raise ProtocolError(f"the answer ended {size - len(buffer)} bytes early")
        found = bytes(buffer[:size])
        del buffer[:size]
        return found

    def rest(self) -> bytes:
        """Everything until the peer closes the connection."""
        while self._fill():
            pass
        found = bytes(self._buffer)
        self._buffer.clear()
        return found

    def _fill(self, wanted: int = 0) -> bool:
        chunk = self.sock.recv(max(wanted, 65536))
        self._buffer += chunk
        return bool(chunk)


class Pool:
    """Keep-alive HTTP/1.1 connections per origin, safe to share between threads."""

    def __init__(self) -> None:
        self._idle: dict[_Origin, collections.deque[_Connection]] = {}
        self._lock = threading.Lock()

    def request(self, request: _effects.HttpRequest) -> _effects.HttpResponse | None:
        """Send ``request`` and read the whole answer; None if its URL is not for a pool
        (not ``http://``, or with credentials in it: httpx sends those as Basic auth).

        Raises:
            OSError, ValueError: the request failed (``ERRORS``); ``ProtocolError`` for
                a malformed answer, or a request that cannot be sent as it is.
        """
        split = _split(request.url)
        if split is None:
            return None
        origin, target = split
        head = _head(request.method, target, origin, request.headers, request.body)
        conn = self._take(origin, request.timeout)
        try:
            body = request.body or b""
            if len(body) <= _JOINED:
                conn.sock.sendall(head + body)
            else:
                conn.sock.sendall(head)
                conn.sock.sendall(body)
            status, headers, content, keep = _answer(conn, request.method)
        except BaseException:
            conn.close()
            raise
        if keep and conn.clean:
            self._give(origin, conn)
        else:
            conn.close()
        return _effects.HttpResponse(status=status, headers=headers, body=content)

    def close(self) -> None:
        """Close every idle connection; later requests open new ones."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    def _take(self, origin: _Origin, timeout: float) -> _Connection:
        """An idle connection to ``origin`` still open, or a new one."""
        while True:
            with self._lock:
                conns = self._idle.get(origin)
                conn = conns.pop() if conns else None
            if conn is None:
                return _Connection(origin, timeout)
            if not _readable(conn.sock):
                conn.sock.settimeout(timeout)
                return conn
            conn.close()  # the server closed it (or sent something unasked): not reusable

    def _give(self, origin: _Origin, conn: _Connection) -> None:
        with self._lock:
            conns = self._idle.setdefault(origin, collections.deque())
            if len(conns) < MAX_IDLE:
                conns.append(conn)
                return
        conn.close()


def _head(
    method: str, target: str, origin: _Origin, headers: Mapping[str, str], body: bytes | None
) -> bytes:
    """The request line and headers, ending in the blank line.

    Raises:
        ProtocolError: a method, target, header name or value that would break framing.
        UnicodeEncodeError: a header that is not Latin-1 (as ``http.client`` sends them).
    """
    if _BAD_TARGET.search(target) or not _TOKEN.fullmatch(method):
        raise ProtocolError(f"cannot send {method!r} {target!r}: control characters or spaces")
    host, port = origin
    shown = f"[{host}]" if ":" in host else host
    lines = [f"{method} {target} HTTP/1.1"]
    given = {name.lower() for name in headers}
    if "host" not in given:
        lines.append(f"Host: {shown}" if port == 80 else f"Host: {shown}:{port}")
    if "accept-encoding" not in given:
        lines.append("Accept-Encoding: identity")
    if body is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body or b'')}")
    if not all(headers) or _NOT_TOKEN.search("".join(headers)):
        raise ProtocolError(f"invalid header name among {list(headers)!r}")
    if _BAD_VALUE.search("".join(headers.values())):
        raise ProtocolError("a header value holds CR, LF or NUL")
    lines += [f"{k}: {v.strip()}" for k, v in headers.items() if k.lower() not in _FRAMING]
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


def _answer(conn: _Connection, method: str) -> tuple[int, dict[str, str], bytes, bool]:
    """``(status, headers, body, keep-alive)`` of the next answer on ``conn``.

    Raises:
        ConnectionError: the server closed the connection before answering.
        ProtocolError: a malformed answer.
    """
    while True:
        head = conn.head()
        if not head:
            raise ConnectionError("the server closed the connection without answering")
        lines = _LINES.split(head.decode("latin-1"))
        matched = _STATUS.fullmatch(lines[0])
        if matched is None:
            raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        minor, status = matched.group(1), int(matched.group(2))
        headers = _headers(lines)
        if not 100 <= status < 200:
            break
        if status == 101:
            raise ProtocolError("the server switched protocols, which was not asked for")
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    keep = "keep-alive" in tokens if minor == "0" else "close" not in tokens
    if method == "HEAD" or status in (204, 304):
        return status, headers, b"", keep
    codings = headers.get("transfer-encoding")
    if codings is not None:
        if codings.split(",")[-1].strip().lower() == "chunked":
            return status, headers, _chunks(conn), keep
        return status, headers, conn.rest(), False
    length = headers.get("content-length")
    if length is None:
        return status, headers, conn.rest(), False
    return status, headers, conn.exactly(_length(length)), keep


def _headers(lines: list[str]) -> dict[str, str]:
    """The headers of a head split into lines (the status line first, two blank last)."""
    if len(lines) > MAX_HEADERS + 3:
        raise ProtocolError(f"more than {MAX_HEADERS} header lines")
    found: dict[str, str] = {}
    name = ""
    for text in lines[1:]:
        if not text:
            break
        if len(text) > MAX_LINE:
            raise ProtocolError(f"a header line is longer than {MAX_LINE} bytes")
        if text[0] in " \t" and name:  # obsolete line folding: one value
            found[name] = f"{found[name]} {text.strip()}"
            continue
        name, colon, value = text.partition(":")
        name = name.strip().lower()
        if not colon or not name:
            raise ProtocolError(f"malformed header line: {text[:80]!r}")
        value = value.strip()
        found[name] = f"{found[name]}, {value}" if name in found else value
    return found


def _length(text: str) -> int:
    values = {v.strip() for v in text.split(",")}
    if len(values) != 1 or not next(iter(values)).isdigit() or not next(iter(values)).isascii():
        raise ProtocolError(f"invalid Content-Length {text[:40]!r}")
    return int(values.pop())


def _chunks(conn: _Connection) -> bytes:
    parts: list[bytes] = []
    while True:
        line = conn.line()
        matched = _SIZE.fullmatch(line)
        if matched is None:
            raise ProtocolError(f"invalid chunk size line {line[:40]!r}")
        size = int(matched.group(1), 16)
        if size == 0:
            break
        parts.append(conn.exactly(size))
        if conn.line() not in (b"\r\n", b"\n"):
            raise ProtocolError("a chunk did not end where its size said")
    for _ in range(MAX_HEADERS + 1):  # trailers: read past, not kept
        if conn.line() in (b"\r\n", b"\n", b""):
            return b"".join(parts)
    raise ProtocolError(f"more than {MAX_HEADERS} trailer lines")


def _split(url: str) -> tuple[_Origin, str] | None:
    """``(host, port)`` and the request target of a plain ``http://`` URL, else None.

    Raises:
        ValueError: a malformed URL (an unclosed IPv6 bracket, a port out of range).
    """
    if not url.startswith("http://"):
        return None
    cut = _AFTER_HOST.search(url, 7)
    netloc, rest = (url[7:], "") if cut is None else (url[7 : cut.start()], url[cut.start() :])
    origin = _origin(netloc)
    if origin is None:
        return None
    path, _, query = rest.partition("#")[0].partition("?")
    return origin, f"{path or '/'}?{query}" if query else path or "/"


_AFTER_HOST = re.compile("[/?#]")


@functools.lru_cache(maxsize=64)
def _origin(netloc: str) -> _Origin | None:
    """``(host, port)`` of a URL's authority; None when it holds credentials.

    Raises:
        ValueError: no host, an unclosed IPv6 bracket, a port out of range.
    """
    parts = urllib.parse.urlsplit(f"http://{netloc}")
    if parts.username is not None or parts.password is not None:
        return None
    if not parts.hostname:
        raise ValueError(f"no host in the URL 'http://{netloc}'")
    return parts.hostname, parts.port or 80


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
