"""The stream reader's flow (``stepline._api.streams``), driven by hand with ``.send()``.

No engine here: these pin the requests it builds, how it reads pages, and its retries
from the last sequence number seen. ``test_stream_client.py`` reads real engines.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import pytest

import stepline
from stepline import _settings
from stepline._api import streams
from stepline._transport import effects

SETTINGS = _settings.resolve(
    app_id="shop", environ={}, is_production=False, api_base_url="http://engine"
)


def page(data: list[dict[str, Any]], next_seq: int, ended: bool) -> effects.HttpResponse:
    body = json.dumps({"data": data, "next": next_seq, "ended": ended}).encode()
    return effects.HttpResponse(200, {"content-type": "application/json"}, body)


def message(seq: int, topic: str = "progress") -> dict[str, Any]:
    return {"seq": seq, "topic": topic, "data": {"n": seq}, "at": 1700000000.5}


def refused() -> effects.HttpResponse:
    return effects.HttpResponse(0, {}, b"", error="ConnectError: connection refused")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def query_of(request: effects.HttpRequest) -> dict[str, str]:
    parsed = urllib.parse.urlsplit(request.url)
    assert parsed.path == "/v1/runs/01RUN/stream"
    return dict(urllib.parse.parse_qsl(parsed.query))


def test_a_page_is_one_long_poll_and_its_messages() -> None:
    flow = streams.page_flow(SETTINGS, "01RUN", after=3, topic="progress", wait=25)
    request = next(flow)
    assert isinstance(request, effects.HttpRequest)
    assert request.method == "GET"
    assert query_of(request) == {"after": "3", "limit": "500", "topic": "progress", "wait": "25"}
    assert request.timeout == 35  # longer than the engine holds it
    with pytest.raises(StopIteration) as stop:
        # a message at or before ``after`` is not handed out again
        flow.send(page([message(3), message(4), message(5)], 5, False))
    result: streams.StreamPage = stop.value.value
    assert [m.seq for m in result.messages] == [4, 5]
    assert result.next == 5
    assert result.ended is False
    first = result.messages[0]
    assert isinstance(first, stepline.StreamMessage)
    assert (first.topic, first.data) == ("progress", {"n": 4})
    assert first.at.timestamp() == 1700000000.5
    assert first.at.tzinfo is not None
    assert first.to_json() == message(4)


def test_the_reader_retries_from_the_last_seq_with_backoff() -> None:
    clock = Clock()
    reader = streams.StreamReader(SETTINGS, "01RUN", topic=None, after=None, clock=clock)
    flow = reader.next_page()
    assert query_of(next(flow))["after"] == "0"
    with pytest.raises(StopIteration) as stop:
        flow.send(page([message(1), message(2)], 2, False))
    assert [m.seq for m in stop.value.value] == [1, 2]
    assert (reader.after, reader.done) == (2, False)

    flow = reader.next_page()
    next(flow)
    sleeps = []
    effect = flow.send(refused())  # the engine restarts: connection refused
    for status in (503, 0, 502):
        assert isinstance(effect, effects.Sleep)
        sleeps.append(effect.seconds)
        clock.now += effect.seconds
        request = flow.send(None)
        assert query_of(request)["after"] == "2"  # resumes where it was
        body = b'{"error": "starting"}' if status else b""
        effect = flow.send(effects.HttpResponse(status, {}, body, error=None))
    assert isinstance(effect, effects.Sleep)
    assert sleeps == [0.1, 0.2, 0.4]
    flow.send(None)
    with pytest.raises(StopIteration) as stop:
        flow.send(page([message(3)], 3, True))
    assert [m.seq for m in stop.value.value] == [3]
    assert (reader.after, reader.done) == (3, True)


def test_the_reader_gives_up_after_reconnect_for_naming_where_to_resume() -> None:
    clock = Clock()
    reader = streams.StreamReader(
        SETTINGS, "01RUN", topic="t", after=7, clock=clock, reconnect_for=5.0
    )
    flow = reader.next_page()
    next(flow)
    effect = flow.send(refused())
    with pytest.raises(stepline.ManagementError) as failed:  # noqa: PT012
        while True:
            assert isinstance(effect, effects.Sleep)
            assert effect.seconds <= 2.0
            clock.now += effect.seconds
            next_request = flow.send(None)
            assert query_of(next_request)["after"] == "7"
            effect = flow.send(refused())
    assert clock.now == pytest.approx(105.0)
    text = str(failed.value)
    assert "run 01RUN" in text
    assert "http://engine" in text
    assert "5s" in text
    assert "stream(after=7)" in text
    assert "connection refused" in text


@pytest.mark.parametrize(
    ("status", "error"),
    [(404, stepline.RunNotFoundError), (400, stepline.ManagementError)],
)
def test_a_non_transient_answer_is_raised_at_once(status: int, error: type[Exception]) -> None:
    reader = streams.StreamReader(SETTINGS, "01RUN", topic=None, after=None, clock=Clock())
    flow = reader.next_page()
    next(flow)
    with pytest.raises(error) as raised:
        flow.send(effects.HttpResponse(status, {}, b'{"error": "nope"}'))
    assert "nope" in str(raised.value)


@pytest.mark.parametrize("after", ["3", 2.5, True])
def test_after_must_be_a_sequence_number(after: Any) -> None:
    with pytest.raises(TypeError, match="after: want a sequence number"):
        streams.StreamReader(SETTINGS, "01RUN", topic=None, after=after, clock=Clock())
