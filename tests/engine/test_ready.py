"""``GET /ready``: 200 while the database answers at the current schema, 503 with why otherwise.

Public like ``/health`` (an orchestrator probes it without a key), in production mode too.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import psycopg.errors
import pytest
from starlette.testclient import TestClient

from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app
from stepline.engine._store import sqlite_schema
from tests._support.databases import POSTGRES_URL, postgres_schema

pytestmark = [pytest.mark.postgres]

KEY = "signkey-prod-" + "ab" * 32


def _engine(url: str) -> Engine:
    return Engine(
        EngineSettings(mode="start", database_url=url, signing_keys=(KEY,), event_keys=("e",))
    )


def test_ready_answers_200_then_503_when_the_schema_is_behind(tmp_path: Path) -> None:
    path = tmp_path / "ready.db"
    with TestClient(build_app(_engine(str(path)))) as http:
        answer = http.get("/ready")  # no key: public, as /health
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body.pop("sqlite_wal_bytes") >= 0  # the write-ahead log's size (SQLite only)
        assert body == {"status": "ready", "schema_version": len(sqlite_schema.MIGRATIONS)}
        with sqlite3.connect(path) as conn:  # as a database restored from an old backup
            conn.execute("PRAGMA user_version = 1")
        answer = http.get("/ready")
        assert answer.status_code == 503
        assert answer.json()["status"] == "unavailable"
        assert "schema is at version 1" in answer.json()["reason"]
        assert "stepline migrate" in answer.json()["reason"]
        assert http.get("/health").status_code == 200  # alive, only not ready


def test_ready_answers_503_when_the_database_is_gone() -> None:
    with postgres_schema("ready") as url, TestClient(build_app(_engine(url))) as http:
        assert http.get("/ready").status_code == 200
        schema = url.rsplit("%3D", 1)[1]
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            for attempt in range(5):  # the engine's worker may hold a table meanwhile
                try:
                    admin.execute(f"DROP SCHEMA {schema} CASCADE")
                    break
                except psycopg.errors.DeadlockDetected:
                    if attempt == 4:
                        raise
            answer = http.get("/ready")
            admin.execute(f"CREATE SCHEMA {schema}")  # for the fixture's own DROP
        assert answer.status_code == 503, answer.text
        reason = answer.json()["reason"]
        # the engine's own worker may meet the missing tables first (the store's guard then
        # records the fault and /ready reports it) or the probe's read meets them: both name it
        unanswered = reason.startswith("the database does not answer: ")
        missing = unanswered and "stepline_schema" in reason
        assert missing or reason == "the database refuses writes: schema missing", reason
        assert http.get("/health").status_code == 200
