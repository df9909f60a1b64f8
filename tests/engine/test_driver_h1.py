"""The engine's own HTTP/1.1 driver (``_driver.h1``), over real sockets.

What ``test_driver_http`` checks of every driver (HTTP/1.0 framing, stale connections,
nothing sent twice) runs on it too; here, what is its own: one kept-alive connection per
call in turn, ``gzip`` decoded within the size cap (a small bomb is refused), a timeout
that leaves no connection behind, the connection limit, HTTPS handed to the fallback,
and requests that would break their own framing refused unsent.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
import time
import zlib
from collections.abc import Mapping
from typing import Any

import pytest

from stepline.engine._driver import default_driver
from stepline.engine._driver.h1 import H1Driver
from stepline.engine._wire.response import RawResponse

from .wire_servers import listener


def _answer(body: bytes, *headers: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % len(body) + b"".join(headers)
    return head + b"\r\n" + body


class Recorder:
    """A fallback driver that records what it was handed."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.closed = False

    async def request(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> RawResponse:
        self.urls.append(url)
        return RawResponse(299, {}, b"fallback")

    async def close(self) -> None:
        self.closed = True


async def _calls(url: str, count: int, **options: Any) -> list[RawResponse]:
    driver = default_driver(**options)
    try:
        return [await driver.request("POST", url, b"{}", {}, 5) for _ in range(count)]
    finally:
        await driver.close()


def test_calls_in_turn_share_one_kept_alive_connection() -> None:
    connections: list[int] = []

    def serve(conn: socket.socket, number: int) -> None:
        if number == 1:
            connections.append(1)
        conn.sendall(_answer(b'{"n": %d}' % number))

    with listener(serve) as url:
        answers = asyncio.run(_calls(url, 20))
    assert [a.body for a in answers] == [b'{"n": %d}' % n for n in range(1, 21)]
    assert len(connections) == 1


def test_gzip_is_asked_for_and_decoded() -> None:
    seen: list[bytes] = []
    body = b'{"ok": true, "pad": "' + b"x" * 5000 + b'"}'

    def serve(conn: socket.socket, number: int) -> None:
        seen.append(b"")
        if number == 1:
            conn.sendall(_answer(gzip.compress(body), b"Content-Encoding: gzip\r\n"))
        else:
            raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
            packed = raw.compress(body) + raw.flush()
            conn.sendall(_answer(packed, b"Content-Encoding: deflate\r\n"))

    with listener(serve) as url:
        gzipped, deflated = asyncio.run(_calls(url, 2))
    assert (gzipped.status, gzipped.body) == (200, body)
    assert (deflated.status, deflated.body) == (200, body)


def test_a_compressed_answer_past_the_cap_once_decoded_is_refused() -> None:
    bomb = gzip.compress(b"0" * 5_000_000)  # 5 MB decoded from about 5 KB

    def serve(conn: socket.socket, _number: int) -> None:
        conn.sendall(_answer(bomb, b"Content-Encoding: gzip\r\n"))

    with listener(serve) as url:
        [answer] = asyncio.run(_calls(url, 1, max_bytes=1_000_000))
    assert len(bomb) < 1_000_000
    assert (answer.status, answer.error_name) == (0, "AnswerTooLarge")
    assert "larger than 1000000 bytes" in (answer.error or "")


def test_a_timeout_fails_the_call_and_its_connection_is_not_reused() -> None:
    numbers: list[int] = []

    def serve(conn: socket.socket, number: int) -> None:
        numbers.append(number)
        if len(numbers) == 1:
            time.sleep(1.0)  # past the caller's timeout
        conn.sendall(_answer(b"{}"))

    async def run() -> tuple[RawResponse, RawResponse]:
        driver = default_driver()
        try:
            slow = await driver.request("POST", url, b"{}", {}, 0.3)
            fine = await driver.request("POST", url, b"{}", {}, 5)
            return slow, fine
        finally:
            await driver.close()

    with listener(serve) as url:
        started = time.monotonic()
        slow, fine = asyncio.run(run())
        waited = time.monotonic() - started
    assert slow.status == 0
    assert slow.error == "ReadTimeout: no answer within 0.3s"
    assert fine.status == 200
    assert numbers == [1, 1], "the second call came on a new connection"
    assert waited < 1.0


def test_concurrent_calls_stay_within_the_connection_limit() -> None:
    lock = threading.Lock()
    open_now = [0, 0]  # now, most

    def serve(conn: socket.socket, _number: int) -> None:
        with lock:
            open_now[0] += 1
            open_now[1] = max(open_now[1], open_now[0])
        time.sleep(0.05)
        with lock:
            open_now[0] -= 1
        conn.sendall(_answer(b"{}"))

    async def run() -> list[RawResponse]:
        driver = H1Driver(Recorder(), max_bytes=1 << 20, max_connections=3)
        try:
            calls = [driver.request("POST", url, b"{}", {}, 10) for _ in range(12)]
            return list(await asyncio.gather(*calls))
        finally:
            await driver.close()

    with listener(serve) as url:
        answers = asyncio.run(run())
    assert [a.status for a in answers] == [200] * 12
    assert open_now[1] <= 3


def test_https_and_other_schemes_go_to_the_fallback() -> None:
    fallback = Recorder()

    async def run() -> RawResponse:
        driver = H1Driver(fallback, max_bytes=1 << 20)
        try:
            return await driver.request("POST", "https://app.example/api/inngest", b"", {}, 1)
        finally:
            await driver.close()

    answer = asyncio.run(run())
    assert (answer.status, answer.body) == (299, b"fallback")
    assert fallback.urls == ["https://app.example/api/inngest"]
    assert fallback.closed


@pytest.mark.parametrize(
    ("path", "headers"),
    [("", {"X-Evil": "a\r\nX-Injected: 1"}), ("x y", {}), ("", {"Bad Name": "v"})],
)
def test_a_request_that_would_break_its_framing_is_refused_unsent(
    path: str, headers: dict[str, str]
) -> None:
    requests: list[int] = []

    def serve(conn: socket.socket, number: int) -> None:
        requests.append(number)
        conn.sendall(_answer(b"{}"))

    async def run() -> RawResponse:
        driver = default_driver()
        try:
            return await driver.request("POST", url + path, b"{}", headers, 5)
        finally:
            await driver.close()

    with listener(serve) as url:
        answer = asyncio.run(run())
    assert answer.status == 0
    assert (answer.error or "").startswith("InvalidRequest: ")
    assert requests == []
