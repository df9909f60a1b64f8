"""Database faults: a precise 503, one log line, and a prompt retry once the fault clears.

A SQLite database locked by another connection (a held ``BEGIN IMMEDIATE``), a full disk
(a real 4 MB tmpfs where the test may mount one, else ``database or disk is full``
injected at commit), a read-only database (injected: root ignores file modes and a mount
holding an open file cannot be remounted read-only), and Postgres faults (a lock timeout
on a locked table, a dropped schema). Each: starts and events answer 503 with
``Retry-After`` and the cause, nothing is stored half, ``/ready`` answers 503 naming the
cause, ``/metrics`` counts it, the log says it once; after the fault clears the next
request succeeds, and a run whose answer could not be recorded during the fault is
recorded within about a second, without running its step again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import re
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

import stepline
from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app
from stepline.engine._store import EventFilter
from stepline.engine._store.faults import classify
from stepline.engine._store.sqlite import SqliteStore
from stepline.web import RunRoutes, WebRequest, allow_all
from tests._support import sqlite_faults
from tests._support.ci import under_ci
from tests._support.databases import POSTGRES_URL, postgres_schema
from tests._support.logs import captured_logs
from tests._support.polling import await_until

pytestmark = [pytest.mark.slow]

EVENT = "storefaults/go"
SEED = "1700000000000,QUJDREVGR0hJSg=="
#: what a non-browser caller of the web kit sends (its cross-site guard wants it)
CSRF = {"x-stepline-csrf": "1"}


class Steps:
    """The app's step executions, and a gate its step ``b`` waits at."""

    def __init__(self) -> None:
        self.ran: collections.Counter[tuple[str, str]] = collections.Counter()
        self.gate = threading.Event()

    def app(self) -> tuple[stepline.Client, list[stepline.Function]]:
        client = stepline.Client(app_id="storefaults", is_production=False, checkpointing=False)

        @client.function(id="gated", trigger=stepline.TriggerEvent(event=EVENT))
        async def gated(ctx: stepline.Context) -> list[str]:
            async def a() -> str:
                self.ran["a", ctx.run_id] += 1
                return "a"

            async def b() -> str:
                self.ran["b", ctx.run_id] += 1
                await asyncio.to_thread(self.gate.wait, 30)
                return "b"

            return [await ctx.step.run("a", a), await ctx.step.run("b", b)]

        return client, [gated]


def _settings(url: str) -> EngineSettings:
    return EngineSettings(
        database_url=url, poll_interval=0.1, retry_scale=0.001, shutdown_grace=1.0
    )


@contextlib.asynccontextmanager
async def _served(engine: Engine, steps: Steps) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(engine))
    async with engine, httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
        await engine.serve(*steps.app())
        yield http


async def _gated_run(engine: Engine, steps: Steps) -> str:
    """Start a run and wait until its step ``b`` is running (held at the gate)."""
    (event_id,) = await engine.send({"name": EVENT, "data": {}})
    run_id = str((await engine.event_runs(event_id))[0].run_id)

    async def at_gate() -> bool:
        return steps.ran["b", run_id] == 1

    await await_until(at_gate, timeout=10, interval=0.01, message="step b to start")
    return run_id


async def _refused(http: httpx.AsyncClient, cause: str) -> None:
    """A start and an event are answered 503 naming ``cause``; nothing of them is stored."""
    sent = await http.post("/e/key", json={"name": "storefaults/other"}, headers=_seed())
    assert sent.status_code == 503, sent.text
    assert sent.headers["retry-after"].isdigit()
    body = sent.json()
    assert (body["cause"], body["code"], body["ids"]) == (cause, "store_unavailable", [])
    assert body["what_to_do"]
    assert body["error"]
    started = await http.post("/v1/functions/storefaults-gated/runs", json={"data": {}})
    assert started.status_code == 503, started.text
    assert started.json()["cause"] == cause
    assert int(started.headers["retry-after"]) >= 1
    ready = await http.get("/ready")
    assert ready.status_code == 503, ready.text
    assert ready.json()["cause"] == cause, ready.text


async def _recovered(http: httpx.AsyncClient, engine: Engine) -> None:
    """The same event is accepted once the fault is over, and stored once; ``/ready`` 200."""

    async def accepted() -> list[str] | None:
        sent = await http.post("/e/key", json={"name": "storefaults/other"}, headers=_seed())
        return list(sent.json()["ids"]) if sent.status_code == 200 else None

    ids = await await_until(accepted, timeout=5, interval=0.05, message="the event to be taken")
    again = await http.post("/e/key", json={"name": "storefaults/other"}, headers=_seed())
    assert again.json()["ids"] == ids  # the same seed: stored once
    stored = await engine.list_events(EventFilter(name="storefaults/other"))
    assert [e.internal_id for e in stored] == ids
    ready = await http.get("/ready")
    assert ready.status_code == 200, ready.text


def _seed() -> dict[str, str]:
    return {"x-inngest-event-id-seed": SEED}


def _sample(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name + (f"{{{wanted}}}" if wanted else "")) + r" ([0-9.e+-]+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def _completes_promptly(engine: Engine, steps: Steps, run_id: str, cleared: float) -> float:
    """The run completes soon after ``cleared``, each step run once; returns the delay."""
    run = await engine.wait_for_run(run_id, timeout=10)
    delay = time.monotonic() - cleared
    assert run.status.value == "Completed", run
    assert steps.ran["a", run_id] == steps.ran["b", run_id] == 1, steps.ran
    return delay


def _fault_lines(lines: list[str], cause: str) -> list[str]:
    return [line for line in lines if f"database fault ({cause})" in line]


def _assert_logged_once(lines: list[str], cause: str) -> None:
    faults = _fault_lines(lines, cause)
    assert len(faults) == 1, "\n".join(lines)
    assert " WARNING " in faults[0]
    assert not [line for line in lines if "Traceback" in line or " ERROR " in line], lines
    assert any("accepts writes again" in line for line in lines), "\n".join(lines)


# -- SQLite: a lock held past the busy timeout --------------------------------------------


@pytest.mark.timeout(60)
def test_a_held_write_lock_answers_503_and_the_run_resumes_within_a_second(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locked.db"
    steps = Steps()
    engine = Engine(_settings(str(path)), store=SqliteStore(path, busy_timeout=0.3))

    async def scenario() -> float:
        async with _served(engine, steps) as http:
            run_id = await _gated_run(engine, steps)
            locker = sqlite3.connect(path, isolation_level=None)
            locker.execute("BEGIN IMMEDIATE")  # another writer, holding it past busy_timeout
            steps.gate.set()  # step b answers: recording it fails under the lock
            await _refused(http, "locked")
            metrics = (await http.get("/metrics")).text
            assert _sample(metrics, "stepline_store_faults_total", cause="locked") >= 2
            assert _sample(metrics, "stepline_store_degraded") == 1
            await asyncio.sleep(1.0)  # several retries of the record fail meanwhile
            locker.execute("ROLLBACK")
            cleared = time.monotonic()
            delay = await _completes_promptly(engine, steps, run_id, cleared)
            locker.close()
            await _recovered(http, engine)
            metrics = (await http.get("/metrics")).text
            assert _sample(metrics, "stepline_store_degraded") == 0
            return delay

    with captured_logs("stepline", level=logging.INFO) as lines:
        delay = asyncio.run(scenario())
    print(f"locked: the run completed {delay:.2f} s after the lock was released")
    assert delay < 1.0, delay
    _assert_logged_once(lines, "locked")


# -- SQLite: a full disk ------------------------------------------------------------------


class FaultySqlite(SqliteStore):
    """A SQLite store whose commits fail with ``message`` while ``failing`` is set.

    Nothing of a failed group is committed: its work is not run at all, as when SQLite
    refuses the transaction's first write.
    """

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(path)
        self.message = message
        self.failing = threading.Event()

    def _commit_group(self, batch: list[Any], wait: bool = True) -> None:
        if self.failing.is_set():
            sqlite_faults.refuse(batch, self.message)
        else:
            super()._commit_group(batch, wait)


def _no_disk(why: str) -> None:
    if under_ci():
        pytest.fail(f"a real full disk needs a tmpfs mounted (as root) under CI: {why}")


@contextlib.contextmanager
def _small_disk(where: Path) -> Iterator[Path | None]:
    """A 4 MB tmpfs at ``where`` (None when this process may not mount one).

    Under CI (which runs as root) not being able to mount one fails the test: the
    injected fault is a stand-in for a developer's machine, not what CI checks.
    """
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        _no_disk(f"uid {os.geteuid()}, mount at {shutil.which('mount')}")
        yield None
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:  # no CAP_SYS_ADMIN (an unprivileged container)
        _no_disk(mounted.stderr.decode(errors="replace").strip())
        yield None
        return
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte with one file; returns it."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out:
        for size in (65536, 4096, 512):
            with contextlib.suppress(OSError):
                while True:
                    out.write(b"\0" * size)
    return filler


@pytest.mark.process
@pytest.mark.timeout(60)
def test_a_full_disk_answers_503_and_recovers_when_space_is_freed(tmp_path: Path) -> None:
    """On a real 4 MB tmpfs when the test can mount one (root with CAP_SYS_ADMIN): the disk
    is filled with a file, and freed by deleting it; under CI, not being able to fails.
    Elsewhere the same scenario runs on a store whose commits raise
    ``sqlite3.OperationalError("database or disk is full")``.
    """
    steps = Steps()
    with _small_disk(tmp_path / "disk") as disk:
        path = (disk or tmp_path) / "full.db"
        store = FaultySqlite(path, "database or disk is full")
        engine = Engine(_settings(str(path)), store=store)
        filler: list[Path] = []

        def fill() -> None:
            if disk is None:
                store.failing.set()
                return
            # an empty log first: every write must then grow it (a log with room left
            # takes small writes on a full disk; that is SQLite, and fine, but not a test)
            with contextlib.closing(sqlite3.connect(path, timeout=5)) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            filler.append(_fill(disk))

        def free() -> None:
            store.failing.clear()
            for file in filler:
                file.unlink()

        async def scenario() -> float:
            async with _served(engine, steps) as http:
                run_id = await _gated_run(engine, steps)
                fill()

                async def refused() -> bool:  # the log grows into the last free pages first
                    sent = await http.post("/e/key", json={"name": "storefaults/pad"})
                    return sent.status_code == 503

                await await_until(refused, timeout=20, interval=0.01, message="a full disk")
                steps.gate.set()  # step b answers: recording it fails on the full disk
                await _refused(http, "disk full")
                metrics = (await http.get("/metrics")).text
                assert _sample(metrics, "stepline_store_faults_total", cause="disk full") >= 2
                await asyncio.sleep(0.5)
                assert not (await engine.get_run(run_id)).status.terminal  # b's answer waits
                free()
                cleared = time.monotonic()
                delay = await _completes_promptly(engine, steps, run_id, cleared)
                await _recovered(http, engine)
                return delay

        with captured_logs("stepline", level=logging.INFO) as lines:
            delay = asyncio.run(scenario())
    how = "a 4 MB tmpfs" if disk is not None else "injected at commit"
    print(f"disk full ({how}): the run completed {delay:.3f} s after space was freed")
    assert delay < 1.0, delay
    _assert_logged_once(lines, "disk full")


@pytest.mark.timeout(60)
def test_a_read_only_database_answers_503_and_recovers(tmp_path: Path) -> None:
    """Injected at commit (``attempt to write a readonly database``): root ignores file
    modes, and a mount with the database open for writing cannot be remounted read-only.
    """
    steps = Steps()
    path = tmp_path / "ro.db"
    store = FaultySqlite(path, "attempt to write a readonly database")
    engine = Engine(_settings(str(path)), store=store)

    async def scenario() -> float:
        async with _served(engine, steps) as http:
            run_id = await _gated_run(engine, steps)
            store.failing.set()
            steps.gate.set()
            await _refused(http, "read-only")
            await asyncio.sleep(0.5)
            store.failing.clear()
            delay = await _completes_promptly(engine, steps, run_id, time.monotonic())
            await _recovered(http, engine)
            return delay

    with captured_logs("stepline", level=logging.INFO) as lines:
        delay = asyncio.run(scenario())
    assert delay < 1.0, delay
    _assert_logged_once(lines, "read-only")


# -- Postgres ------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.timeout(60)
def test_postgres_lock_timeout_and_dropped_schema_answer_503() -> None:
    steps = Steps()
    with postgres_schema("faults") as url:
        schema = url.rsplit("%3D", 1)[1]
        engine = Engine(_settings(f"{url}%20-clock_timeout%3D300"))

        async def scenario() -> None:
            async with _served(engine, steps) as http:
                admin = await psycopg.AsyncConnection.connect(POSTGRES_URL)
                async with admin:
                    await admin.execute(f"LOCK TABLE {schema}.events IN EXCLUSIVE MODE")
                    sent = await http.post("/e/key", json={"name": "storefaults/other"})
                    assert sent.status_code == 503, sent.text
                    assert sent.json()["cause"] == "locked"
                    assert sent.headers["retry-after"] == "1"
                    await admin.rollback()
                await _recovered(http, engine)
                with psycopg.connect(POSTGRES_URL, autocommit=True) as drop:
                    drop.execute(f"DROP SCHEMA {schema} CASCADE")
                    try:
                        sent = await http.post("/e/key", json={"name": "storefaults/other"})
                        started = await http.post("/v1/functions/storefaults-gated/runs", json={})
                        ready = await http.get("/ready")
                    finally:
                        drop.execute(f"CREATE SCHEMA {schema}")  # for the fixture's DROP
                assert sent.status_code == 503, sent.text
                assert sent.json()["cause"] == "schema missing"
                assert started.status_code == 503, started.text
                assert ready.status_code == 503, ready.text

        with captured_logs("stepline", level=logging.INFO) as lines:
            asyncio.run(scenario())
    assert len(_fault_lines(lines, "locked")) == 1, "\n".join(lines)
    assert not [line for line in lines if "Traceback" in line], lines


# -- classification ------------------------------------------------------------------------


def test_classify_names_the_known_faults_and_nothing_else() -> None:
    import psycopg.errors
    import psycopg_pool

    cases: list[tuple[BaseException, str | None]] = [
        (sqlite3.OperationalError("database is locked"), "locked"),
        (sqlite3.OperationalError("database or disk is full"), "disk full"),
        (sqlite3.OperationalError("attempt to write a readonly database"), "read-only"),
        (sqlite3.OperationalError("disk I/O error"), "I/O error"),
        (sqlite3.OperationalError("unable to open database file"), "unreachable"),
        (sqlite3.OperationalError("near 'SELEC': syntax error"), None),
        (sqlite3.IntegrityError("UNIQUE constraint failed"), None),
        (psycopg.errors.DiskFull("no space left"), "disk full"),
        (psycopg.errors.ReadOnlySqlTransaction("read-only"), "read-only"),
        (psycopg.errors.LockNotAvailable("lock timeout"), "locked"),
        (psycopg.errors.QueryCanceled("statement timeout"), "locked"),
        (psycopg.errors.AdminShutdown("terminating connection"), "unreachable"),
        (psycopg.OperationalError("server closed the connection unexpectedly"), "unreachable"),
        (psycopg_pool.PoolTimeout("couldn't get a connection"), "unreachable"),
        (psycopg.errors.UndefinedTable('relation "jobs" does not exist'), "schema missing"),
        (psycopg.errors.UniqueViolation("duplicate key"), None),
        (ValueError("database is locked"), None),
    ]
    for exc, cause in cases:
        assert classify(exc) == cause, (exc, cause)


# -- the embedded engine: the client's in-process calls ------------------------------------


@pytest.mark.timeout(60)
def test_the_embedded_engine_answers_the_client_with_the_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client's calls reach the embedded engine's API in process: a fault (injected at
    commit, ``database or disk is full``) is a 503 naming it, which the client reports (with
    its status and ``Retry-After``) and the web kit's start route passes on."""
    from stepline.embedded import EmbeddedEngine

    failing = sqlite_faults.failing_commits(monkeypatch)
    # one attempt a send: the refusal is what this test reads, not the retries waiting out
    # its Retry-After (tests/sdk/test_sender.py holds those)
    client = stepline.Client(app_id="embedded-faults", is_production=False, send_max_attempts=1)

    @client.function(id="noop", trigger=stepline.TriggerEvent(event="emb/go"))
    def noop(ctx: stepline.SyncContext) -> int:
        return 1

    engine = EmbeddedEngine(client, [noop], database=str(tmp_path / "emb.db"), shutdown_grace=1)
    try:
        assert engine.database_fault is None  # not started
        assert len(client.send_sync(stepline.Event(name="emb/go"))) == 1
        assert engine.database_fault is None
        failing.set()
        with pytest.raises(stepline.SendEventError) as refused:
            client.send_sync(stepline.Event(name="emb/go"))
        assert "503" in str(refused.value)
        assert "disk full" in str(refused.value)
        assert (refused.value.http_status, refused.value.retry_after) == (503, 5)
        assert engine.database_fault == "disk full"  # /ready's 503, without the API mounted
        # the web kit's start route passes it on: 503 with Retry-After, not a 502
        routes = RunRoutes(client, [noop], authorize=allow_all)
        start = WebRequest("POST", "/runs", {}, b'{"function": "noop"}', None, headers=CSRF)
        answer = routes.handle_sync(start)
        assert (answer.status, answer.headers["retry-after"]) == (503, "5"), answer
        assert "disk full" in json.loads(answer.body)["error"]
        failing.clear()
        assert len(client.send_sync(stepline.Event(name="emb/go"))) == 1
        assert engine.database_fault is None  # that write succeeded
    finally:
        engine.stop()
    assert engine.database_fault is None  # stopped
