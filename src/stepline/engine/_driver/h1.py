"""The engine's calls to apps over plain HTTP: keep-alive HTTP/1.1 on asyncio sockets.

A call is one request and one answer on a pooled connection: the request's head and body
go out in one write, and the answer is read by ``stepline._transport.h1.AnswerReader`` as its bytes
arrive, with no stream objects in between (aiohttp's client cost about three times the
CPU per call; it still serves HTTPS). Answers are read as Go's ``net/http`` (Inngest's
server) reads them: an HTTP/1.0 answer's ``Transfer-Encoding`` is ignored; ``gzip`` is
asked for and decoded, as Go's transport does, within the size cap; a request that
failed on a pooled connection the app's server had closed while idle (no byte of an
answer arrived) is sent once more on a new connection without counting as an attempt.
"""

from __future__ import annotations

import asyncio
import collections
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

from stepline._transport.h1 import (
    AnswerReader,
    AnswerTooLarge,
    Origin,
    ProtocolError,
    request_head,
    split_url,
)
from stepline.engine._driver.framing import too_large
from stepline.engine._wire.response import RawResponse

if TYPE_CHECKING:
    from stepline.engine._driver import Driver

#: Idle connections kept per app origin.
MAX_IDLE = 64
_BUFSIZE = 256 * 1024  # the most of a decoded body produced per step


class ServerDisconnected(ConnectionError):
    """The server closed the connection before any byte of an answer."""


class H1Connection(asyncio.Protocol):
    """One socket to an app's server, carrying one exchange at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.served = 0  # exchanges completed on it
        self._answer: AnswerReader | None = None
        self._waiter: asyncio.Future[AnswerReader] | None = None
        self._broken = False

    @property
    def usable(self) -> bool:
        """Open, and nothing arrived since its last answer."""
        transport = self.transport
        return not self._broken and transport is not None and not transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's: not a subclass

    def exchange(self, data: bytes, answer: AnswerReader) -> asyncio.Future[AnswerReader]:
        """Send ``data``; the future is the whole ``answer`` (or why it failed)."""
        assert self.transport is not None
        self._answer = answer
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self._waiter

    def data_received(self, data: bytes) -> None:
        answer = self._answer
        if answer is None:  # unasked bytes on an idle connection: never reuse it
            self.close()
            return
        try:
            done = answer.feed(data)
        except ProtocolError as exc:
            self._settle(exc)
            return
        if done:
            self._settle(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._broken = True
        answer = self._answer
        if answer is None:
            return
        try:
            ended = answer.closed()
        except ProtocolError as cut:
            self._settle(cut)
            return
        why = exc or ServerDisconnected("the app's server closed the connection without answering")
        self._settle(None if ended else (why if answer.began else ServerDisconnected(str(why))))

    def close(self) -> None:
        self._broken = True
        if self.transport is not None:
            self.transport.close()

    def _settle(self, failure: BaseException | None) -> None:
        answer, waiter = self._answer, self._waiter
        self._answer = self._waiter = None
        if waiter is None or waiter.done() or answer is None:
            return
        if failure is None:
            self.served += 1
            waiter.set_result(answer)
        else:
            self._broken = True
            waiter.set_exception(failure)


class H1Driver:
    """Pooled HTTP/1.1 to ``http://`` apps; other URLs go to ``fallback`` (HTTPS)."""

    def __init__(self, fallback: Driver, *, max_bytes: int, max_connections: int = 200) -> None:
        self.fallback = fallback
        self.max_bytes = max_bytes
        self._idle: dict[Origin, collections.deque[H1Connection]] = {}
        self._limit = max_connections
        self._slots: asyncio.Semaphore | None = None

    async def request(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> RawResponse:
        """POST/PUT/GET ``url``; errors (refused, reset, timeout) become ``error``."""
        try:
            split = split_url(url)
        except ValueError as exc:
            return RawResponse(0, {}, b"", error=f"InvalidURL: {exc}")
        if split is None:
            return await self.fallback.request(method, url, body, headers, timeout)
        origin, target = split
        try:
            head = request_head(method, target, origin, headers, body, encodings="gzip")
        except ValueError as exc:  # ProtocolError, UnicodeEncodeError: not sent
            return RawResponse(0, {}, b"", error=f"InvalidRequest: {exc}")
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._limit)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            async with self._slots:
                answer = await self._send(origin, head + body, method, deadline)
        except asyncio.TimeoutError:
            return RawResponse(0, {}, b"", error=f"ReadTimeout: no answer within {timeout:g}s")
        except AnswerTooLarge:
            return too_large(self.max_bytes)
        except (OSError, ProtocolError) as exc:
            return RawResponse(0, {}, b"", error=f"{type(exc).__name__}: {exc}".rstrip(": "))
        try:
            content = _decoded(answer, self.max_bytes)
        except AnswerTooLarge:
            return too_large(self.max_bytes)
        except zlib.error as exc:
            return RawResponse(0, {}, b"", error=f"DecodeError: {exc}")
        return RawResponse(answer.status, answer.headers, content)

    async def _send(
        self, origin: Origin, data: bytes, method: str, deadline: float
    ) -> AnswerReader:
        conn = self._take(origin)
        if conn is not None:
            try:
                return await self._exchange(origin, conn, data, method, deadline)
            except ServerDisconnected:
                pass  # closed by the app's server while idle: sent again on a new one, once
        conn = await self._connect(origin, deadline)
        return await self._exchange(origin, conn, data, method, deadline)

    async def _exchange(
        self, origin: Origin, conn: H1Connection, data: bytes, method: str, deadline: float
    ) -> AnswerReader:
        loop = asyncio.get_running_loop()
        waiter = conn.exchange(data, AnswerReader(method, max_body=self.max_bytes, go_framing=True))
        timer = loop.call_at(deadline, _expire, waiter)
        try:
            answer = await waiter
        except BaseException:
            conn.close()
            raise
        finally:
            timer.cancel()
        if answer.keep and not answer.extra and conn.usable:
            self._give(origin, conn)
        else:
            conn.close()
        return answer

    def _take(self, origin: Origin) -> H1Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if conn.usable:
                return conn
        return None

    def _give(self, origin: Origin, conn: H1Connection) -> None:
        idle = self._idle.setdefault(origin, collections.deque())
        if len(idle) < MAX_IDLE:
            idle.append(conn)
        else:
            conn.close()

    async def _connect(self, origin: Origin, deadline: float) -> H1Connection:
        loop = asyncio.get_running_loop()
        left = max(deadline - loop.time(), 0.0)
        made = loop.create_connection(H1Connection, origin[0], origin[1])
        _, conn = await asyncio.wait_for(made, left)
        return conn

    async def close(self) -> None:
        """Close the pool and the fallback's."""
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()
        await self.fallback.close()


def _expire(waiter: asyncio.Future[AnswerReader]) -> None:
    if not waiter.done():
        waiter.set_exception(asyncio.TimeoutError())


def _decoded(answer: AnswerReader, limit: int) -> bytes:
    """The body, its ``gzip`` or ``deflate`` coding undone (at most ``limit`` bytes).

    Raises:
        AnswerTooLarge: the decoded body is longer than ``limit``.
        zlib.error: the body is not what its coding says.
    """
    coding = answer.headers.get("content-encoding", "").strip().lower()
    if coding in ("", "identity"):
        return answer.body
    if coding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif coding == "deflate":  # a zlib stream, or (as some servers send) a raw one
        wbits = zlib.MAX_WBITS if answer.body[:1] == b"\x78" else -zlib.MAX_WBITS
    else:
        return answer.body  # a coding not asked for and not known: as it came
    inflater = zlib.decompressobj(wbits)
    parts, size, pending = [], 0, answer.body
    while pending:
        part = inflater.decompress(pending, _BUFSIZE)
        size += len(part)
        if size > limit:
            raise AnswerTooLarge(f"the decoded answer is longer than {limit} bytes")
        parts.append(part)
        pending = inflater.unconsumed_tail
    return b"".join([*parts, inflater.flush()])
