"""The cases the REST v1 fuzz run (``test_fuzz_sqlite.py``, ``test_fuzz_postgres.py``) found,
each as it was found.

Each answered 500, or something the document does not describe; each now answers as the
document says.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app
from tests._support.databases import database
from tests.contract.fuzz_run import APP


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    engine = Engine(EngineSettings(database_url=str(tmp_path / "e.db"), poll_interval=0.05))
    with TestClient(build_app(engine), base_url="http://127.0.0.1") as client:
        yield client


def test_a_bulk_filter_time_past_what_a_date_can_hold_is_refused_and_the_list_still_reads(
    http: TestClient,
) -> None:
    # stored, it made every later read of the action (and of GET /v1/bulk) a 500
    body = {"filter": {"since": 1.0276848090040519e34, "function_id": []}}
    answer = http.post("/v1/bulk/replay", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"].startswith("filter.since: want an RFC 3339 time")
    assert http.get("/v1/bulk", params={"limit": 1}).status_code == 200


@pytest.mark.parametrize("value", ["1e34", "inf", "nan", "-1e11"])
def test_a_list_filter_time_a_date_cannot_hold_is_a_400(http: TestClient, value: str) -> None:
    answer = http.get("/v1/runs", params={"since": value})
    assert answer.status_code == 400, answer.text
    message = f"since: want an RFC 3339 time or unix seconds, got {value!r}"
    assert answer.json() == {
        "code": "bad_request",
        "message": message,
        "details": {},
        "error": message,
    }
    assert http.get("/v1/events", params={"received_after": value}).status_code == 400


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres])])
def on_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    with database(request.param, tmp_path) as url:
        engine = Engine(EngineSettings(database_url=url, poll_interval=0.05))
        with TestClient(build_app(engine), base_url="http://127.0.0.1") as client:
            assert client.post("/fn/register", json=APP).status_code == 200
            yield client


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/bulk/cancel", {"filter": {}, "idempotency_key": "a\x00b"}),
        ("/v1/bulk/replay", {"filter": {}, "idempotency_key": "\x00"}),
        ("/v1/functions/fuzz-fn/runs", {"data": {}, "idempotency_key": "a\x00b"}),
    ],
)
def test_an_idempotency_key_with_nul_is_a_400_on_every_store(
    on_store: TestClient, path: str, body: dict[str, object]
) -> None:
    # Postgres refuses NUL in text: the key reached its lookup and answered 500
    answer = on_store.post(path, json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["message"] == (
        "idempotency_key: want a string of 1-256 characters, without NUL"
    )
