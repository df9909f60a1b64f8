"""One request's use of a pooled connection, as the connection reports it.

A request that fails on a connection taken from the pool, before any byte of an answer
arrived, met a connection the app's server had closed while it was idle (its keep-alive
ran out as the engine reused it): Go's ``net/http`` sends such a request again on a new
connection, and so do the engine's drivers (``sent``). Their connections (``aioconn``'s
protocol, ``httpx_stream``'s stream) fill in the ``Exchange`` of the task sending the
request, which tells such a connection from a failure an app caused.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable

from stepline.engine._wire.response import RawResponse

logger = logging.getLogger("stepline.engine")


@dataclasses.dataclass
class Exchange:
    """One request's use of a connection, filled in by the connection."""

    #: The connection had carried an earlier request (it came from the pool).
    reused: bool = False
    #: At least one byte of the answer arrived.
    answered: bool = False


#: The exchange of the request the current task is sending (read by the connection when
#: it is handed the request, which happens in the sending task).
current: contextvars.ContextVar[Exchange | None] = contextvars.ContextVar(
    "stepline_exchange", default=None
)


#: One try of a request: ``send(fresh, timeout)``, on a new connection when ``fresh``; the
#: answer, and the exception that made it a failure (if one did).
Send = Callable[[bool, float], Awaitable[tuple[RawResponse, BaseException | None]]]


async def sent(
    send: Send,
    stale: Callable[[Exchange, BaseException | None], bool],
    *,
    timeout: float,
    what: str,
) -> RawResponse:
    """A request's answer: sent once, and once more on a new connection when ``stale``
    says the first try met a pooled connection the app's server had closed while idle
    (not the app's failure, so no attempt is spent on it), within ``timeout`` in all."""
    exchange = Exchange()
    token = current.set(exchange)
    try:
        started = time.monotonic()
        answer, failure = await send(False, timeout)
        if stale(exchange, failure):
            logger.debug("%s: %s on a reused connection, sent again", what, failure)
            left = max(timeout - (time.monotonic() - started), 0.001)
            answer, _ = await send(True, left)
        return answer
    finally:
        current.reset(token)
