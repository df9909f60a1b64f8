"""Reading a run's stream (the messages its function publishes) through the engine's REST API.

``page_flow`` is one long-poll of ``GET /v1/runs/{id}/stream``; ``StreamReader`` keeps a
reader's place (the last sequence number seen, whether the stream has ended) and turns
transient engine failures (connection refused while the engine restarts, a 502/503/504 from
a proxy) into retries with backoff from that place, for a bounded time. ``RunHandle.stream``
and ``SyncRunHandle.stream`` drive it with the async or blocking transport: the logic is
written once, as flows of effects.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from stepline import _settings
from stepline._api import runs as _runs
from stepline._transport import effects as _effects

__all__ = ["StreamMessage", "StreamPage", "StreamReader", "page_flow"]

#: The longest one long-poll asks the engine to hold a read (it allows 30 s).
WAIT_SECONDS = 25.0
#: How many messages one read asks for (the engine allows 1..1000).
PAGE_LIMIT = 500
#: Statuses that mean "the engine (or the proxy before it) is not there right now".
_TRANSIENT = frozenset({0, 502, 503, 504})
_FIRST_DELAY = 0.1
_MAX_DELAY = 2.0


@dataclasses.dataclass(frozen=True, slots=True)
class StreamMessage:
    """One message a run published on its stream.

    Attributes:
        seq: its place in the run's stream: 1, 2, 3... in publish (commit) order; pass the
            last one seen as ``after=`` to read on from there.
        topic: the topic it was published on (``"progress"``, ``"tokens"``...).
        data: the published value, decoded from JSON (a pydantic model or dataclass
            arrives as the dict it was serialised to).
        at: when the engine stored it (UTC).
    """

    seq: int
    topic: str
    data: Any
    at: dt.datetime

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> StreamMessage:
        """Read one message of the engine's ``GET /v1/runs/{id}/stream`` answer."""
        at = raw.get("at")
        seconds = float(at) if isinstance(at, int | float) else 0.0
        return cls(
            seq=int(raw["seq"]),
            topic=str(raw.get("topic", "")),
            data=raw.get("data"),
            at=dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc),
        )

    def to_json(self) -> dict[str, Any]:
        """The wire form again: ``{"seq", "topic", "data", "at"}`` (``at`` in epoch seconds)."""
        return {"seq": self.seq, "topic": self.topic, "data": self.data, "at": self.at.timestamp()}


@dataclasses.dataclass(frozen=True, slots=True)
class StreamPage:
    """One read of a run's stream.

    Attributes:
        messages: the messages after the ``after`` asked, in order.
        next: the ``after`` of the next read.
        ended: the run has ended and no message remains after ``next``.
    """

    messages: tuple[StreamMessage, ...]
    next: int
    ended: bool


def page_flow(
    settings: _settings.Settings,
    run_id: str,
    *,
    after: int,
    topic: str | None = None,
    wait: float = 0.0,
    limit: int = PAGE_LIMIT,
) -> _effects.Flow[StreamPage]:
    """One read of the run's stream after ``after``, held up to ``wait`` s for a message.

    Raises:
        RunNotFoundError: no run with that id.
        ManagementError: the engine is unreachable or answered something else.
    """
    query: dict[str, str] = {"after": str(after), "limit": str(limit)}
    if topic is not None:
        query["topic"] = topic
    if wait > 0:
        query["wait"] = f"{wait:g}"
    path = f"/v1/runs/{_runs.quote(run_id)}/stream?{urllib.parse.urlencode(query)}"
    raw = yield from _runs.call(settings, "GET", path, what=run_id, timeout=wait + 10, whole=True)
    items = raw.get("data")
    messages = tuple(
        StreamMessage.from_wire(item)
        for item in (items if isinstance(items, list) else ())
        if isinstance(item, Mapping) and int(item.get("seq", 0)) > after
    )
    following = raw.get("next")
    last = messages[-1].seq if messages else after
    next_after = following if isinstance(following, int) and following >= last else last
    return StreamPage(messages, next_after, bool(raw.get("ended")))


class StreamReader:
    """A reader's place in one run's stream, and the flow of its next page.

    Pure state: ``next_page()`` is a flow the sync or async face drives. A transient
    failure (the engine unreachable, or a 502/503/504) is retried from the last sequence
    number seen, backing off from 0.1 s to 2 s, for ``reconnect_for`` seconds in a row; then
    a ``ManagementError`` says so and where to resume. Messages at or before that place are
    never handed out twice.

    Attributes:
        after: the sequence number of the last message handed out (or the ``after`` given).
        done: the run has ended and every message was handed out.
    """

    def __init__(
        self,
        settings: _settings.Settings,
        run_id: str,
        *,
        topic: str | None,
        after: int | None,
        clock: Callable[[], float],
        reconnect_for: float = 60.0,
        wait: float = WAIT_SECONDS,
    ) -> None:
        if after is not None and (isinstance(after, bool) or not isinstance(after, int)):
            raise TypeError(f"after: want a sequence number (int), got {type(after).__name__}")
        self.settings = settings
        self.run_id = run_id
        self.topic = topic
        self.after = max(after or 0, 0)
        self.done = False
        self._clock = clock
        self._reconnect_for = reconnect_for
        self._wait = wait

    def next_page(self) -> _effects.Flow[tuple[StreamMessage, ...]]:
        """The next messages (long-polling until there are some, or the run ends)."""
        deadline: float | None = None
        delay = _FIRST_DELAY
        while True:
            try:
                page = yield from page_flow(
                    self.settings, self.run_id, after=self.after, topic=self.topic, wait=self._wait
                )
            except _runs.ManagementError as exc:
                if exc.http_status not in _TRANSIENT or isinstance(exc, _runs.RunNotFoundError):
                    raise
                now = self._clock()
                deadline = now + self._reconnect_for if deadline is None else deadline
                if now >= deadline:
                    raise _runs.ManagementError(
                        f"the stream of run {self.run_id} broke off: the engine at "
                        f"{self.settings.api_base_url} failed for {self._reconnect_for:g}s in a "
                        f"row ({exc.message}); read on with stream(after={self.after})",
                        status=exc.http_status,
                    ) from exc
                yield _effects.Sleep(min(delay, deadline - now))
                delay = min(delay * 2, _MAX_DELAY)
                continue
            self.after = page.next
            self.done = page.ended
            return page.messages
