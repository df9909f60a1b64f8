"""Effects yielded by I/O-interleaved logic, and the sync and async drivers that run them.

Logic that needs I/O halfway through is written once, as a generator that yields an
effect and receives its result (the httpx ``auth_flow`` pattern). ``drive_sync`` and
``drive_async`` run such a generator with blocking or awaitable performers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

Flow = Generator[Any, Any, T]


@dataclasses.dataclass(frozen=True, slots=True)
class HttpRequest:
    """An outgoing HTTP request (to the engine's API or event API).

    ``value`` is the JSON body before encoding, for a performer that answers in process
    (an embedded engine) and need not parse ``body`` again.
    """

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None = None
    timeout: float = 30.0
    value: Any = None


@dataclasses.dataclass(frozen=True, slots=True)
class HttpResponse:
    """The answer to an ``HttpRequest``; ``status`` 0 means a network failure."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    error: str | None = None
    #: the decoded JSON body, when an in-process performer answered without encoding it
    value: Any = None

    @property
    def ok(self) -> bool:
        """True for 2xx responses."""
        return 200 <= self.status < 300

    @property
    def retry_after(self) -> float | None:
        """The seconds the ``Retry-After`` header asks to wait; None without one.

        An HTTP date, or anything else that is not a number of seconds, is None too.
        """
        value = self.headers.get("retry-after", "").strip()
        if not value.isascii() or not value.replace(".", "", 1).isdigit():
            return None
        return float(value)


@dataclasses.dataclass(frozen=True, slots=True)
class Sleep:
    """Wait before the next attempt (retry backoff)."""

    seconds: float


def drive_sync(flow: Flow[T], perform: Callable[[Any], Any]) -> T:
    """Run ``flow`` to completion, performing each effect with a blocking call."""
    try:
        effect = next(flow)
        while True:
            effect = flow.send(perform(effect))
    except StopIteration as stop:
        result: T = stop.value
        return result


async def drive_async(flow: Flow[T], perform: Callable[[Any], Awaitable[Any]]) -> T:
    """Run ``flow`` to completion, awaiting each effect."""
    try:
        effect = next(flow)
        while True:
            effect = flow.send(await perform(effect))
    except StopIteration as stop:
        result: T = stop.value
        return result
