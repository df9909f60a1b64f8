"""Run streams through the engine's REST API, on SQLite and Postgres.

``POST /v1/runs/{id}/stream`` publishes, ``GET`` reads (JSON pages that long-poll, or
Server-Sent Events). Runs are written through the store (a running one to publish to);
everything else goes through the real engine behind Starlette's TestClient, or uvicorn
where a reader must follow a stream live.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from stepline._status import RunStatus
from stepline.engine import Engine
from stepline.engine._store import Tx
from stepline.engine._store.sweeper import Sweeper
from tests._support.polling import wait_until

from .test_api import START, api
from .test_store_contract import run_record

RUN = "01RUNSTREAM0000000000000001"


def seed(client: TestClient, engine: Engine, run_id: str = RUN, **changes: Any) -> None:
    """A run the stream tests publish to: running unless told otherwise."""
    changes.setdefault("status", RunStatus.RUNNING)
    record = run_record(run_id, created_at=START, **changes)
    portal(client).call(engine.store.atomic, lambda tx: tx.insert_run(record))


def portal(client: TestClient) -> Any:
    assert client.portal is not None, "use the client as a context manager"
    return client.portal


def publish(client: TestClient, *messages: dict[str, Any], run_id: str = RUN) -> Any:
    return client.post(f"/v1/runs/{run_id}/stream", json={"messages": list(messages)})


def msg(topic: str, data: Any, durable: str | None = None) -> dict[str, Any]:
    return {"topic": topic, "data": data, "id": durable}


def read(client: TestClient, run_id: str = RUN, **query: Any) -> dict[str, Any]:
    answer = client.get(f"/v1/runs/{run_id}/stream", params=query)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def sse_events(text: str) -> list[dict[str, str]]:
    """The events of an SSE body (comments left out), each as its fields."""
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line and not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
        if fields:
            events.append(fields)
    return events


@pytest.fixture
def dev(db: str) -> Iterator[tuple[TestClient, Engine]]:
    with api(db, max_stream_message_bytes=1024) as (client, engine):
        seed(client, engine)
        yield client, engine


def test_publish_then_read_in_order_with_seqs_at_and_next(
    dev: tuple[TestClient, Engine],
) -> None:
    client, _ = dev
    first = publish(client, msg("progress", {"done": 1}), msg("tokens", "hel"))
    assert first.status_code == 200, first.text
    assert first.json() == {"data": {"seqs": [1, 2]}}
    assert publish(client, msg("tokens", "lo"), msg("progress", [1, None, True])).json() == {
        "data": {"seqs": [3, 4]}
    }
    page = read(client)
    assert page == {
        "data": [
            {"seq": 1, "topic": "progress", "data": {"done": 1}, "at": START},
            {"seq": 2, "topic": "tokens", "data": "hel", "at": START},
            {"seq": 3, "topic": "tokens", "data": "lo", "at": START},
            {"seq": 4, "topic": "progress", "data": [1, None, True], "at": START},
        ],
        "ended": False,
        "next": 4,
    }
    # after= and limit= page through; the topic filter keeps only its topic
    assert [m["seq"] for m in read(client, after=1, limit=2)["data"]] == [2, 3]
    tokens = read(client, topic="tokens")
    assert [m["data"] for m in tokens["data"]] == ["hel", "lo"]
    assert tokens["next"] == 3
    assert read(client, after=4) == {"data": [], "ended": False, "next": 4}


def test_durable_ids_are_stored_once_and_answer_their_first_seq(
    dev: tuple[TestClient, Engine],
) -> None:
    client, _ = dev
    answer = publish(client, msg("p", 1, "step-a"), msg("p", 2), msg("p", 1, "step-a"))
    assert answer.json()["data"]["seqs"] == [1, 2, 1]
    again = publish(client, msg("p", "other", "step-a"), msg("p", 3, "step-b"))
    assert again.json()["data"]["seqs"] == [1, 3]
    assert [m["data"] for m in read(client)["data"]] == [1, 2, 3]


def test_refusals_say_what_is_wrong(dev: tuple[TestClient, Engine]) -> None:
    client, engine = dev
    missing = publish(client, msg("p", 1), run_id="01NOSUCHRUN")
    assert missing.status_code == 404
    assert "01NOSUCHRUN" in missing.json()["error"]
    assert client.get("/v1/runs/01NOSUCHRUN/stream").status_code == 404
    sse = client.get("/v1/runs/01NOSUCHRUN/stream", headers={"accept": "text/event-stream"})
    assert sse.status_code == 404

    bad_topic = publish(client, msg("p", 1), msg("no spaces", 2))
    assert bad_topic.status_code == 400
    assert "messages[1].topic" in bad_topic.json()["error"]
    no_data = client.post(f"/v1/runs/{RUN}/stream", json={"messages": [{"topic": "p"}]})
    assert no_data.status_code == 400
    assert "messages[0].data" in no_data.json()["error"]
    bad_id = publish(client, {"topic": "p", "data": 1, "id": 7})
    assert bad_id.status_code == 400
    assert "messages[0].id" in bad_id.json()["error"]
    bodies: list[Any] = [{}, {"messages": []}, {"messages": [msg("p", i) for i in range(501)]}, []]
    for body in bodies:
        refused = client.post(f"/v1/runs/{RUN}/stream", json=body)
        assert refused.status_code == 400, body
    big = publish(client, msg("p", 1), msg("p", "x" * 1100))
    assert big.status_code == 413
    assert "messages[1]" in big.json()["error"]
    assert "max_stream_message_bytes" in big.json()["error"]
    for query in ({"after": "-1"}, {"after": "x"}, {"wait": "31"}, {"limit": "0"}):
        answer = client.get(f"/v1/runs/{RUN}/stream", params=query)
        assert answer.status_code == 400, query
    assert read(client)["data"] == []  # nothing refused was stored

    seed(client, engine, "01ENDED", status=RunStatus.COMPLETED, ended_at=START)
    ended = publish(client, msg("p", 1), run_id="01ENDED")
    assert ended.status_code == 409
    assert "has ended" in ended.json()["error"]
    assert "Completed" in ended.json()["error"]


def test_ended_is_true_only_once_everything_is_read(dev: tuple[TestClient, Engine]) -> None:
    client, _ = dev
    publish(client, *(msg("a" if n % 2 else "b", n) for n in range(1, 6)))
    assert client.post(f"/v1/runs/{RUN}/cancel").status_code == 200
    first = read(client, limit=3)
    assert [m["seq"] for m in first["data"]] == [1, 2, 3]
    assert first["ended"] is False
    rest = read(client, after=first["next"], limit=3)
    assert [m["seq"] for m in rest["data"]] == [4, 5]
    assert rest["ended"] is True
    # a topic's reader is done when nothing of its topic remains
    odd = read(client, topic="a", after=3, limit=1)
    assert [m["data"] for m in odd["data"]] == [5]
    assert odd["ended"] is True
    assert read(client, after=5, wait=5) == {"data": [], "ended": True, "next": 5}
    assert publish(client, msg("a", 6)).status_code == 409


def test_sse_sends_every_message_then_the_end_and_resumes_after_last_event_id(
    dev: tuple[TestClient, Engine],
) -> None:
    client, _ = dev
    publish(client, msg("p", {"n": 1}), msg("q", "two\nlines"), msg("p", 3))
    client.post(f"/v1/runs/{RUN}/cancel")
    sse = {"accept": "text/event-stream"}
    answer = client.get(f"/v1/runs/{RUN}/stream", headers=sse)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    events = sse_events(answer.text)
    assert [e.get("id") for e in events] == ["1", "2", "3", None]
    assert [e["event"] for e in events] == ["message", "message", "message", "end"]
    assert json.loads(events[1]["data"]) == {
        "seq": 2,
        "topic": "q",
        "data": "two\nlines",
        "at": START,
    }
    assert json.loads(events[3]["data"]) == {"status": "Cancelled"}
    # Last-Event-ID wins over ?after=; the topic filter applies
    resumed = client.get(
        f"/v1/runs/{RUN}/stream",
        params={"after": 0, "topic": "p"},
        headers={**sse, "last-event-id": "1"},
    )
    assert [e.get("id") for e in sse_events(resumed.text)] == ["3", None]
    bad = client.get(f"/v1/runs/{RUN}/stream", headers={**sse, "last-event-id": "x"})
    assert bad.status_code == 400
    assert "Last-Event-ID" in bad.json()["error"]


def test_published_messages_are_counted_per_function(dev: tuple[TestClient, Engine]) -> None:
    client, _ = dev
    publish(client, msg("p", 1, "d1"), msg("p", 2))
    publish(client, msg("p", 1, "d1"))  # a durable message again: not counted again
    metrics = client.get("/metrics").text
    assert 'stepline_stream_messages_total{function="app-fn"} 2' in metrics


def test_retention_removes_a_runs_messages_with_the_run(db: str) -> None:
    with api(db, retention=3600.0) as (client, engine):
        seed(client, engine)
        seed(client, engine, "01KEPT")
        publish(client, msg("p", 1), msg("p", 2))
        publish(client, msg("p", 3), run_id="01KEPT")
        client.post(f"/v1/runs/{RUN}/cancel")
        engine.clock.set(START + 7200)  # type: ignore[attr-defined]
        sweeper = Sweeper.of(engine)
        removed: dict[str, int] = {}

        def swept() -> bool:
            # the engine's own sweeper may hold the sweep (Postgres) or have done it
            for table, rows in portal(client).call(sweeper.sweep).items():
                removed[table] = removed.get(table, 0) + rows
            return client.get(f"/v1/runs/{RUN}").status_code == 404

        wait_until(swept, message="the ended run to be swept")

        def count(tx: Tx) -> int:
            row = tx.execute("SELECT COUNT(*) FROM run_messages").fetchone()  # type: ignore[attr-defined]
            return int(row[0])

        assert portal(client).call(engine.store.read, count) == 1
        assert removed.get("run_messages", 2) == 2  # unless the engine's sweeper took them
        assert client.get(f"/v1/runs/{RUN}/stream").status_code == 404
        assert [m["data"] for m in read(client, "01KEPT")["data"]] == [3]


def test_start_mode_needs_the_key_to_publish_and_read(db: str) -> None:
    key = "signkey-prod-" + "cd34" * 16
    with api(db, mode="start", signing_keys=(key,), event_keys=("ev",)) as (client, engine):
        seed(client, engine)
        for method in ("GET", "POST"):
            refused = client.request(
                method, f"/v1/runs/{RUN}/stream", json={"messages": [msg("p", 1)]}
            )
            assert refused.status_code == 401, method
        bearer = {"authorization": f"Bearer {key}"}
        answer = client.post(
            f"/v1/runs/{RUN}/stream", json={"messages": [msg("p", 1)]}, headers=bearer
        )
        assert answer.status_code == 200
        assert client.get(f"/v1/runs/{RUN}/stream", headers=bearer).json()["data"][0]["data"] == 1
