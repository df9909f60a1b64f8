"""The kit's events route looks at a run once per interval, whatever its number of readers.

Twenty readers follow one run on the events route, async (FastAPI behind uvicorn) and
blocking (``RunRoutes.handle_sync`` and ``chunks_sync`` on threads, as a WSGI server
runs them). The client's transport counts the requests that reach the engine: while the
run waits, reading its status, its steps and its stream costs one request of each per
poll interval (plus a stream long-poll's early answers), not one per reader. Every
reader still gets every message once, in order, and the result. Past
``max_readers_per_run`` or ``max_readers_per_caller`` a reader gets a 429 naming it.
"""

from __future__ import annotations

import collections
import threading
import time
import typing
import urllib.parse
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import fastapi
import httpx
import pytest

import stepline
import stepline.fastapi
import stepline.web
from stepline._transport import effects
from tests._support.polling import wait_until
from tests._support.server_thread import serving

from .test_kit_stream import Kit, make_kit, parse, seqs

pytestmark = [pytest.mark.slow]

Streamed = Generator[bytes, None, None]


def empty() -> Streamed:
    yield from ()


READERS = 20
INTERVAL = 0.1
#: how long the requests are counted while the run waits (a window of real time)
WINDOW = 1.0


class Counting:
    """A client transport that counts the GETs reaching the engine, by what they read."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.counts: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()

    def _count(self, effect: object) -> None:
        if isinstance(effect, effects.HttpRequest) and effect.method == "GET":
            path = urllib.parse.urlsplit(effect.url).path
            kind = path.rsplit("/", 1)[-1] if path.endswith(("/steps", "/stream")) else "run"
            with self.lock:
                self.counts[kind] += 1

    def perform(self, effect: object) -> Any:
        self._count(effect)
        return self.inner.perform(effect)

    async def aperform(self, effect: object) -> Any:
        self._count(effect)
        return await self.inner.perform(effect)

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.counts)


class AsyncCounting:
    def __init__(self, counting: Counting) -> None:
        self.counting = counting

    async def perform(self, effect: object) -> Any:
        return await self.counting.aperform(effect)


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    made = make_kit(str(tmp_path / "e.db"))
    yield made
    made.engine.stop()


def counting(kit: Kit) -> Counting:
    count = Counting(kit.client.connection.sync_transport)
    kit.client.connection.sync_transport = count  # type: ignore[assignment]
    kit.client.connection.async_transport = AsyncCounting(  # type: ignore[assignment]
        Counting(kit.client.connection.async_transport)
    )
    count_async = kit.client.connection.async_transport.counting  # type: ignore[attr-defined]
    count_async.counts = count.counts  # one tally for both faces
    count_async.lock = count.lock
    return count


def wait_for_go(kit: Kit, run_id: str) -> None:
    handle = kit.client.get_run_sync(run_id)
    wait_until(
        lambda: any(s.name == "go" and s.status == "Waiting" for s in handle.steps()),
        message="the drip run to wait for kit/go",
    )


def polls_while_waiting(count: Counting) -> dict[str, int]:
    """The GETs of each kind the engine got in ``WINDOW`` seconds of a quiet run."""
    before = count.snapshot()
    time.sleep(WINDOW)  # counting what happens in a span of time: nothing to wait on
    after = count.snapshot()
    return {kind: after.get(kind, 0) - before.get(kind, 0) for kind in ("run", "steps", "stream")}


def assert_one_poll_per_interval(polled: dict[str, int]) -> None:
    rounds = WINDOW / INTERVAL
    print(f"\n{READERS} readers, {WINDOW:g} s at a {INTERVAL:g} s interval: engine GETs {polled}")
    # one run and one steps read per interval, one stream long-poll between them: with
    # slack for timing, far below READERS times as many
    assert polled["run"] <= rounds + 3, polled
    assert polled["steps"] <= rounds + 3, polled
    assert polled["stream"] <= 2 * rounds + 3, polled


def test_async_readers_of_a_run_share_one_poll(kit: Kit) -> None:
    count = counting(kit)
    app = fastapi.FastAPI()
    app.include_router(
        stepline.fastapi.runs_router(
            kit.client, [kit.drip], authorize=stepline.web.allow_all, poll_interval=INTERVAL
        )
    )
    with serving(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        run_id = http.post("/runs", json={"function": "drip"}).json()["run_id"]
        got: list[bytes] = [b""] * READERS

        def follow(n: int) -> None:
            with http.stream("GET", f"/runs/{run_id}/events") as stream:
                for chunk in stream.iter_bytes():
                    got[n] += chunk

        readers = [threading.Thread(target=follow, args=(n,)) for n in range(READERS)]
        for reader in readers:
            reader.start()
        wait_for_go(kit, run_id)
        wait_until(
            lambda: all(seqs(parse(g.rsplit(b"\n\n", 1)[0] + b"\n\n")) == [1, 2] for g in got),
            message="every reader to get the first two messages",
        )
        assert_one_poll_per_interval(polls_while_waiting(count))
        kit.client.send_sync(stepline.Event(name="kit/go", data={}))
        for reader in readers:
            reader.join(30)
        for raw in got:
            events = parse(raw)
            assert seqs(events) == [1, 2, 3, 4]
            assert events[-1].name == "result"
            assert events[-1].data["output"] == "dripped"


def test_blocking_readers_of_a_run_share_one_poll(kit: Kit) -> None:
    count = counting(kit)
    routes = stepline.web.RunRoutes(
        kit.client, [kit.drip], authorize=stepline.web.allow_all, poll_interval=INTERVAL
    )
    run_id = kit.client.start_sync(kit.drip, {}).run_id
    request = stepline.web.WebRequest("GET", f"/runs/{run_id}/events", {}, b"", None)
    got: list[bytes] = [b""] * READERS

    def follow(n: int) -> None:
        response = routes.handle_sync(request)
        assert response.status == 200
        for chunk in routes.chunks_sync(response):
            got[n] += chunk

    readers = [threading.Thread(target=follow, args=(n,)) for n in range(READERS)]
    for reader in readers:
        reader.start()
    wait_for_go(kit, run_id)
    wait_until(
        lambda: all(seqs(parse(g.rsplit(b"\n\n", 1)[0] + b"\n\n")) == [1, 2] for g in got),
        message="every reader to get the first two messages",
    )
    assert_one_poll_per_interval(polls_while_waiting(count))
    kit.client.send_sync(stepline.Event(name="kit/go", data={}))
    for reader in readers:
        reader.join(30)
    for raw in got:
        events = parse(raw)
        assert seqs(events) == [1, 2, 3, 4]
        assert events[-1].name == "result"


def test_readers_past_a_bound_get_a_429_naming_it(kit: Kit) -> None:
    def authorize(access: stepline.web.AccessRequest) -> stepline.web.Principal:
        return stepline.web.Principal(access.request)

    routes = stepline.web.RunRoutes(
        kit.client,
        [kit.drip],
        authorize=authorize,
        poll_interval=INTERVAL,
        max_readers_per_run=3,
        max_readers_per_caller=2,
    )
    runs = [kit.client.start_sync(kit.drip, {}).run_id for _ in range(3)]  # anyone's

    def open_stream(run_id: str, who: str) -> tuple[stepline.web.WebResponse, Streamed]:
        request = stepline.web.WebRequest("GET", f"/runs/{run_id}/events", {}, b"", who)
        response = routes.handle_sync(request)
        if response.status != 200:
            return response, empty()
        chunks = typing.cast("Streamed", routes.chunks_sync(response))
        next(chunks)  # the stream has begun
        return response, chunks

    held = [open_stream(runs[0], "a")[1], open_stream(runs[1], "a")[1]]
    refused, _ = open_stream(runs[2], "a")  # a third stream of caller a
    assert refused.status == 429
    assert "2 event streams already" in refused.body.decode()
    assert "max_readers_per_caller" in refused.body.decode()
    held += [open_stream(runs[2], who)[1] for who in "bcd"]
    crowded, _ = open_stream(runs[2], "e")  # a fourth reader of run 2
    assert crowded.status == 429
    assert "3 event readers already" in crowded.body.decode()
    assert "max_readers_per_run" in crowded.body.decode()
    held[0].close()  # caller a's first stream ends: a may open another, not of run 2
    again, chunks = open_stream(runs[2], "a")
    assert again.status == 429
    held[-1].close()  # one of run 2's readers leaves
    again, chunks = open_stream(runs[2], "a")
    assert again.status == 200
    for stream in [*held, chunks]:
        stream.close()
