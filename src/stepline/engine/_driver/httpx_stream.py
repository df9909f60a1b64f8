"""httpx connections as the engine needs them: lenient framing, and a record of each use.

The twin of ``aioconn`` for the httpx fallback driver: httpcore has no parser hook, so
its network backend is wrapped, and each connection's stream

* passes every answer's bytes through ``HeadFilter`` before h11 sees them (an HTTP/1.0
  answer's Transfer-Encoding is ignored, as Go's ``net/http`` does: see ``framing``);
* notes on the sending task's ``Exchange`` whether the connection had carried a request
  before and whether any byte of the answer arrived.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from stepline.engine._driver.exchange import Exchange, current
from stepline.engine._driver.framing import HeadFilter


class _Stream(httpcore.AsyncNetworkStream):
    """A connection whose answers are read through ``HeadFilter``."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._filter = HeadFilter()
        self._reading = False
        self._requests = 0
        self._exchange: Exchange | None = None

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if self._reading or not self._requests:  # a request's first bytes
            self._reading = False
            self._filter = HeadFilter()  # the next bytes read start a new answer
            self._requests += 1
            self._exchange = current.get()
            if self._exchange is not None:
                self._exchange.reused = self._requests > 1
        await self._inner.write(buffer, timeout)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self._reading = True
        while True:
            data = await self._inner.read(max_bytes, timeout)
            if not data:
                return self._filter.flush()  # b"" (the close) once nothing is held
            if self._exchange is not None:
                self._exchange.answered = True
            passed = self._filter.feed(data)
            if passed:
                return passed

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.AsyncNetworkBackend):
    """Opens connections with ``inner`` and wraps each in ``_Stream``."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _Stream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def lenient(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """``client``, its direct connections reading answers through ``HeadFilter``.

    The pool's backend is httpcore's ``_network_backend`` (httpx has no parameter for it,
    and passing a transport of our own would drop the proxies httpx reads from the
    environment).
    """
    transport: Any = client._transport
    pool: Any = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore.AsyncNetworkBackend):
        pool._network_backend = _Backend(backend)
    return client
