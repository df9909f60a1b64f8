"""A run's starter (``started_by``): stored on both stores, migrated in, shown by REST.

The start API records the principal that started a run and scopes the idempotency key
to it: another principal posting the same key starts its own run instead of getting the
first one's id (and, through it, its result).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from stepline.engine import Engine, EngineSettings, ManualClock
from stepline.engine._http.api import build_app
from stepline.engine._store import RunFilter, Store, sqlite_schema
from stepline.engine._store import postgres_schema as _postgres_schema
from stepline.engine._store.rows import statements
from tests._support.databases import postgres_schema

from .test_api import START, registration
from .test_store_contract import atomic, run_record, with_store

pytestmark = [pytest.mark.postgres]

OLD_RUN = (
    "INSERT INTO runs (run_id, function_id, app_id, status, events, event_ids, created_at,"
    " stack, force_plan, request_version) VALUES"
    " ('OLD', 'app-fn', 'app', 'Queued', '[]', '[]', 1.0, '[]', 0, -1)"
)


@contextlib.contextmanager
def api(db: str) -> Iterator[tuple[TestClient, Engine]]:
    """A dev engine's HTTP app, called as a local tool does (Host 127.0.0.1)."""
    settings = EngineSettings(database_url=db, retry_scale=0.0, retry_jitter=0.0)
    engine = Engine(settings, clock=ManualClock(START))
    with TestClient(build_app(engine), base_url="http://127.0.0.1") as client:
        yield client, engine


def test_the_starter_round_trips_on_every_store(db: str) -> None:
    async def body(store: Store) -> None:
        run = run_record("R1", started_by="user:42")
        assert await atomic(store, lambda tx: tx.insert_run(run))
        got = await store.read(lambda tx: tx.get_run("R1"))
        assert got is not None
        assert got.started_by == "user:42"
        got.output = '{"ok":1}'
        await atomic(store, lambda tx: tx.update_run(got))
        again = await store.read(lambda tx: tx.get_run("R1"))
        assert again is not None
        assert (again.started_by, again.output) == ("user:42", '{"ok":1}')
        await atomic(store, lambda tx: tx.insert_run(run_record("R2")))
        listed = await store.read(lambda tx: tx.list_runs(RunFilter()))
        assert {r.run_id: r.started_by for r in listed} == {"R1": "user:42", "R2": None}

    with_store(db, body)


def test_a_sqlite_database_from_before_starters_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = len(sqlite_schema.MIGRATIONS) - 1
    conn = sqlite3.connect(path)
    for script in sqlite_schema.MIGRATIONS[:old]:
        conn.executescript(script)
    conn.execute(f"PRAGMA user_version = {old}")
    conn.execute(OLD_RUN)
    conn.commit()
    conn.close()
    _check_migrated(str(path))


def test_a_postgres_database_from_before_starters_is_migrated() -> None:
    old = len(_postgres_schema.MIGRATIONS) - 1
    with postgres_schema() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE stepline_schema (version INTEGER NOT NULL)")
            for number, script in enumerate(_postgres_schema.MIGRATIONS[:old], start=1):
                for statement in statements(script):  # as the store's migrate splits them
                    conn.execute(statement)
                conn.execute("INSERT INTO stepline_schema (version) VALUES (%s)", (number,))
            conn.execute(OLD_RUN)
        _check_migrated(url)


def _check_migrated(url: str) -> None:
    async def body(store: Store) -> None:
        old = await store.read(lambda tx: tx.get_run("OLD"))
        assert old is not None
        assert old.started_by is None  # a run stored before the migration has no starter
        await atomic(store, lambda tx: tx.insert_run(run_record("NEW", started_by="ada")))
        new = await store.read(lambda tx: tx.get_run("NEW"))
        assert new is not None
        assert new.started_by == "ada"

    with_store(url, body)


def test_the_start_api_records_the_starter_and_scopes_the_key(db: str) -> None:
    with api(db) as (http, _engine):
        assert http.post("/fn/register", json=registration()).status_code == 200
        path = "/v1/functions/a-f/runs"

        def start(**body: Any) -> tuple[int, str]:
            reply = http.post(path, json={"data": {}, **body})
            assert reply.status_code in (200, 201), reply.text
            return reply.status_code, reply.json()["data"]["run_id"]

        status, alice = start(idempotency_key="k", started_by="alice")
        assert status == 201
        assert start(idempotency_key="k", started_by="alice") == (200, alice)
        status, bob = start(idempotency_key="k", started_by="bob")
        assert status == 201  # a run of Bob's own, not Alice's id back
        assert bob != alice
        status, nobody = start(idempotency_key="k")
        assert status == 201
        assert nobody not in (alice, bob)
        # no key that a caller without a principal chooses reaches a principal's run
        for key in ("alice:k", '["alice", "k"]', "by:alice:k"):
            assert start(idempotency_key=key)[1] not in (alice, bob)
        shown = {rid: http.get(f"/v1/runs/{rid}").json()["data"] for rid in (alice, bob, nobody)}
        assert {rid: view["started_by"] for rid, view in shown.items()} == {
            alice: "alice",
            bob: "bob",
            nobody: None,
        }
        listed = http.get("/v1/runs").json()["data"]
        assert {view["run_id"]: view["started_by"] for view in listed}[alice] == "alice"


def test_the_start_api_refuses_an_unusable_starter(db: str) -> None:
    with api(db) as (http, _engine):
        assert http.post("/fn/register", json=registration()).status_code == 200
        for bad in ("", "x" * 257, 42, "nul\x00"):
            reply = http.post("/v1/functions/a-f/runs", json={"data": {}, "started_by": bad})
            assert reply.status_code == 400, bad
            assert reply.json()["error"].startswith("started_by: "), reply.text
        assert http.get("/v1/runs").json()["data"] == []


def test_a_rerun_keeps_its_starter(db: str) -> None:
    with api(db) as (http, _engine):
        assert http.post("/fn/register", json=registration()).status_code == 200
        reply = http.post("/v1/functions/a-f/runs", json={"data": {}, "started_by": "ada"})
        first = reply.json()["data"]["run_id"]
        rerun = http.post(f"/v1/runs/{first}/rerun", headers={"X-Stepline-Csrf": "1"})
        again = rerun.json()["data"]["run_id"]
        assert again != first
        assert http.get(f"/v1/runs/{again}").json()["data"]["started_by"] == "ada"
