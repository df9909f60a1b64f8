"""The kit's events flow (``stepline._webkit.events``) driven by hand: a scripted engine.

Pins the order of what the route sends (messages before the final result, ids on message
events only), where it resumes, and ``Last-Event-ID`` parsing. The flow's feed effects go
to a ``Feeds`` whose feed thread asks the same scripted engine. The frameworks' routes
over real engines are in ``tests/web/test_kit_stream.py``.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import pytest

from stepline import _settings
from stepline._api.runs import RunInfo
from stepline._transport import effects as _effects
from stepline._webkit import events as _kit_events
from stepline._webkit import feed as _kit_feed

SETTINGS = _settings.resolve(
    app_id="shop", environ={}, is_production=False, api_base_url="http://engine"
)


def ok(body: object) -> _effects.HttpResponse:
    return _effects.HttpResponse(200, {}, json.dumps(body).encode())


def run_view(status: str) -> dict[str, Any]:
    return {"run_id": "01RUN", "function_id": "shop-report", "status": status}


def message(seq: int) -> dict[str, Any]:
    return {"seq": seq, "topic": "progress", "data": seq, "at": 1700000000.0}


class Engine:
    """Answers the flow's requests from a script: the run's status and its messages."""

    def __init__(self, messages: list[dict[str, Any]], statuses: list[str]) -> None:
        self.messages = messages
        self.statuses = statuses
        self.reads: list[dict[str, str]] = []

    def answer(self, request: _effects.HttpRequest) -> _effects.HttpResponse:
        url = urllib.parse.urlsplit(request.url)
        if url.path.endswith("/steps"):
            return ok({"data": []})
        if url.path.endswith("/stream"):
            query = dict(urllib.parse.parse_qsl(url.query))
            self.reads.append(query)
            after = int(query["after"])
            ended = self.statuses[0] != "Running"
            page = [m for m in self.messages if m["seq"] > after][:2]  # small pages
            last = page[-1]["seq"] if page else after
            left = any(m["seq"] > last for m in self.messages)
            return ok({"data": page, "next": last, "ended": ended and not left})
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return ok({"data": run_view(status)})


class Clock:
    """Moves 0.1 s each time it is read (the engine answers at once here)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.1
        return self.now


def drive(flow: _effects.Flow[None], engine: Engine) -> list[bytes]:
    chunks: list[bytes] = []
    feeds = _kit_feed.Feeds(poll_interval=0.01, max_readers_per_run=1, max_readers_per_caller=1)
    try:
        effect = next(flow)
        while True:
            if isinstance(effect, _kit_feed.Join | _kit_feed.Wait):
                effect = flow.send(feeds.perform_sync(effect, engine.answer))  # type: ignore[arg-type]
            elif isinstance(effect, _kit_events.Chunk):
                chunks.append(effect.data)
                effect = next(flow)
            elif isinstance(effect, _effects.Sleep):
                effect = flow.send(None)
            else:
                effect = flow.send(engine.answer(effect))
    except StopIteration:
        return chunks


def parsed(chunks: list[bytes]) -> list[tuple[str | None, str, Any]]:
    """``(id, event, data)`` of each event (comments and ``retry`` left out)."""
    events = []
    for chunk in chunks:
        fields = dict(
            line.split(": ", 1) for line in chunk.decode().splitlines() if ": " in line[:8]
        )
        if "event" in fields:
            events.append((fields.get("id"), fields["event"], json.loads(fields["data"])))
    return events


def test_every_message_is_sent_before_the_result_each_with_its_id() -> None:
    engine = Engine([message(n) for n in range(1, 6)], ["Running", "Completed"])
    flow = _kit_events.events_flow(SETTINGS, RunInfo.from_wire(run_view("Running")), clock=Clock())
    events = parsed(drive(flow, engine))
    assert events[0][1] == "status"
    sent = [(i, d["seq"]) for i, name, d in events if name == "message"]
    assert sent == [(str(n), n) for n in range(1, 6)]
    assert events[-1][1] == "result"
    assert all(i is None for i, name, _ in events if name != "message")


def test_resumes_after_the_given_seq_and_filters_by_topic() -> None:
    engine = Engine([message(n) for n in range(1, 6)], ["Completed"])
    flow = _kit_events.events_flow(
        SETTINGS, RunInfo.from_wire(run_view("Completed")), after=1, topic="progress", clock=Clock()
    )
    events = parsed(drive(flow, engine))
    # the run had ended: every message left (two pages) comes before the result
    assert [d["seq"] for _, name, d in events if name == "message"] == [2, 3, 4, 5]
    # the run's feed reads from the first reader's place, every topic: readers filter
    assert engine.reads[0]["after"] == "1"
    assert "topic" not in engine.reads[0]
    assert [name for _, name, _ in events] == ["status"] + ["message"] * 4 + ["result"]


@pytest.mark.parametrize(
    ("query", "headers", "expected"),
    [
        ({}, {}, (0, None)),
        ({"after": "4"}, {}, (4, None)),
        ({"after": "4"}, {"last-event-id": "9"}, (9, None)),  # the browser's own wins
        ({"topic": "a.b:c/d-e_f"}, {}, (0, "a.b:c/d-e_f")),
        ({"after": "-1"}, {}, "after: want the sequence number of a message (0 or more)"),
        ({}, {"last-event-id": "x"}, "Last-Event-ID: want the sequence number"),
        ({"topic": "no spaces"}, {}, "topic: want 1-128 characters"),
        ({"topic": "t" * 129}, {}, "topic: want 1-128 characters"),
    ],
)
def test_stream_position(query: dict[str, str], headers: dict[str, str], expected: Any) -> None:
    found = _kit_events.stream_position(query, headers)
    if isinstance(expected, str):
        assert isinstance(found, str)
        assert found.startswith(expected)
    else:
        assert found == expected
