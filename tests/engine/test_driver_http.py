"""How the engine's HTTP drivers read apps' answers, as Go's ``net/http`` (Inngest's) does.

Behind a proxy: an app behind a proxy built on Python's ``http.server`` answers
``HTTP/1.0`` with the app's ``Transfer-Encoding: chunked`` over an un-chunked body; the
engine ignores Transfer-Encoding on HTTP/1.0 and reads to the close (or by
Content-Length), still capped at ``max_body_bytes``. Keep-alive: uvicorn closes an idle
keep-alive connection just as the engine reuses it; a request that failed on a reused
connection before any byte of an answer is sent once more on a new connection without
spending an attempt, and nothing else is re-sent (a timeout, a failure once an answer
began, a new connection's failure). Over real sockets and a real uvicorn; the same cases
end to end with an app of the official ``inngest`` package: ``test_official_driver``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

from stepline.engine._driver import AiohttpDriver, Driver, HttpDriver, default_driver
from stepline.engine._driver.framing import HeadFilter, unframe

from .wire_servers import Hangup, KeepAliveServer, listener, raw_server

DRIVERS: dict[str, Callable[..., Driver]] = {
    "h1": default_driver,  # the engine's own HTTP/1.1 (plain HTTP), aiohttp for HTTPS
    "aiohttp": AiohttpDriver,
    "httpx": HttpDriver,
}
JSON = b'{"ok": true, "pad": "' + b"x" * 300 + b'"}'
HTTP10_TE = (
    b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\nServer: BaseHTTP/0.6 Python/3.11\r\n\r\n"
)


# -- the framing, in pure code -----------------------------------------------------------


def test_filter_drops_transfer_encoding_of_an_http10_head_fed_a_byte_at_a_time() -> None:
    raw = HTTP10_TE + JSON
    head = HeadFilter()
    out = b"".join(head.feed(raw[i : i + 1]) for i in range(len(raw))) + head.flush()
    unframed = raw.replace(b"Transfer-Encoding: chunked\r\n", b"")
    assert out == unframed.replace(b"OK\r\n", b"OK\r\nConnection: close\r\n", 1)
    plain = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n"
    assert unframe(plain) == plain, "an HTTP/1.0 head without Transfer-Encoding is kept"


def test_filter_passes_http11_and_folded_headers_go_with_their_line() -> None:
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    head = HeadFilter()
    assert head.feed(raw[:7]) == b"", "held until the version shows"
    assert head.feed(raw[7:9]) == raw[:9], "then passed on whole, as it came"
    assert head.feed(raw[9:]) == raw[9:]
    folded = (
        b"HTTP/1.0 200 OK\r\nTransfer-encoding: gzip,\r\n chunked\r\n"
        b"Connection: keep-alive\r\nX-A: 1\r\n\r\n"
    )
    # RFC 9112 6.1: the connection of such an answer is closed after it, keep-alive or not
    assert unframe(folded) == b"HTTP/1.0 200 OK\r\nConnection: close\r\nX-A: 1\r\n\r\n"
    cut = HeadFilter()
    assert cut.feed(b"HTTP/1.0 200 OK\r\nX-") == b""
    assert cut.flush() == b"HTTP/1.0 200 OK\r\nX-", "a head cut by the close reaches the parser"


# -- behind a proxy, over a real socket -----------------------------------------------------------


async def _ask(kind: str, url: str, **options: Any) -> Any:
    driver = DRIVERS[kind](**options)
    try:
        return await driver.request("POST", url, b"{}", {"content-type": "application/json"}, 10)
    finally:
        await driver.close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", DRIVERS)
@pytest.mark.parametrize("trickle", [0, 7], ids=["whole", "trickled"])
def test_http10_answer_with_transfer_encoding_is_read_to_the_close(kind: str, trickle: int) -> None:
    async def check() -> None:
        async with raw_server(HTTP10_TE + JSON, trickle=trickle) as url:
            answer = await _ask(kind, url)
        assert answer.error is None, answer.error
        assert (answer.status, answer.body) == (200, JSON)
        assert answer.headers["content-type"] == "application/json"

    asyncio.run(check())


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", DRIVERS)
def test_http10_answer_keeps_its_content_length_and_the_size_cap(kind: str) -> None:
    async def check() -> None:
        # Go reads by Content-Length once Transfer-Encoding is ignored
        length = b"\r\nContent-Length: %d\r\n\r\n" % len(JSON)
        async with raw_server(HTTP10_TE.replace(b"\r\n\r\n", length) + JSON) as url:
            answer = await _ask(kind, url)
        assert (answer.status, answer.body) == (200, JSON), answer.error
        # read to the close, the cap still holds
        async with raw_server(HTTP10_TE + b"x" * 200_000) as url:
            answer = await _ask(kind, url, max_bytes=100_000)
        assert answer.error_name == "AnswerTooLarge", answer.error

    asyncio.run(check())


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", DRIVERS)
def test_http11_answer_with_a_broken_chunked_body_still_fails(kind: str) -> None:
    async def check() -> None:
        async with raw_server(HTTP10_TE.replace(b"HTTP/1.0", b"HTTP/1.1") + JSON) as url:
            answer = await _ask(kind, url)
        assert answer.status == 0, "only HTTP/1.0 framing is read leniently"
        assert answer.error

    asyncio.run(check())


# -- a real uvicorn with a short keep-alive ------------------------------------------------


@dataclasses.dataclass
class Counting:
    """An ASGI app answering ``{}`` and counting the requests that reached it."""

    hits: int = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        self.hits += 1
        start = {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
        await send(start)
        await send({"type": "http.response.body", "body": b"{}"})


KEEP_ALIVE = 0.2


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind", DRIVERS)
def test_a_pooled_connection_closed_by_the_server_is_replaced_unnoticed(kind: str) -> None:
    # The engine's loop is busy (here: blocked) while uvicorn's keep-alive runs out, so
    # the close is not yet seen when the connection is taken from the pool: the race of
    # a function that sleeps as long as the keep-alive, made certain. 30 times, each
    # request must succeed and reach the app exactly once. (httpcore tests a pooled
    # connection for a pending close before reusing it; aiohttp does not, hence the retry.)
    app = Counting()
    server = KeepAliveServer("keep-alive-app", KEEP_ALIVE).start(app)

    async def check() -> None:
        driver = DRIVERS[kind]()
        try:
            for round_ in range(30):
                answer = await driver.request("POST", server.url, b"{}", {}, 10)
                assert answer.error is None, f"round {round_}: {answer.error}"
                assert app.hits == round_ + 1, "sent once per request, never twice"
                time.sleep(KEEP_ALIVE * 1.5)  # blocks the loop: the FIN stays unread
        finally:
            await driver.close()

    try:
        asyncio.run(check())
    finally:
        server.stop()


OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


async def _twice(kind: str, url: str, *, timeout: float = 5) -> Any:
    driver = DRIVERS[kind]()
    try:
        first = await driver.request("POST", url, b"{}", {}, timeout)
        assert first.error is None, first.error
        return await driver.request("POST", url, b"{}", {}, timeout)
    finally:
        await driver.close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", DRIVERS)
def test_a_reused_connection_closed_before_any_answer_is_replaced_and_the_request_sent_again(
    kind: str,
) -> None:
    # the race of test_a_pooled_connection_closed_by_the_server_is_replaced_unnoticed,
    # with the server's close always last: the request was written to the pooled
    # connection, then the server closed it without a byte of an answer (as a keep-alive
    # timer firing with the request unread does); the driver cannot tell it from an idle
    # close, so it sends the request once more, on a new connection, and the caller sees
    # the answer. httpx's pool tests a connection for a close before reusing it, which
    # this close comes after.
    seen: list[int] = []

    def serve(conn: socket.socket, number: int) -> None:
        seen.append(number)
        if number == 1:
            conn.sendall(OK)
        else:
            raise Hangup

    with listener(serve) as url:
        answer = asyncio.run(_twice(kind, url))
    assert (answer.status, answer.error) == (200, None), answer
    assert seen == [1, 2, 1], "sent again once, on a new connection"


@pytest.mark.slow
@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", DRIVERS)
@pytest.mark.parametrize("fault", ["timeout", "partial-answer", "fresh-hangup"])
def test_nothing_else_is_sent_twice(fault: str, kind: str) -> None:
    # a second request on the reused connection that times out, or whose answer began
    # before the close, reached the app: it is not re-sent (the attempt fails, retried
    # or not by the function's policy); nor is a request that failed on a new connection
    seen: list[int] = []

    def serve(conn: socket.socket, number: int) -> None:
        seen.append(number)
        if number == 1 and fault != "fresh-hangup":
            conn.sendall(OK)
        elif fault == "timeout":
            time.sleep(2)
            raise Hangup
        elif fault == "partial-answer":
            conn.sendall(OK[:20])
            raise Hangup
        else:
            raise Hangup

    with listener(serve) as url:
        if fault == "fresh-hangup":
            answer = asyncio.run(_ask(kind, url))
            assert seen == [1], seen
        else:
            answer = asyncio.run(_twice(kind, url, timeout=1))
            assert seen == [1, 2], f"the second request was sent {len(seen) - 1} times"
    assert answer.status == 0, answer
    assert answer.error
