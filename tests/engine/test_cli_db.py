"""Retention in real time and ``stepline db vacuum|backup``, as real processes."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from stepline.engine import EngineSettings
from stepline.engine._cli import db as db_cli
from stepline.engine._model import JobKind, RunStatus
from stepline.engine._store import Tx, store_for
from tests._support.databases import postgres_schema
from tests._support.polling import wait_until
from tests._support.processes import clean_env, free_port, spawned

from .test_retention import seed
from .test_store_contract import job

pytestmark = [pytest.mark.process, pytest.mark.postgres]


def stepline(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "error", "-m", "stepline.engine", *args],
        check=False,
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=timeout,
    )


def seeded(db: str, now: float) -> None:
    """A run that just completed and a sleeping one (for an hour yet), each with its event."""

    def write(tx: Tx) -> None:
        seed(tx, "DONE", "E-DONE", now - 1, status=RunStatus.COMPLETED, ended_at=now)
        seed(tx, "ASLEEP", "E-ASLEEP", now - 1, status=RunStatus.RUNNING, started_at=now)
        tx.queue.enqueue(job("wake", now + 3600, kind=JobKind.WAKE, run_id="ASLEEP"))

    async def run() -> None:
        store = store_for(EngineSettings(database_url=db))
        await store.open()
        try:
            await store.atomic(write)
        finally:
            await store.close()

    asyncio.run(run())


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_dev_with_short_retention_removes_an_ended_run_in_real_time(tmp_path: Path) -> None:
    db = tmp_path / "engine.db"
    seeded(str(db), time.time())
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "stepline.engine", "dev", "--port", str(port)]
    command += ["--db", str(db), "--retention", "2s"]
    with spawned(command, log=tmp_path / "engine.log", env=clean_env(), up=f"{base}/health"):
        started = time.monotonic()
        wait_until(
            lambda: not rows(db, "SELECT 1 FROM runs WHERE run_id = 'DONE'"),
            timeout=60,
            message="the ended run to be swept",
        )
        assert time.monotonic() - started < 60
        assert rows(db, "SELECT 1 FROM events WHERE internal_id = 'E-DONE'") == []
        assert rows(db, "SELECT 1 FROM steps WHERE run_id = 'DONE'") == []
        assert rows(db, "SELECT status FROM runs WHERE run_id = 'ASLEEP'") == [("Running",)]
        assert rows(db, "SELECT 1 FROM events WHERE internal_id = 'E-ASLEEP'") == [(1,)]
        assert len(rows(db, "SELECT 1 FROM steps WHERE run_id = 'ASLEEP'")) == 2
        assert rows(db, "SELECT job_id FROM jobs") == [("wake",)]
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
        assert 'stepline_retention_removed_total{table="runs"} 1' in metrics


def test_dev_rejects_a_bad_retention() -> None:
    done = stepline("dev", "--retention", "a week")
    assert done.returncode == 2
    assert "--retention" in done.stderr
    assert "0/off" in done.stderr


def test_db_vacuum_and_backup_on_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "engine.db"
    seeded(str(db), time.time())
    vacuum = stepline("db", "vacuum", "--db", str(db))
    assert vacuum.returncode == 0, vacuum.stderr
    assert f"stepline db vacuum: vacuumed {db}" in vacuum.stdout
    copy = tmp_path / "backup" / "copy.db"
    copy.parent.mkdir()
    backup = stepline("db", "backup", str(copy), "--db", str(db))
    assert backup.returncode == 0, backup.stderr
    assert f"stepline db backup: copied {db} to {copy}" in backup.stdout
    assert "pages" in backup.stderr  # progress
    assert rows(copy, "SELECT run_id FROM runs ORDER BY run_id") == [("ASLEEP",), ("DONE",)]
    again = stepline("db", "backup", str(copy), "--db", str(db))
    assert again.returncode == 2
    assert "exists; remove it or choose another path" in again.stderr
    missing = stepline("db", "vacuum", "--db", str(tmp_path / "nothing.db"))
    assert missing.returncode == 2
    assert "no SQLite database at" in missing.stdout
    assert not (tmp_path / "nothing.db").exists(), "vacuum must not create a database"


def test_db_vacuum_and_backup_on_postgres() -> None:
    with postgres_schema() as url:
        seeded(url, time.time())
        vacuum = stepline("db", "vacuum", "--db", url)
        assert vacuum.returncode == 0, vacuum.stderr
        assert "VACUUM ANALYZE runs" in vacuum.stdout
        tables = len(db_cli.TABLES)  # apps, functions and every table retention sweeps
        assert f"stepline db vacuum: vacuumed and analyzed {tables} tables" in vacuum.stdout
        backup = stepline("db", "backup", "out.dump", "--db", url)
        assert backup.returncode == 2
        assert backup.stdout == ""
        assert "back it up with pg_dump" in backup.stderr
