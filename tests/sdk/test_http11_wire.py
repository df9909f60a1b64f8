"""``stepline._transport.keepalive`` on the wire: scripted answers byte for byte, and what it sends.

A raw socket server answers each request with bytes a test gives it (every framing an
HTTP/1.x server may use, and malformed ones) and records what arrived, so the pool's own
reading and writing of HTTP/1.1 is checked, not a library's.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from stepline._transport import effects, keepalive

Script = Callable[[bytes], bytes | None]  # a request's bytes -> the answer (None: close)


class Closing(bytes):
    """An answer after which the server closes the connection."""


class RawServer:
    """Answers each request read on a connection with ``script(request)``."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests: list[bytes] = []
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            pending = b""
            while True:
                while b"\r\n\r\n" not in pending:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    pending += chunk
                head, _, pending = pending.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(pending) < length:
                    pending += conn.recv(65536)
                request, pending = head + b"\r\n\r\n" + pending[:length], pending[length:]
                self.requests.append(request)
                answer = self.script(request)
                if answer is None:
                    return
                conn.sendall(answer)
                if isinstance(answer, Closing):
                    return

    def url(self, path: str = "/x") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.listener.close()


@contextlib.contextmanager
def serving(script: Script) -> Iterator[RawServer]:
    server = RawServer(script)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pool() -> Iterator[keepalive.Pool]:
    found = keepalive.Pool()
    yield found
    found.close()


def send(
    pool: keepalive.Pool,
    url: str,
    *,
    method: str = "POST",
    body: bytes | None = b"{}",
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> effects.HttpResponse:
    wanted = {"content-type": "application/json"} if headers is None else headers
    answer = pool.request(effects.HttpRequest(method, url, wanted, body, timeout))
    assert answer is not None
    return answer


def always(answer: bytes) -> Script:
    return lambda _request: answer


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


# -- framing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "body"),
    [
        (OK, b"ok"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n",
            b"hello",
        ),
        (  # chunk extensions, upper-case hex, trailers
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            b"A;name=value\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n",
            b"0123456789",
        ),
        (b"HTTP/1.1 200 OK\nContent-Length: 3\n\nabc", b"abc"),  # bare LF line ends
        (b"HTTP/1.1 200\r\nContent-Length: 3\r\n\r\nabc", b"abc"),  # no reason phrase
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz", b"z"),
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", b""),
    ],
    ids=["length", "chunked", "chunk-extensions", "bare-lf", "no-reason", "interim-100", "204"],
)
def test_each_framing_is_read_and_the_connection_reused(
    pool: keepalive.Pool, answer: bytes, body: bytes
) -> None:
    with serving(always(answer)) as server:
        first, second = send(pool, server.url()), send(pool, server.url())
    assert (first.body, second.body) == (body, body)
    assert server.connections == 1


def test_an_answer_read_to_the_close_is_whole_and_its_connection_not_kept(
    pool: keepalive.Pool,
) -> None:
    answer = Closing(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
    with serving(always(answer)) as server:
        got = send(pool, server.url())  # the server closes after it: that ends the body
        again = send(pool, server.url())
    assert (got.body, again.body) == (b"until the end", b"until the end")
    assert server.connections == 2


@pytest.mark.parametrize(
    ("answer", "kept"),
    [
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", True),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", False),
        (
            b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Upgrade\r\nContent-Length: 2\r\n\r\nok",
            True,
        ),
    ],
)
def test_keep_alive_follows_the_version_and_connection_header(
    pool: keepalive.Pool, answer: bytes, kept: bool
) -> None:
    with serving(always(answer)) as server:
        for _ in range(3):
            assert send(pool, server.url()).body == b"ok"
    assert server.connections == (1 if kept else 3)


def test_headers_are_lower_cased_joined_and_unfolded(pool: keepalive.Pool) -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nX-Many: a\r\nx-many: b\r\nX-Folded: one\r\n  two\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    with serving(always(answer)) as server:
        got = send(pool, server.url())
    assert got.headers == {"x-many": "a, b", "x-folded": "one two", "content-length": "0"}


def test_a_head_request_reads_no_body(pool: keepalive.Pool) -> None:
    with serving(always(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n")) as server:
        got = send(pool, server.url(), method="HEAD", body=None)
        again = send(pool, server.url(), method="HEAD", body=None)
    assert (got.status, got.body, again.status) == (200, b"", 200)
    assert server.connections == 1


# -- malformed answers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (b"ICY 200 OK\r\n\r\n", "status line"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nabcde", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: \xd9\xa3\r\n\r\nabc", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n", "chunk"),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "switched protocols"),
        (b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", "header lines"),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (4 * 65536) + b"\r\n\r\n", "longer than"),
    ],
)
def test_a_malformed_answer_raises_a_protocol_error(
    pool: keepalive.Pool, answer: bytes, words: str
) -> None:
    with serving(always(answer)) as server, pytest.raises(keepalive.ProtocolError, match=words):
        send(pool, server.url())


def test_an_answer_cut_short_raises_and_its_connection_is_dropped(pool: keepalive.Pool) -> None:
    cut = Closing(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    answers = iter([cut, None, OK])
    with serving(lambda _r: next(answers)) as server:
        with pytest.raises(keepalive.ProtocolError, match="7 bytes early"):
            send(pool, server.url())
        with pytest.raises(ConnectionError, match="without answering"):
            send(pool, server.url())
        assert send(pool, server.url()).body == b"ok"
    assert server.connections == 3


def test_bytes_after_an_answer_make_its_connection_unusable(pool: keepalive.Pool) -> None:
    with serving(always(OK + b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\njunk")) as server:
        first, second = send(pool, server.url()), send(pool, server.url())
    assert (first.body, second.body) == (b"ok", b"ok")  # never the unasked "junk"
    assert server.connections == 2


# -- what is sent ---------------------------------------------------------------------------


def test_the_request_carries_host_length_and_no_compression(pool: keepalive.Pool) -> None:
    with serving(always(OK)) as server:
        send(pool, server.url("/v1/events?x=1#frag"), body=b'{"a":1}')
        send(pool, server.url("/g"), method="GET", body=None, headers={"Host": "engine.local"})
    posted, got = server.requests
    head, _, body = posted.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/events?x=1 HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}".encode() in lines
    assert b"Content-Length: 7" in lines
    assert b"Accept-Encoding: identity" in lines
    assert body == b'{"a":1}'
    assert got.split(b"\r\n")[:2] == [b"GET /g HTTP/1.1", b"Accept-Encoding: identity"]
    assert b"Host: engine.local" in got
    assert b"Content-Length" not in got


def test_a_callers_framing_headers_are_replaced_by_the_bodys_own(pool: keepalive.Pool) -> None:
    with serving(always(OK)) as server:
        send(
            pool,
            server.url(),
            body=b"12345",
            headers={"Content-Length": "1", "Transfer-Encoding": "chunked"},
        )
    [request] = server.requests
    assert b"Content-Length: 5\r\n" in request
    assert b"Content-Length: 1" not in request
    assert b"Transfer-Encoding" not in request


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        ("/x", {"X-Evil": "a\r\nX-Injected: 1"}),
        ("/x", {"X-Evil": "a\nb"}),
        ("/x", {"X-Evil": "a\x00b"}),
        ("/x", {"Bad Name": "v"}),
        ("/x", {"Bad:Name": "v"}),
        ("/x", {"": "v"}),
        ("/x HTTP/1.1\r\nX-Injected: 1\r\n\r\nGET /y", {}),
        ("/x y", {}),
    ],
)
def test_what_would_break_the_requests_framing_is_refused_unsent(
    pool: keepalive.Pool, url: str, headers: dict[str, str]
) -> None:
    with serving(always(OK)) as server:
        with pytest.raises(keepalive.ProtocolError):
            send(pool, server.url(url), headers=headers)
        assert send(pool, server.url()).body == b"ok"  # the pool is unharmed
    assert len(server.requests) == 1
    assert b"X-Injected" not in server.requests[0]


def test_a_large_body_is_sent_whole(pool: keepalive.Pool) -> None:
    body = bytes(range(256)) * 2048  # 512 KiB: sent after the head, not joined to it
    with serving(always(OK)) as server:
        assert send(pool, server.url(), body=body).status == 200
    assert server.requests[0].endswith(b"\r\n\r\n" + body)


def test_urls_not_for_a_pool_are_left_to_httpx(pool: keepalive.Pool) -> None:
    for url in ("https://x.example/", "http://user:pw@x.example/", "ftp://x/"):
        assert pool.request(effects.HttpRequest("GET", url, {}, None, 1.0)) is None
    with pytest.raises(ValueError, match="IPv6"):
        pool.request(effects.HttpRequest("GET", "http://[::1/", {}, None, 1.0))


@pytest.mark.timeout(60)
def test_an_answer_trickled_a_byte_at_a_time_is_read_in_linear_time() -> None:
    """A server (or an app, for the engine's reader) dribbling a 200 KB head and chunked
    body one byte at a time must not make the reader search the same bytes again on each
    byte: quadratic, that was minutes of CPU for one answer."""
    from stepline._transport.h1 import AnswerReader

    head = b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"p" * 60000 + b"\r\n"
    head += b"X-More: " + b"m" * 60000 + b"\r\nX-Last: " + b"l" * 60000 + b"\r\n"
    answer = (
        head
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + b"5;"
        + b"e" * 60000
        + b"\r\nhello\r\n0\r\n\r\n"
    )
    reader = AnswerReader("GET")
    began = time.monotonic()
    done = [reader.feed(answer[i : i + 1]) for i in range(len(answer))]
    elapsed = time.monotonic() - began
    assert done[-1]
    assert not any(done[:-1])
    assert reader.body == b"hello"
    assert len(reader.headers["x-pad"]) == 60000
    assert elapsed < 10, f"{len(answer)} bytes fed one at a time took {elapsed:.1f} s"


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\nA: 1\nB: 2\n\n",
        b"HTTP/1.1 200 OK\r\nA: 1\nB: 2\n\r\n",  # a CR LF blank line after a bare LF
        b"HTTP/1.1 200 OK\nA: 1\r\nB: 2\r\n\n",  # a bare blank line after a CR LF
        b"HTTP/1.1 200 OK\r\nA: 1\rx\r\nB: 2\r\r\n\r\n",  # a lone CR stays in its line
    ],
    ids=["crlf", "lf", "lf-then-crlf", "crlf-then-lf", "lone-cr"],
)
def test_a_head_ends_at_its_first_blank_line_however_the_bytes_are_cut(head: bytes) -> None:
    """The head's end is the first line end followed by an empty line (``\\r?\\n\\r?\\n``),
    found whether it arrives whole or cut at any byte; the body is what follows."""
    from stepline._transport.h1 import AnswerReader

    answer = head.replace(b"B: 2", b"B: 2\r\nContent-Length: 4", 1)
    answer += b"\r\n\r\n"  # the body: line ends, not another head's end
    for cut in range(1, len(answer)):
        reader = AnswerReader("GET")
        assert not reader.feed(answer[:cut]), cut
        assert reader.feed(answer[cut:]), cut
        assert reader.status == 200
        assert reader.body == b"\r\n\r\n", cut
        assert reader.headers["b"] == "2", cut
        assert reader.headers["a"] == ("1\rx" if b"\rx" in head else "1"), cut
