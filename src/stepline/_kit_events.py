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

The route is one flow of effects (``events_flow``): it waits for messages with the
engine's long-poll (``GET /v1/runs/{id}/stream?wait=``), looks at the run and its steps
every ``poll_interval``, and holds one page of messages at a time.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from collections.abc import Callable, Mapping

from stepline import _effects, _runs, _settings, _streams
from stepline._runs import RunInfo

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
    poll_interval: float = 0.5,
    keepalive: float = 15.0,
    clock: Callable[[], float] = time.monotonic,
) -> _effects.Flow[None]:
    """The events of ``run`` until it ends (see the module); yields ``Chunk``s and I/O.

    The response has started by now, so an engine failure ends the stream with an
    ``error`` event rather than a status.
    """
    events = _Events(
        settings,
        run=run,
        after=after,
        topic=topic,
        poll_interval=poll_interval,
        keepalive=keepalive,
        clock=clock,
    )
    try:
        yield from events.run()
    except _runs.ManagementError as exc:
        logger.error("events of run %s: engine error: %s", run.run_id, exc)
        yield Chunk(_sse("error", {"error": f"the workflow engine failed: {exc.message}"}))


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
        poll_interval: float,
        keepalive: float,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.run_info = run
        self.after = after
        self.topic = topic
        self.poll_interval = poll_interval
        self.keepalive = keepalive
        self.clock = clock
        self.seen: dict[str, str] = {}
        self.sent_at = clock()

    def chunk(self, data: bytes) -> Chunk:
        self.sent_at = self.clock()
        return Chunk(data)

    def run(self) -> _effects.Flow[None]:
        run_id = self.run_info.run_id
        yield Chunk(b"retry: 2000\n\n")
        yield self.chunk(_sse("status", self.run_info.to_json()))
        status = self.run_info.status
        while True:
            steps = yield from _runs.steps_flow(self.settings, run_id)
            for step in steps:
                state = f"{step.status}:{step.attempts}"
                if self.seen.get(step.id) != state:
                    self.seen[step.id] = state
                    yield self.chunk(_sse("step", step.to_json()))
            if self.run_info.status is not status:
                status = self.run_info.status
                yield self.chunk(_sse("status", self.run_info.to_json()))
            if self.run_info.status.terminal:
                yield from self.drain()
                yield self.chunk(_sse("result", self.run_info.to_json()))
                return
            check_at = self.clock() + self.poll_interval
            while True:  # messages as they come until it is time to look at the run again
                if self.clock() - self.sent_at >= self.keepalive:
                    yield self.chunk(b": keepalive\n\n")
                wait = min(check_at - self.clock(), self.keepalive)
                page = yield from self.read(max(wait, 0.0))
                # nothing came (the long-poll ran out) or the run ended: look at the run
                if page.ended or not page.messages or self.clock() >= check_at:
                    break
            self.run_info = yield from _runs.get_flow(self.settings, run_id)

    def drain(self) -> _effects.Flow[None]:
        """Every message left once the run has ended (the final ``result`` comes after)."""
        while True:
            page = yield from self.read(0.0)
            if page.ended or not page.messages:
                return

    def read(self, wait: float) -> _effects.Flow[_streams.StreamPage]:
        page = yield from _streams.page_flow(
            self.settings, self.run_info.run_id, after=self.after, topic=self.topic, wait=wait
        )
        for message in page.messages:  # one page held at a time, sent as it was read
            yield self.chunk(_sse("message", message.to_json(), event_id=message.seq))
        self.after = page.next
        return page


def _sse(event: str, data: object, *, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
