"""How an answer's framing is read: ``Transfer-Encoding`` is ignored on an HTTP/1.0 answer.

A server must not send ``Transfer-Encoding`` to an HTTP/1.1 client in an HTTP/1.0 answer,
yet proxies built on Python's ``http.server`` do (a chunked header copied from the app
over an un-chunked body). RFC 9112 section 6.1 says such a message's framing is faulty
and the connection is closed after it; Go's ``net/http`` (Inngest's server) ignores the
header and reads the body by ``Content-Length``, else to the close. ``HeadFilter`` does
the same to the bytes of an answer before a client's parser sees them (aiohttp's, for
HTTPS; ``stepline._transport.h1`` reads plain HTTP so itself). Pure: no I/O. ``too_large`` is the
failure every driver reports for an answer past the size cap.
"""

from __future__ import annotations

from stepline.engine._wire.response import RawResponse

#: The status line of an answer whose Transfer-Encoding is ignored.
_HTTP10 = b"HTTP/1.0 "
#: The most of an HTTP/1.0 head held back; a longer one passes unchanged (the parser
#: refuses it as it would have).
MAX_HEAD = 256 * 1024
_DROPPED = (b"transfer-encoding", b"connection")


def unframe(head: bytes) -> bytes:
    """``head`` (an HTTP/1.0 status line and headers) without its Transfer-Encoding.

    A head that had one also ends its connection (``Connection: close`` in place of any
    ``Connection`` header): RFC 9112 section 6.1 has the recipient close after such a
    message. Continuation lines (obsolete line folding) of a removed header go with it.
    """
    lines = head.split(b"\n")
    names: list[bytes] = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t") and names:
            name = names[-1]  # a folded line belongs to the header above it
        else:
            name = line.split(b":", 1)[0].strip().lower() if b":" in line else b""
        names.append(name)
    if b"transfer-encoding" not in names:
        return head
    end = b"\r" if lines[0].endswith(b"\r") else b""
    rest = [line for line, name in zip(lines[1:], names, strict=True) if name not in _DROPPED]
    return b"\n".join([lines[0], b"Connection: close" + end, *rest])


def _head_end(data: bytes) -> int:
    """Where the body starts (just past the empty line), or -1 while the head goes on."""
    ends = [i + len(sep) for sep in (b"\r\n\r\n", b"\n\n") if (i := data.find(sep)) >= 0]
    return min(ends) if ends else -1


class HeadFilter:
    """The bytes of one answer, with an HTTP/1.0 head's Transfer-Encoding removed.

    Feed it everything received for an answer, in order; pass on what it returns. An
    answer that is not HTTP/1.0 passes through as soon as its first 9 bytes show it.
    """

    def __init__(self) -> None:
        self._held = b""
        self._looking = True

    def feed(self, data: bytes) -> bytes:
        """The bytes to hand on now (the head of an HTTP/1.0 answer waits for its end)."""
        if not self._looking:
            return data
        held = self._held + data
        if not held.startswith(_HTTP10[: len(held)]):
            return self._done(held)  # not HTTP/1.0: the common case, decided at once
        if len(held) < len(_HTTP10):
            self._held = held
            return b""
        end = _head_end(held)
        if end < 0:
            if len(held) > MAX_HEAD:
                return self._done(held)
            self._held = held
            return b""
        return self._done(unframe(held[:end]) + held[end:])

    def flush(self) -> bytes:
        """What is held back (the connection ended before the head did)."""
        return self._done(self._held)

    def _done(self, data: bytes) -> bytes:
        self._looking = False
        self._held = b""
        return data


def too_large(limit: int, what: str = "the app's answer") -> RawResponse:
    """The failure for an answer longer than ``limit`` bytes (none of it is used)."""
    return RawResponse(
        0,
        {},
        b"",
        error=f"{what} is larger than {limit} bytes: the engine stopped reading it and used "
        "none of it (the limit is max_body_bytes, STEPLINE_MAX_BODY_BYTES)",
        error_name="AnswerTooLarge",
    )
