"""aiohttp connections as the engine needs them: lenient framing, and a record of each use.

aiohttp has no public hook for either, so its connector is given a protocol factory of our
own (``TCPConnector._factory``, stable since aiohttp 3.0). The protocol

* passes each answer's bytes through ``HeadFilter`` (an HTTP/1.0 answer's
  Transfer-Encoding is ignored, as Go's ``net/http`` does: see ``_framing``);
* notes on the caller's ``Exchange`` whether the connection had served a request before
  and whether any byte of the answer arrived, which tells a stale pooled connection
  (closed by the app's server while idle) from a failure an app caused.
"""

from __future__ import annotations

import functools
from typing import Any, cast

import aiohttp
from aiohttp.client_proto import ResponseHandler

from stepline.engine._driver.exchange import Exchange, current
from stepline.engine._driver.framing import HeadFilter


class _Handler(ResponseHandler):
    """aiohttp's protocol, reading through ``HeadFilter`` and reporting to the exchange."""

    def __init__(self, loop: Any) -> None:
        super().__init__(loop)
        self._requests = 0
        self._exchange: Exchange | None = None
        self._filter = HeadFilter()

    def set_response_params(self, **kwargs: Any) -> None:
        self._requests += 1
        self._exchange = current.get()
        if self._exchange is not None:
            self._exchange.reused = self._requests > 1
        self._filter = HeadFilter()  # the next bytes start a new answer
        super().set_response_params(**kwargs)

    def data_received(self, data: bytes) -> None:
        if data and self._exchange is not None:
            self._exchange.answered = True
        passed = self._filter.feed(data)
        if passed or not data:  # no data: aiohttp resuming decompression
            super().data_received(passed)

    def connection_lost(self, exc: BaseException | None) -> None:
        held = self._filter.flush()
        if held:
            super().data_received(held)
        super().connection_lost(exc)


def connector(*, limit: int, fresh: bool = False) -> aiohttp.TCPConnector:
    """A pooling connector (``fresh``: one that never reuses a connection)."""
    made = aiohttp.TCPConnector(limit=limit, enable_cleanup_closed=True, force_close=fresh)
    made._factory = cast(
        "functools.partial[ResponseHandler]", functools.partial(_Handler, loop=made._loop)
    )
    return made
