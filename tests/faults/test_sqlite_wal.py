"""A long-lived SQLite reader pins the WAL; the engine truncates it once the reader lets go.

A connection holds a read transaction open (as a dashboard, a ``sqlite3`` shell or a file
copy would) while runs complete: the write-ahead log grows past the engine's limit, and
``/metrics`` and ``/ready`` report its size. Once the reader closes, the engine's next
checkpoint truncates the log (``_store/wal.py``), and the metric says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

import stepline
from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app
from stepline.engine._store import RunFilter
from stepline.engine._store.sqlite import SqliteStore
from tests._support.logs import captured_logs
from tests._support.polling import await_until

pytestmark = [pytest.mark.slow]

RUNS = 60
LIMIT = 1_000_000


def _app() -> tuple[stepline.Client, list[stepline.Function]]:
    client = stepline.Client(app_id="wal", is_production=False)

    @client.function(id="chunky", trigger=stepline.TriggerEvent(event="wal/go"))
    async def chunky(ctx: stepline.Context) -> int:
        total = 0
        for i in range(3):
            out = await ctx.step.run(f"s{i}", lambda i=i: f"{ctx.run_id}:{i}:" + "x" * 8000)
            total += len(out)
        return total

    return client, [chunky]


def _wal_metric(text: str) -> float:
    found = re.search(r"^stepline_sqlite_wal_bytes ([0-9.e+]+)$", text, re.MULTILINE)
    assert found, text
    return float(found.group(1))


@pytest.mark.timeout(60)
def test_a_held_reader_grows_the_wal_and_the_engine_truncates_it_after(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    wal = Path(f"{path}-wal")
    settings = EngineSettings(database_url=str(path), poll_interval=0.1)
    engine = Engine(settings, store=SqliteStore(path, wal_limit=LIMIT, wal_every=0.2))

    async def scenario() -> dict[str, float]:
        transport = httpx.ASGITransport(app=build_app(engine))
        async with (
            engine,
            httpx.AsyncClient(transport=transport, base_url="http://localhost") as http,
        ):
            await engine.serve(*_app())
            reader = sqlite3.connect(path, isolation_level=None)
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM runs").fetchone()  # a snapshot, held
            await engine.send([{"name": "wal/go", "data": {"n": n}} for n in range(RUNS)])

            async def completed() -> bool:
                runs = await engine.list_runs(RunFilter(limit=RUNS + 1))
                return len(runs) == RUNS and all(r.status.value == "Completed" for r in runs)

            await await_until(completed, timeout=30, interval=0.1, message="the runs to complete")
            await asyncio.sleep(0.5)  # a few checkpoints while the reader still holds on
            held = wal.stat().st_size
            assert held > LIMIT, held
            assert _wal_metric((await http.get("/metrics")).text) > LIMIT
            assert (await http.get("/ready")).json()["sqlite_wal_bytes"] > LIMIT
            reader.execute("ROLLBACK")
            reader.close()
            let_go = time.monotonic()

            async def truncated() -> bool:
                return os.path.getsize(wal) < LIMIT

            await await_until(truncated, timeout=10, interval=0.05, message="the WAL to shrink")
            seconds = time.monotonic() - let_go
            after = _wal_metric((await http.get("/metrics")).text)
            assert after < LIMIT, after
            return {"held": held, "after": after, "seconds": seconds}

    with captured_logs("stepline", level=logging.INFO) as lines:
        result = asyncio.run(scenario())
    print(
        f"WAL: {result['held'] / 1e6:.1f} MB with a reader held over {RUNS} runs, "
        f"{result['after'] / 1e6:.2f} MB {result['seconds']:.2f} s after it let go"
    )
    pinned = [line for line in lines if "long-lived reader keeps it" in line]
    assert len(pinned) == 1, "\n".join(lines)
    assert any("checkpointed the SQLite WAL" in line for line in lines), "\n".join(lines)


@pytest.mark.timeout(60)
def test_stepline_db_backup_finishes_while_the_database_is_written(tmp_path: Path) -> None:
    """SQLite starts an online backup over when another connection writes between two of its
    steps: copied in steps of 1,024 pages, a database past 4 MB that an engine kept writing
    to was never backed up. ``stepline db backup`` copies in one step (one snapshot); here
    a commit lands between every two steps, as an engine's would."""
    from stepline.engine._cli import db

    path, target = tmp_path / "busy.db", tmp_path / "copy.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode = WAL")
    writer.execute("CREATE TABLE t (x BLOB)")
    writer.execute("BEGIN")
    writer.executemany("INSERT INTO t VALUES (?)", [(b"x" * 3000,)] * 4000)  # ~12 MB
    writer.execute("COMMIT")
    steps = [0]

    def commit_between(status: int, remaining: int, total: int) -> None:
        steps[0] += 1
        assert steps[0] < 100, "the backup keeps starting over"
        writer.execute("INSERT INTO t VALUES (1)")

    source, copy = sqlite3.connect(path), sqlite3.connect(target)
    with contextlib.closing(writer), contextlib.closing(source), contextlib.closing(copy):
        source.backup(copy, pages=db.PAGES_PER_STEP, progress=commit_between)
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert copy.execute("SELECT count(*) FROM t").fetchone()[0] >= 4000
    assert db._backup_sqlite("stepline db backup", str(path), str(tmp_path / "cli.db")) == 0
