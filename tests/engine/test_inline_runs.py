"""The engine's side of durable endpoints: inline starts, checkpoints and answers (REST).

A request holds the lease on its run's first call; each checkpoint and the answer must
present that lease. A lapsed lease hands the call to the engine, which resumes the run on
the app's serve endpoint from the checkpoints. Both stores.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

import stepline
from stepline._protocol.hashing import hash_step_id
from stepline.engine import Engine, EngineSettings
from stepline.engine._endpoints import inline as inline_runs
from stepline.engine._http.api import build_app
from stepline.engine._store.pg_tx import PostgresTx
from stepline.engine._store.sqlite import SqliteTx
from tests._support.polling import wait_until

FN = "inl-three"


def _app() -> tuple[stepline.Client, stepline.Function, dict[str, int]]:
    client = stepline.Client("inl", is_production=False, environ={})
    counts = {"a": 0, "b": 0, "c": 0}

    def bump(name: str) -> str:
        counts[name] += 1
        return name

    @client.function(id="three", trigger=stepline.TriggerEvent(event="inl/three"))
    async def three(ctx: stepline.Context) -> list[str]:
        return [await ctx.step.run(name, bump, name) for name in ("a", "b", "c")]

    return client, three, counts


@contextlib.contextmanager
def engine_http(db: str, **settings: Any) -> Iterator[tuple[TestClient, dict[str, int]]]:
    options: dict[str, Any] = {"poll_interval": 0.05, "retry_scale": 0.0, **settings}
    engine = Engine(EngineSettings(database_url=db, **options))
    client, three, counts = _app()
    with TestClient(build_app(engine), base_url="http://127.0.0.1") as http:
        http.portal.call(engine.serve, client, [three])  # type: ignore[union-attr]
        yield http, counts


def step(name: str, data: object) -> dict[str, Any]:
    return {
        "op": "StepRun",
        "id": hash_step_id(name),
        "name": name,
        "displayName": name,
        "data": data,
    }


def start(http: TestClient, key: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"data": {"path": "/x"}}
    if key is not None:
        body["idempotency_key"] = key
    answer = http.post(f"/v1/functions/{FN}/inline", json=body)
    assert answer.status_code in (200, 201), answer.text
    return dict(answer.json()["data"])


def run_of(http: TestClient, run_id: str) -> dict[str, Any]:
    return dict(http.get(f"/v1/runs/{run_id}").json()["data"])


def test_a_request_holds_the_first_call_checkpoints_it_and_answers_it(db: str) -> None:
    with engine_http(db) as (http, counts):
        started = start(http, key="k")
        assert started["created"] is True
        inline = started["inline"]
        run_id = started["run"]["run_id"]
        assert inline["call"]["ctx"]["run_id"] == run_id
        assert inline["call"]["steps"] == {}
        lease = {"job_id": inline["job_id"], "owner": inline["owner"]}
        assert run_of(http, run_id)["status"] == "Running"
        again = start(http, key="k")  # the same key, while the first request holds it
        assert again["created"] is False
        assert again["run"]["run_id"] == run_id
        assert again["inline"] is None
        ok = http.post(
            f"/v1/runs/{run_id}/inline/checkpoint", json={**lease, "steps": [step("a", 1)]}
        )
        assert ok.status_code == 200, ok.text
        assert ok.json()["data"]["lease_until"]
        beat = http.post(f"/v1/runs/{run_id}/inline/checkpoint", json={**lease, "steps": []})
        assert beat.status_code == 200
        headers = {"content-type": "application/json", "x-inngest-sdk": "stepline:v1"}
        done = http.post(
            f"/v1/runs/{run_id}/inline/answer",
            json={**lease, "status": 200, "headers": headers, "body": '{"r": 1}'},
        )
        assert done.status_code == 200, done.text
        assert done.json()["data"]["status"] == "Completed"
        assert done.json()["data"]["output"] == {"r": 1}
        steps = http.get(f"/v1/runs/{run_id}/steps").json()["data"]
        assert [s["name"] for s in steps] == ["a"]
        assert counts == {"a": 0, "b": 0, "c": 0}  # the app was never called
        late = http.post(f"/v1/runs/{run_id}/inline/checkpoint", json={**lease, "steps": []})
        assert late.status_code == 409
        assert late.json()["code"] == "lease_lost"


def test_steps_extend_the_lease_once_a_third_of_it_has_run_and_heartbeats_always(
    db: str,
) -> None:
    """A request's steps that follow each other quickly write the call's row once: a
    checkpoint with steps leaves a lease that has more than two thirds left as it is."""
    with engine_http(db, lease_seconds=3.0) as (http, _):
        started = start(http)
        run_id, inline = started["run"]["run_id"], started["inline"]
        lease = {"job_id": inline["job_id"], "owner": inline["owner"]}
        url = f"/v1/runs/{run_id}/inline/checkpoint"

        def until(steps: list[dict[str, Any]]) -> float:
            answer = http.post(url, json={**lease, "steps": steps})
            assert answer.status_code == 200, answer.text
            stamp = answer.json()["data"]["lease_until"]  # ISO 8601 in ms, "Z" (3.10 reads +00:00)
            return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()

        first = until([step("a", 1)])
        assert until([step("b", 2)]) == first  # nearly all of it left: not written
        time.sleep(0.05)  # the answer's stamps are in milliseconds
        beat = until([])
        assert beat > first  # a heartbeat extends it whatever is left
        time.sleep(1.1)  # past a third of the lease
        assert until([step("c", 3)]) > beat
        steps = http.get(f"/v1/runs/{run_id}/steps").json()["data"]
        assert [s["name"] for s in steps] == ["a", "b", "c"]


def test_an_inline_start_of_a_call_without_limits_takes_and_sweeps_no_slots(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call without concurrency limits takes no slot: leasing it to the request admits
    nothing, and leaves expired slots to the next lease that does (the worker's)."""
    sent: list[str] = []
    leasing: set[int] = set()  # the threads inside ``_lease_first`` (the worker leases too)
    original_lease = inline_runs._lease_first

    def lease_first(*args: Any, **kwargs: Any) -> Any:
        leasing.add(threading.get_ident())
        try:
            return original_lease(*args, **kwargs)
        finally:
            leasing.discard(threading.get_ident())

    monkeypatch.setattr(inline_runs, "_lease_first", lease_first)
    for tx_class in (SqliteTx, PostgresTx):

        def execute(self: Any, sql: str, args: Any = (), _original: Any = tx_class.execute) -> Any:
            if threading.get_ident() in leasing:
                sent.append(sql)
            return _original(self, sql, args)

        monkeypatch.setattr(tx_class, "execute", execute)
    with engine_http(db) as (http, _counts):
        started = start(http)
    assert started["inline"] is not None, "the request holds the call"
    assert any("lease_owner" in sql for sql in sent), "the lease was counted"
    assert not [sql for sql in sent if "slots" in sql]


def test_a_foreign_lease_is_refused_with_409(db: str) -> None:
    with engine_http(db) as (http, _counts):
        started = start(http)
        run_id, job_id = started["run"]["run_id"], started["inline"]["job_id"]
        forged = {"job_id": job_id, "owner": "inline:forged", "steps": [step("a", 1)]}
        refused = http.post(f"/v1/runs/{run_id}/inline/checkpoint", json=forged)
        assert refused.status_code == 409
        other = {**forged, "job_id": "someone-else:step:start"}
        assert http.post(f"/v1/runs/{run_id}/inline/checkpoint", json=other).status_code == 409
        assert http.get(f"/v1/runs/{run_id}/steps").json()["data"] == []


@pytest.mark.slow
def test_a_lapsed_lease_is_resumed_by_the_engine_from_the_checkpoints(db: str) -> None:
    with engine_http(db, lease_seconds=0.5) as (http, counts):
        started = start(http)
        run_id, inline = started["run"]["run_id"], started["inline"]
        lease = {"job_id": inline["job_id"], "owner": inline["owner"]}
        steps = [step("a", "a"), step("b", "b")]
        saved = http.post(f"/v1/runs/{run_id}/inline/checkpoint", json={**lease, "steps": steps})
        assert saved.status_code == 200
        # the request dies here: no answer, no heartbeat; the engine takes the call back

        def ended() -> bool:
            return bool(run_of(http, run_id)["status"] == "Completed")

        wait_until(ended, timeout=15, message=lambda: f"the run to end: {run_of(http, run_id)}")
        assert run_of(http, run_id)["output"] == ["a", "b", "c"]
        assert counts == {"a": 0, "b": 0, "c": 1}  # the checkpointed steps did not run again
        late = http.post(
            f"/v1/runs/{run_id}/inline/answer",
            json={**lease, "status": 200, "headers": {}, "body": "1"},
        )
        assert late.status_code == 409


def test_an_answer_with_a_sleep_is_applied_as_any_sdk_answer(db: str) -> None:
    with engine_http(db) as (http, _counts):
        started = start(http)
        run_id, inline = started["run"]["run_id"], started["inline"]
        lease = {"job_id": inline["job_id"], "owner": inline["owner"]}
        sleep = {"op": "Sleep", "id": hash_step_id("nap"), "name": "2099-01-01T00:00:00Z"}
        sleep["displayName"] = "nap"
        body = json.dumps([step("a", 1), sleep])
        headers = {"content-type": "application/json", "x-inngest-sdk": "stepline:v1"}
        answer = http.post(
            f"/v1/runs/{run_id}/inline/answer",
            json={**lease, "status": 206, "headers": headers, "body": body},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["data"]["status"] == "Running"
        steps = {
            s["name"]: s["status"] for s in http.get(f"/v1/runs/{run_id}/steps").json()["data"]
        }
        assert steps == {"a": "Completed", "nap": "Sleeping"}


@pytest.mark.parametrize(
    ("route", "body", "problem"),
    [
        ("checkpoint", {"owner": "o", "steps": []}, "job_id"),
        ("checkpoint", {"job_id": "j", "owner": "", "steps": []}, "owner"),
        ("checkpoint", {"job_id": "j", "owner": "o"}, "steps"),
        (
            "checkpoint",
            {"job_id": "j", "owner": "o", "steps": [{"op": "Sleep", "id": "x"}]},
            "Sleep",
        ),
        (
            "answer",
            {"job_id": "j", "owner": "o", "status": 99, "headers": {}, "body": ""},
            "status",
        ),
        (
            "answer",
            {"job_id": "j", "owner": "o", "status": 200, "headers": {"a": 1}, "body": ""},
            "headers",
        ),
        ("answer", {"job_id": "j", "owner": "o", "status": 200, "headers": {}, "body": 1}, "body"),
        ("answer", ["not", "an", "object"], "job_id"),
    ],
)
def test_malformed_lease_bodies_are_400s(db: str, route: str, body: object, problem: str) -> None:
    with engine_http(db) as (http, _counts):
        answer = http.post(f"/v1/runs/r1/inline/{route}", json=body)
        assert answer.status_code == 400, answer.text
        assert problem in answer.json()["error"]


def test_malformed_starts_and_unknown_functions(db: str) -> None:
    with engine_http(db) as (http, _counts):
        assert http.post("/v1/functions/nope/inline", json={}).status_code == 404
        bad = http.post(f"/v1/functions/{FN}/inline", json={"data": [1]})
        assert bad.status_code == 400
        key = http.post(f"/v1/functions/{FN}/inline", json={"idempotency_key": ""})
        assert key.status_code == 400
        who = http.post(f"/v1/functions/{FN}/inline", json={"started_by": "x" * 300})
        assert who.status_code == 400
