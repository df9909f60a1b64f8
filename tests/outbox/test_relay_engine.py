"""The engine side of the outbox relay: proposed run ids and redelivered seeded events.

A relay that crashed after delivering and before marking delivers again: a start with the
same proposed ``run_id`` must answer the same run (``created`` false), and an event batch
with the same ``X-Inngest-Event-Id-Seed`` must answer the same ids and start nothing twice.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from typing import Any

from starlette.testclient import TestClient

from stepline.engine import Engine, EngineSettings, ManualClock, _ids
from stepline.engine._http.api import build_app
from stepline.engine._store import RunFilter
from tests._support import refusing
from tests._support.aio import arun
from tests.engine.test_api import START

APP_URL = refusing.url("/api/inngest")
FN_URL = f"{APP_URL}?fnId=a-f&stepId=step"


def registration() -> dict[str, Any]:
    """App ``a`` with ``a-f`` (triggered by ``a/go``) and ``a-g``."""

    def fn(slug: str) -> dict[str, Any]:
        step = {"id": "step", "name": "step", "runtime": {"type": "http", "url": FN_URL}}
        triggers = [{"event": "a/go"}]
        return {"id": f"a-{slug}", "name": slug, "triggers": triggers, "steps": {"step": step}}

    return {
        "appName": "a",
        "url": APP_URL,
        "sdk": "py:v0.1.0",
        "framework": "flask",
        "functions": [fn("f"), fn("g")],
    }


@contextlib.contextmanager
def api(db: str) -> Iterator[tuple[TestClient, Engine]]:
    """A dev engine's HTTP app with app ``a`` registered, called from a loopback Host."""
    settings = EngineSettings(database_url=db, retry_scale=0.0, retry_jitter=0.0)
    engine = Engine(settings, clock=ManualClock(START))
    with TestClient(build_app(engine), base_url="http://127.0.0.1") as client:
        assert client.post("/fn/register", json=registration()).status_code == 200
        yield client, engine


def runs_of(engine: Engine, function_id: str) -> list[str]:
    found = arun(engine.list_runs(RunFilter(function_id=function_id)))
    return sorted(run.run_id for run in found)


def test_a_proposed_run_id_names_the_run_and_a_redelivery_answers_it(db: str) -> None:
    proposed = _ids.ulid(int(START * 1000))
    with api(db) as (http, engine):
        first = http.post("/v1/functions/a-f/runs", json={"data": {"n": 1}, "run_id": proposed})
        assert first.status_code == 201, first.text
        assert first.json()["data"] == {"run_id": proposed, "function_id": "a-f", "created": True}
        again = http.post("/v1/functions/a-f/runs", json={"data": {"n": 1}, "run_id": proposed})
        assert again.status_code == 200, again.text
        assert again.json()["data"] == {"run_id": proposed, "function_id": "a-f", "created": False}
        assert runs_of(engine, "a-f") == [proposed]
        run = arun(engine.get_run(proposed))
        assert run.events[0]["data"]["n"] == 1
        # the same id for another function: refused, and nothing started there
        other = http.post("/v1/functions/a-g/runs", json={"data": {}, "run_id": proposed})
        assert other.status_code == 409, other.text
        assert other.json()["code"] == "run_id_taken"
        assert runs_of(engine, "a-g") == []
        # one stored start event, however often it was delivered
        events = http.get("/v1/events", params={"name": "inngest/function.invoked"}).json()
        assert len(events["data"]) == 1


def test_a_proposed_run_id_must_be_a_ulid(db: str) -> None:
    with api(db) as (http, engine):
        for bad in ("short", "u" * 26, "8" + "0" * 25, 12):
            reply = http.post("/v1/functions/a-f/runs", json={"data": {}, "run_id": bad})
            assert reply.status_code == 400, (bad, reply.text)
            assert "run_id" in reply.json()["error"]
        assert runs_of(engine, "a-f") == []


def test_a_proposed_run_id_with_an_idempotency_key_redelivered(db: str) -> None:
    proposed = _ids.ulid(int(START * 1000))
    body = {"data": {}, "run_id": proposed, "idempotency_key": "order-1"}
    with api(db) as (http, engine):
        assert http.post("/v1/functions/a-f/runs", json=body).status_code == 201
        again = http.post("/v1/functions/a-f/runs", json=body)
        assert again.json()["data"] == {"run_id": proposed, "function_id": "a-f", "created": False}
        assert runs_of(engine, "a-f") == [proposed]


def test_a_redelivered_seeded_event_batch_starts_nothing_twice(db: str) -> None:
    seed = f"{int(START * 1000)},{base64.b64encode(bytes(range(10))).decode()}"
    batch = [{"name": "a/go", "data": {"i": 0}}, {"name": "a/go", "data": {"i": 1}}]
    with api(db) as (http, engine):
        headers = {"X-Inngest-Event-Id-Seed": seed}
        first = http.post("/e/key", json=batch, headers=headers)
        assert first.status_code == 200, first.text
        ids = first.json()["ids"]
        assert ids == _ids.seeded(seed, 2)
        again = http.post("/e/key", json=batch, headers=headers)
        assert again.json()["ids"] == ids
        # two events, each starting a-f and a-g once: four runs, not eight
        assert len(runs_of(engine, "a-f")) == 2
        assert len(runs_of(engine, "a-g")) == 2
        events = http.get("/v1/events", params={"name": "a/go"}).json()
        assert sorted(e["internal_id"] for e in events["data"]) == sorted(ids)
