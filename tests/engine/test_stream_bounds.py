"""What a reader of a run's stream can make the engine hold: pages bounded by bytes, and
readers bounded per run and per caller, on SQLite and Postgres.

A page stops before the message that would take its data past ``PAGE_BYTES`` (its first
message always comes, however large), so a page of large messages is about a MiB, not
``limit`` of them; a run and a caller have a bounded number of readers at once, and one
more gets a 429 saying which bound and how to change it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from stepline._status import RunStatus
from stepline.engine import Engine
from stepline.engine._store.messages import NewMessage
from stepline.engine._streams.service import StreamService
from tests._support.polling import wait_until

from .test_api import api
from .test_streams import RUN, msg, portal, publish, read, seed, sse_events

#: the engine's bound on a page's message data (``service.PAGE_BYTES``)
PAGE_BYTES = 1024 * 1024
#: a message's data: a string of this many characters is that many bytes of JSON, plus 2
BIG = 300 * 1024


def big(n: int, size: int = BIG) -> dict[str, Any]:
    return msg("bulk", f"{n:06d}".ljust(size - 2, "x"))


@pytest.fixture
def large(db: str) -> Iterator[tuple[TestClient, Engine]]:
    settings = {"max_stream_message_bytes": 2 * PAGE_BYTES, "max_body_bytes": 8 * PAGE_BYTES}
    with api(db, **settings) as (client, engine):
        seed(client, engine)
        yield client, engine


@pytest.mark.slow
def test_a_page_of_large_messages_stops_at_its_byte_bound(
    large: tuple[TestClient, Engine],
) -> None:
    client, _engine = large
    for first in range(0, 10, 5):
        answer = publish(client, *(big(n) for n in range(first, first + 5)))
        assert answer.status_code == 200, answer.text
    seen: list[int] = []
    after = 0
    while True:
        page = read(client, after=after, limit=1000)
        sizes = [len(m["data"]) + 2 for m in page["data"]]
        assert sum(sizes) <= PAGE_BYTES, sizes  # not the 1,000 messages asked for
        assert len(page["data"]) == PAGE_BYTES // BIG
        seen += [m["seq"] for m in page["data"]]
        after = page["next"]
        if len(seen) >= 9:
            break
    rest = read(client, after=after, limit=1000)
    assert [m["seq"] for m in rest["data"]] == [10]
    assert [*seen, 10] == list(range(1, 11))


def test_a_message_over_the_page_bound_comes_alone(large: tuple[TestClient, Engine]) -> None:
    client, _engine = large
    huge = PAGE_BYTES + PAGE_BYTES // 2
    answer = publish(client, big(1, huge), big(2, 1000), big(3, huge))
    assert answer.status_code == 200, answer.text
    first = read(client, limit=1000)
    assert [m["seq"] for m in first["data"]] == [1]
    second = read(client, after=1, limit=1000)
    assert [m["seq"] for m in second["data"]] == [2]  # 3 would take it past the bound
    third = read(client, after=2, limit=1000)
    assert [m["seq"] for m in third["data"]] == [3]
    assert not third["ended"]  # the run is running


def test_the_sse_form_sends_every_large_message_once_in_order(db: str) -> None:
    settings = {"max_body_bytes": 8 * PAGE_BYTES}
    with api(db, **settings) as (client, engine):
        seed(client, engine, status=RunStatus.COMPLETED)
        # as if published while it ran: the store takes them as they are
        record_messages(client, engine, 12)
        answer = client.get(f"/v1/runs/{RUN}/stream", headers={"accept": "text/event-stream"})
        events = sse_events(answer.text)
        seqs = [int(e["id"]) for e in events if e.get("event") == "message"]
        assert seqs == list(range(1, 13))
        assert events[-1]["event"] == "end"


def record_messages(client: TestClient, engine: Engine, count: int) -> None:
    data = '"' + "y" * (BIG - 2) + '"'
    messages = [NewMessage("bulk", data) for _ in range(count)]
    portal(client).call(
        engine.store.atomic, lambda tx: tx.messages.append_messages(RUN, messages, 1.0)
    )


def _hold(client: TestClient, run_id: str, results: list[int]) -> threading.Thread:
    """A JSON long-poll of ``run_id`` held until a message comes (or 10 s)."""

    def poll() -> None:
        answer = client.get(f"/v1/runs/{run_id}/stream", params={"wait": 10})
        results.append(answer.status_code)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    return thread


def test_readers_past_the_bound_of_a_run_get_a_429_naming_it(db: str) -> None:
    with api(db, max_stream_readers_per_run=2) as (client, engine):
        seed(client, engine)
        readers = StreamService.of(engine).readers
        results: list[int] = []
        held = [_hold(client, RUN, results) for _ in range(2)]
        wait_until(lambda: readers.count(RUN) == 2, message="two readers to wait")
        refused = client.get(f"/v1/runs/{RUN}/stream", params={"wait": 1})
        assert refused.status_code == 429, refused.text
        error = refused.json()["error"]
        assert "2 stream readers" in error
        assert "--max-stream-readers-per-run" in error
        assert "STEPLINE_MAX_STREAM_READERS_PER_RUN" in error
        sse = client.get(f"/v1/runs/{RUN}/stream", headers={"accept": "text/event-stream"})
        assert sse.status_code == 429  # the SSE form counts the same readers
        assert publish(client, msg("t", 1)).status_code == 200  # the long-polls answer
        for thread in held:
            thread.join(10)
        assert results == [200, 200]
        assert readers.count(RUN) == 0
        assert read(client, wait=0)["data"]  # a reader gets in again


def test_readers_past_the_bound_of_a_caller_get_a_429_naming_it(db: str) -> None:
    with api(db, max_stream_readers_per_caller=2) as (client, engine):
        runs = [f"01RUNSTREAMCALLER000000000{n}" for n in range(3)]
        for run_id in runs:
            seed(client, engine, run_id)
        readers = StreamService.of(engine).readers
        results: list[int] = []
        held = [_hold(client, run_id, results) for run_id in runs[:2]]
        wait_until(
            lambda: readers.count(runs[0]) + readers.count(runs[1]) == 2,
            message="two readers to wait",
        )
        refused = client.get(f"/v1/runs/{runs[2]}/stream", params={"wait": 1})
        assert refused.status_code == 429, refused.text
        assert "--max-stream-readers-per-caller" in refused.json()["error"]
        for run_id in runs[:2]:
            assert publish(client, msg("t", 1), run_id=run_id).status_code == 200
        for thread in held:
            thread.join(10)
        assert results == [200, 200]
        assert client.get(f"/v1/runs/{runs[2]}/stream").status_code == 200


def test_an_sse_reader_that_leaves_lets_the_next_one_in(db: str) -> None:
    with api(db, max_stream_readers_per_run=1) as (client, engine):
        seed(client, engine, status=RunStatus.COMPLETED)
        readers = StreamService.of(engine).readers
        for _ in range(3):  # each stream ends (the run has), and gives its place back
            answer = client.get(f"/v1/runs/{RUN}/stream", headers={"accept": "text/event-stream"})
            assert answer.status_code == 200
            assert sse_events(answer.text)[-1]["event"] == "end"
            wait_until(lambda: readers.count(RUN) == 0, message="the reader to leave")
