"""HTTP/1.1 for the plain-HTTP clients, without I/O: a request's head, an answer's reading.

Two clients share it: the SDK's blocking pool (``_http11``, sockets) and the engine's
asyncio driver (``engine._driver.h1``, a protocol). Each hands ``AnswerReader.feed`` the
bytes as they arrive and ``AnswerReader.closed`` the end of the connection; the reader
says when the answer is whole and what is in it.

As ``http.client`` does, ``request_head`` refuses a header name or value, or a request
target, that would break the request's framing (CR, LF, NUL, a space in the target), and
an answer is read by its ``Content-Length``, as chunks, or to the connection's close, with
limits on line lengths (64 KiB), the head (256 KiB) and header counts (100); interim
``1xx`` answers are skipped; duplicate headers are joined with ``", "`` as httpx joins
them; lines may end in a bare LF. ``go_framing`` reads as Go's ``net/http`` (Inngest's
server) does: an HTTP/1.0 answer's ``Transfer-Encoding`` is ignored (it is read by
``Content-Length``, else to the close) and its connection is not kept.
"""

from __future__ import annotations

import functools
import re
import urllib.parse
from collections.abc import Mapping

__all__ = ["AnswerReader", "AnswerTooLarge", "ProtocolError", "request_head", "split_url"]


class ProtocolError(ValueError):
    """An answer that is not well-formed HTTP/1.x, or a request that would not be."""


class AnswerTooLarge(ProtocolError):
    """An answer's body is longer than the reader's ``max_body``."""


#: The longest header or chunk-size line read, the longest head, the most header lines.
MAX_LINE = 65536
MAX_HEAD = 4 * MAX_LINE
MAX_HEADERS = 100

Origin = tuple[str, int]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_NOT_TOKEN = re.compile(r"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
_BAD_VALUE = re.compile("[\x00\r\n]")
_BAD_TARGET = re.compile("[\x00-\x20\x7f]")
_FRAMING = frozenset({"content-length", "transfer-encoding"})
_STATUS = re.compile(r"HTTP/1\.([0-9]) ([1-9][0-9][0-9])(?: [^\r\n]*)?")
_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?\r?\n")
_AFTER_HOST = re.compile("[/?#]")


def split_url(url: str) -> tuple[Origin, str] | None:
    """``(host, port)`` and the request target of a plain ``http://`` URL; None for any
    other URL, or one with credentials in it (httpx sends those as Basic auth).

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


@functools.lru_cache(maxsize=64)
def _origin(netloc: str) -> Origin | None:
    parts = urllib.parse.urlsplit(f"http://{netloc}")
    if parts.username is not None or parts.password is not None:
        return None
    if not parts.hostname:
        raise ValueError(f"no host in the URL 'http://{netloc}'")
    return parts.hostname, parts.port or 80


def request_head(
    method: str,
    target: str,
    origin: Origin,
    headers: Mapping[str, str],
    body: bytes | None,
    *,
    encodings: str = "identity",
) -> bytes:
    """The request line and headers, ending in the blank line: ``Host``, ``Content-Length``
    (the body's: a caller's framing headers are dropped) and ``Accept-Encoding``
    (``encodings``) unless given.

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
        lines.append(f"Accept-Encoding: {encodings}")
    if body is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body or b'')}")
    if not all(headers) or _NOT_TOKEN.search("".join(headers)):
        raise ProtocolError(f"invalid header name among {list(headers)!r}")
    if _BAD_VALUE.search("".join(headers.values())):
        raise ProtocolError("a header value holds CR, LF or NUL")
    lines += [f"{k}: {v.strip()}" for k, v in headers.items() if k.lower() not in _FRAMING]
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


class AnswerReader:
    """Reads one answer from the bytes of a connection, fed as they arrive.

    Once ``feed`` or ``closed`` returns True: ``status``, ``headers`` (lower-case names),
    ``body``, ``keep`` (the connection may carry another request) and ``extra`` (bytes
    past the answer: a connection that has any is not reusable).
    """

    def __init__(
        self, method: str, *, max_body: int | None = None, go_framing: bool = False
    ) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.keep = False
        self.extra = b""
        #: some byte of the answer has arrived
        self.began = False
        self._head_only = method == "HEAD"
        self._max = max_body
        self._go = go_framing
        self._buffer = bytearray()
        #: how far the buffer was searched for the end of a head or line without finding
        #: it: bytes trickled in one at a time are not searched again each time (quadratic)
        self._scanned = 0
        self._parts: list[bytes] = []
        self._size = 0
        self._state = "head"  # head, length, chunk-size, chunk, chunk-end, trailer, close, done
        self._left = 0

    @property
    def body(self) -> bytes:
        return b"".join(self._parts)

    def feed(self, data: bytes) -> bool:
        """Take the next bytes; whether the answer is now whole.

        Raises:
            ProtocolError: the answer is malformed (``AnswerTooLarge``: past ``max_body``).
        """
        if data:
            self.began = True
            self._buffer += data
        while self._state != "done":
            if not self._step():
                return False
        return True

    def closed(self) -> bool:
        """The peer closed the connection; whether that ended the answer (read to the
        close), else False when no byte of it had come.

        Raises:
            ProtocolError: the answer was cut short.
        """
        if self._state == "done":
            return True
        if self._state == "close":
            self._take(bytes(self._buffer))
            self._buffer.clear()
            self._state = "done"
            return True
        if not self.began:
            return False
        if self._state in ("length", "chunk"):
            raise ProtocolError(f"the answer ended {self._left} bytes early")
        raise ProtocolError(f"the connection closed in the answer's {self._state}")

    # -- one state at a time: False when it needs more bytes -------------------------------

    def _step(self) -> bool:
        state, buffer = self._state, self._buffer
        if state == "head":
            return self._head()
        if state in ("length", "chunk"):
            if not buffer:
                return False
            taken = bytes(buffer[: self._left])
            del buffer[: len(taken)]
            self._take(taken)
            self._left -= len(taken)
            if self._left:
                return False
            if state == "length":
                self._finish()
            else:
                self._state = "chunk-end"
            return True
        if state == "close":
            self._take(bytes(buffer))
            buffer.clear()
            return False
        line = self._line()
        if line is None:
            return False
        if state == "chunk-size":
            found = _SIZE.fullmatch(line)
            if found is None:
                raise ProtocolError(f"invalid chunk size line {line[:40]!r}")
            self._left = int(found.group(1), 16)
            self._state = "chunk" if self._left else "trailer"
        elif state == "chunk-end":
            if line not in (b"\r\n", b"\n"):
                raise ProtocolError("a chunk did not end where its size said")
            self._state = "chunk-size"
        elif line in (b"\r\n", b"\n"):  # the trailers' end: read past, not kept
            self._finish()
        return True

    def _head(self) -> bool:
        buffer = self._buffer
        end = _head_end(buffer, self._scanned)
        if end < 0:
            if len(buffer) > MAX_HEAD:
                raise ProtocolError(f"the answer's head is longer than {MAX_HEAD} bytes")
            self._scanned = max(len(buffer) - 3, 0)  # an end may straddle two reads
            return False
        self._scanned = 0
        # split at "\r?\n" by two calls in C: a regular expression searches once a line
        lines = buffer[:end].decode("latin-1").replace("\r\n", "\n").split("\n")
        del buffer[:end]
        matched = _STATUS.fullmatch(lines[0])
        if matched is None:
            raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        minor, self.status = matched.group(1), int(matched.group(2))
        self.headers = _headers(lines)
        if self.status == 101:
            raise ProtocolError("the server switched protocols, which was not asked for")
        if self.status < 200:
            return True  # an interim answer: the real one follows
        self._frame(minor == "0")
        return True

    def _frame(self, http10: bool) -> None:
        headers = self.headers
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        self.keep = "keep-alive" in tokens if http10 else "close" not in tokens
        codings = headers.get("transfer-encoding")
        if codings is not None and self._go and http10:
            codings, self.keep = None, False  # Go ignores it, and closes after the answer
        if self._head_only or self.status in (204, 304):
            self._finish()
        elif codings is not None:
            chunked = codings.split(",")[-1].strip().lower() == "chunked"
            self._state = "chunk-size" if chunked else "close"
            self.keep = self.keep and chunked
        elif "content-length" in headers:
            self._left = _length(headers["content-length"])
            if self._max is not None and self._left > self._max:
                raise AnswerTooLarge(f"the answer is longer than {self._max} bytes")
            if self._left:
                self._state = "length"
            else:
                self._finish()
        else:
            self._state, self.keep = "close", False

    def _line(self) -> bytes | None:
        end = self._buffer.find(b"\n", self._scanned) + 1
        if not end:
            if len(self._buffer) > MAX_LINE:
                raise ProtocolError(f"a line of the answer is longer than {MAX_LINE} bytes")
            self._scanned = len(self._buffer)
            return None
        self._scanned = 0
        line = bytes(self._buffer[:end])
        del self._buffer[:end]
        return line

    def _take(self, data: bytes) -> None:
        if not data:
            return
        self._size += len(data)
        if self._max is not None and self._size > self._max:
            raise AnswerTooLarge(f"the answer is longer than {self._max} bytes")
        self._parts.append(data)

    def _finish(self) -> None:
        self._state = "done"
        self.extra = bytes(self._buffer)
        self._buffer.clear()


def _head_end(buffer: bytearray, start: int) -> int:
    """Where the head in ``buffer`` ends, searched from ``start``: past the first LF that
    an LF or a CR LF follows (a line end, then a blank line); -1 if it has not arrived.
    Two finds in C, where a regular expression with an optional first byte tries a
    match at every byte."""
    crlf = buffer.find(b"\n\r\n", start)
    # only an LF LF before that end counts: the body after it is not searched
    bare = buffer.find(b"\n\n", start, len(buffer) if crlf < 0 else crlf + 1)
    if bare >= 0:
        return bare + 2
    return crlf + 3 if crlf >= 0 else -1


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
    value = values.pop() if len(values) == 1 else ""
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise ProtocolError(f"invalid Content-Length {text[:40]!r}")
    return int(value)
