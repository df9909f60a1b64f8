"""Run streams followed live: readers woken by publishes, on one node and across two.

Engines behind uvicorn (a thread each) with a long ``poll_interval``, so a reader that
answers within a fraction of it was woken, not polling: in process by the publish
itself; on a second Postgres node by ``NOTIFY``. Publishers on two nodes at once still
get gap-free, unique seqs.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from stepline._status import RunStatus
from stepline.engine import Engine, EngineSettings
from stepline.engine._http import stream as stream_routes
from stepline.engine._http.api import build_app
from stepline.engine._store import Store
from stepline.engine._streams.service import StreamService
from tests._support.databases import postgres_schema
from tests._support.polling import wait_until
from tests._support.server_thread import ServerThread

from .test_store_contract import run_record, with_store

pytestmark = [pytest.mark.slow]

RUN = "01RUNLIVE00000000000000001"
CSRF = {"x-stepline-csrf": "1"}
#: the fallback re-read interval of these engines: a wake-up well under it is no poll
POLL = 5.0


def seed(db: str, run_id: str = RUN) -> None:
    async def body(store: Store) -> None:
        record = run_record(run_id, status=RunStatus.RUNNING, created_at=time.time())
        await store.atomic(lambda tx: tx.insert_run(record))

    with_store(db, body)


class Node:
    """An engine on a database, served by uvicorn from a thread."""

    def __init__(self, db: str, name: str) -> None:
        settings = EngineSettings(
            database_url=db, poll_interval=POLL, retry_scale=0.0, retry_jitter=0.0
        )
        self.engine = Engine(settings)
        self.server = ServerThread(name, lifespan="on").start(build_app(self.engine))
        self.url = self.server.url

    def readers_waiting(self, count: int = 1) -> None:
        """Until ``count`` readers of this node wait for news (synchronisation, no sleep)."""
        hub = StreamService.of(self.engine).hub
        wait_until(lambda: hub.count >= count, message="a reader to wait")


@contextlib.contextmanager
def node(db: str, name: str = "engine") -> Iterator[Node]:
    """An engine on ``db`` served by uvicorn."""
    served = Node(db, name)
    try:
        yield served
    finally:
        served.server.stop()


def publish(base: str, *data: Any, topic: str = "p", run_id: str = RUN) -> list[int]:
    body = {"messages": [{"topic": topic, "data": d, "id": None} for d in data]}
    answer = httpx.post(f"{base}/v1/runs/{run_id}/stream", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    seqs: list[int] = answer.json()["data"]["seqs"]
    return seqs


def long_poll(base: str, after: int, wait: float = 10.0) -> tuple[dict[str, Any], float]:
    """A long-poll read; returns its answer and the time it arrived."""
    params: dict[str, Any] = {"after": after, "wait": wait}
    answer = httpx.get(f"{base}/v1/runs/{RUN}/stream", params=params, timeout=wait + 10)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body, time.monotonic()


def woken_by_publish(reader: Node, writer: Node, after: int = 0) -> float:
    """Seconds from a publish through ``writer`` to a long-poll on ``reader`` answering."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(long_poll, reader.url, after)
        reader.readers_waiting()
        sent = time.monotonic()
        publish(writer.url, "hello")
        body, arrived = waiting.result(timeout=30)
    assert [m["data"] for m in body["data"]] == ["hello"]
    assert body["ended"] is False
    return arrived - sent


def test_a_long_poll_is_woken_by_a_publish_in_process(tmp_path: Any) -> None:
    db = str(tmp_path / "e.db")
    seed(db)
    with node(db) as one:
        latency = woken_by_publish(one, one)
        # under half the poll: a loaded machine's margin, yet no poll could answer this soon
        assert latency < POLL / 2, f"woken after {latency:.3f} s: polling ({POLL} s), not woken"
        # the run's end wakes a reader waiting past the last message too
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(long_poll, one.url, 1)
            one.readers_waiting()
            cancelled = time.monotonic()
            assert (
                httpx.post(f"{one.url}/v1/runs/{RUN}/cancel", headers=CSRF, timeout=10).status_code
                == 200
            )
            body, arrived = waiting.result(timeout=30)
        assert body == {"data": [], "ended": True, "next": 1}
        assert arrived - cancelled < 1.0


def test_sse_follows_a_live_run_to_its_end(tmp_path: Any) -> None:
    db = str(tmp_path / "e.db")
    seed(db)
    with node(db) as one:
        base = one.url
        publish(base, "before")
        headers = {"accept": "text/event-stream"}
        events: list[tuple[str, str]] = []
        with httpx.stream("GET", f"{base}/v1/runs/{RUN}/stream", headers=headers) as answer:
            assert answer.status_code == 200
            kind = ""
            for line in answer.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    events.append((kind, line[6:]))
                    if kind == "message" and json.loads(line[6:])["data"] == "before":
                        publish(base, "during", {"n": 2})
                    elif kind == "message" and json.loads(line[6:])["seq"] == 3:
                        httpx.post(f"{base}/v1/runs/{RUN}/cancel", headers=CSRF, timeout=10)
        assert [k for k, _ in events] == ["message"] * 3 + ["end"]
        assert [json.loads(d)["data"] for _, d in events[:3]] == ["before", "during", {"n": 2}]
        assert json.loads(events[3][1]) == {"status": "Cancelled"}


@pytest.mark.postgres
def test_a_reader_on_another_node_is_woken_by_notify() -> None:
    with postgres_schema() as db:
        seed(db)
        with node(db, "node-a") as a, node(db, "node-b") as b:
            latencies = [woken_by_publish(b, a)]
            publish(a.url, "again")  # seq 2; then one more round
            latencies.append(woken_by_publish(b, a, after=2))
    assert max(latencies) < POLL / 2, f"woken after {latencies}: polling ({POLL} s), not NOTIFY"


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_publishers_on_two_nodes_get_gap_free_unique_seqs(store: str, tmp_path: Any) -> None:
    with contextlib.ExitStack() as stack:
        if store == "sqlite":
            db = str(tmp_path / "shared.db")
        else:
            db = stack.enter_context(postgres_schema())
        seed(db)
        nodes = [stack.enter_context(node(db, "node-a")), stack.enter_context(node(db, "node-b"))]
        bases = [n.url for n in nodes]
        batches = 40
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(
                    lambda n: publish(bases[n % 2], *(f"{n}.{i}" for i in range(5))),
                    range(batches),
                )
            )
        for seqs in answers:  # a batch's messages are consecutive
            assert seqs == list(range(seqs[0], seqs[0] + 5))
        assert sorted(s for seqs in answers for s in seqs) == list(range(1, 5 * batches + 1))
        page = httpx.get(f"{bases[1]}/v1/runs/{RUN}/stream", params={"limit": 1000}).json()
        stored = {m["seq"]: m["data"] for m in page["data"]}
        assert len(stored) == 5 * batches
        for n, seqs in enumerate(answers):
            assert [stored[s] for s in seqs] == [f"{n}.{i}" for i in range(5)]


def test_sse_sends_keepalives_through_silence(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream_routes, "KEEPALIVE", 0.2)  # 15 s in production
    db = str(tmp_path / "e.db")
    seed(db)
    with node(db) as one:
        headers = {"accept": "text/event-stream"}
        comments = []
        url = f"{one.url}/v1/runs/{RUN}/stream"
        with httpx.stream("GET", url, headers=headers, timeout=10) as answer:
            for line in answer.iter_lines():
                if line.startswith(":"):
                    comments.append(line)
                if comments.count(": keepalive") == 3:
                    break
        assert comments[0] == ": stream"  # the headers went out at once
        assert comments[1:] == [": keepalive"] * 3
