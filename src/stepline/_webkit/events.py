"""The web-app kit's live events route: a run's progress and stream as Server-Sent Events.

``GET {mount}/runs/{run_id}/events`` answers ``text/event-stream``::

    retry: 2000
    event: status   the run (status, output or error, timestamps): first, then on changes
    event: step     a step that started, changed status or was retried
    id: <seq>
    event: message  a message the run published: {"seq", "topic", "data", "at"}
    event: result   the run once it has ended, after every message was sent; then the end
    event: error    the engine failed mid-stream (the stream ends)

Only ``message`` events carry an ``id``, so a browser's ``EventSource`` reconnects with
``Last-Event-ID`` set to the last message it got: the stream resumes after it (no gap, no
duplicate), while ``status`` and ``step`` events are sent again as the current state (they
describe a state, so a repeat is harmless). ``?after=<seq>`` does the same on a first
connection, ``?topic=<t>`` keeps the messages of one topic.

The route is one flow of effects (``events_flow``). It joins the run's feed
(``_kit_feed``): one look at the run, its steps and its stream per ``poll_interval`` for
every reader of the run in this process, not one per reader. It sends what is new to it
in each newer snapshot, reads itself only the messages it lacks before the feed's page,
and holds at most one page of them at a time.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable, Mapping

from stepline import _settings
from stepline._api import runs as _runs
from stepline._api import streams
from stepline._api.runs import RunInfo
from stepline._transport import effects as _effects
from stepline._webkit import feed as _kit_feed

__all__ = ["SSE_HEADERS", "Chunk", "events_flow", "next_chunk", "stream_position"]

logger = logging.getLogger("stepline.web")

SSE_HEADERS = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",  # nginx: do not buffer the stream
}
_TOPIC = re.compile(r"^[A-Za-z0-9_.:/-]{1,128}$")
_SEQ = re.compile(r"^[0-9]{1,18}$")


@dataclasses.dataclass(frozen=True, slots=True)
class Chunk:
    """Bytes for the client: yielded by the events flow between its I/O effects."""

    data: bytes


def stream_position(
    query: Mapping[str, str], headers: Mapping[str, str]
) -> tuple[int, str | None] | str:
    """Where a reader resumes, and its topic: ``(after, topic)``, or what is wrong with them.

    ``Last-Event-ID`` (what ``EventSource`` sends when it reconnects) wins over ``?after=``.
    """
    topic = query.get("topic") or None
    if topic is not None and not _TOPIC.match(topic):
        return "topic: want 1-128 characters of A-Z a-z 0-9 _ . : / -"
    last = headers.get("last-event-id", "").strip()
    after = last or query.get("after", "").strip()
    if not after:
        return 0, topic
    if not _SEQ.match(after):
        source = "Last-Event-ID" if last else "after"
        return f"{source}: want the sequence number of a message (0 or more)"
    return int(after), topic


def events_flow(
    settings: _settings.Settings,
    run: RunInfo,
    *,
    after: int = 0,
    topic: str | None = None,
    keepalive: float = 15.0,
    clock: Callable[[], float] = time.monotonic,
    on_close: Callable[[], None] = lambda: None,
) -> _effects.Flow[None]:
    """The events of ``run`` until it ends (see the module); yields ``Chunk``s and effects.

    Its effects are the feed's (``_kit_feed.Join`` and ``Wait``) and HTTP requests. The
    response has started by now, so an engine failure ends the stream with an ``error``
    event rather than a status. ``on_close`` is called once the flow ends or is closed.
    """
    events = _Events(settings, run=run, after=after, topic=topic, keepalive=keepalive, clock=clock)
    try:
        yield from events.run()
    except _runs.ManagementError as exc:
        logger.error("events of run %s: engine error: %s", run.run_id, exc)
        yield Chunk(_sse("error", {"error": f"the workflow engine failed: {exc.message}"}))
    finally:
        on_close()


def next_chunk(stream: _effects.Flow[None]) -> _effects.Flow[bytes | None]:
    """The part of ``stream`` up to its next chunk, as a flow the drivers run.

    Its I/O effects pass through to the driver; it returns the chunk's bytes, or None
    once ``stream`` has ended. Pure: the sync and async faces drive the same one.
    """
    try:
        effect = next(stream)
        while not isinstance(effect, Chunk):
            effect = stream.send((yield effect))
    except StopIteration:
        return None
    return effect.data


class _Events:
    """The state of one events stream: steps seen, the run's status, the last message sent."""

    def __init__(
        self,
        settings: _settings.Settings,
        *,
        run: RunInfo,
        after: int,
        topic: str | None,
        keepalive: float,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.run_info = run
        self.after = after
        self.topic = topic
        self.keepalive = keepalive
        self.clock = clock
        self.seen: dict[str, str] = {}
        self.sent_at = clock()

    def chunk(self, data: bytes) -> Chunk:
        self.sent_at = self.clock()
        return Chunk(data)

    def run(self) -> _effects.Flow[None]:
        yield Chunk(b"retry: 2000\n\n")
        yield self.chunk(_sse("status", self.run_info.to_json()))
        status = self.run_info.status
        feed: _kit_feed.Feed = yield _kit_feed.Join(self.settings, self.run_info.run_id, self.after)
        try:
            version = 0
            while True:
                silence = max(self.keepalive - (self.clock() - self.sent_at), 0.0)
                snapshot: _kit_feed.Snapshot = yield _kit_feed.Wait(feed, version, silence)
                if snapshot.version == version:  # nothing new for ``keepalive`` seconds
                    yield self.chunk(b": keepalive\n\n")
                    continue
                version = snapshot.version
                yield from self.messages(snapshot)
                for step in snapshot.steps:
                    state = f"{step.status}:{step.attempts}"
                    if self.seen.get(step.id) != state:
                        self.seen[step.id] = state
                        yield self.chunk(_sse("step", step.to_json()))
                if snapshot.run is not None:
                    self.run_info = snapshot.run
                if self.run_info.status is not status:
                    status = self.run_info.status
                    yield self.chunk(_sse("status", self.run_info.to_json()))
                if snapshot.error is not None:  # what the feed knew is sent, then the error
                    raise snapshot.error
                if snapshot.done:  # every message was sent: the feed read them to the end
                    yield self.chunk(_sse("result", self.run_info.to_json()))
                    return
        finally:
            feed.leave()

    def messages(self, snapshot: _kit_feed.Snapshot) -> _effects.Flow[None]:
        """The messages of ``snapshot`` not sent yet, after those before it this reader lacks."""
        while self.after < snapshot.lo:  # behind the feed's page: read on alone up to it
            page = yield from self.read()
            if not page.messages:  # none (of the topic) left before the feed's page
                self.after = snapshot.lo
        for message, event in zip(snapshot.messages, snapshot.events, strict=True):
            if message.seq > self.after and self.topic in (None, message.topic):
                yield self.chunk(event)  # encoded once by the feed, for every reader
        self.after = max(self.after, snapshot.hi)

    def read(self) -> _effects.Flow[streams.StreamPage]:
        page = yield from streams.page_flow(
            self.settings, self.run_info.run_id, after=self.after, topic=self.topic
        )
        for message in page.messages:  # one page held at a time, sent as it was read
            yield self.chunk(_sse("message", message.to_json(), event_id=message.seq))
        self.after = page.next
        return page


_sse = _kit_feed.sse
