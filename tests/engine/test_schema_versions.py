"""An engine never runs on a schema newer than it knows, at start or while it runs.

A newer release is simulated as it would leave the database: its version record bumped
past this release's last migration (SQLite's ``user_version``, a row of Postgres's
``stepline_schema``). An older release is today's code with the test seam
``EngineSettings.known_schema`` one below its migrations: it applies and accepts one
migration fewer, as the release before the newest migration did. On both stores:

- ``Engine.start``, the embedded engine's start, ``stepline start`` and ``stepline migrate``
  (in process) and ``stepline dev`` (a child process: the real entry point's exit code)
  refuse a newer schema with one line naming both versions and what to do, exit code 2,
  and leave the database as it was;
- a running engine whose database moves past it (bumped, or migrated by a newer engine)
  stops leasing within a bounded time, says why in a log line, ``/ready`` (503) and
  ``stepline_schema_too_new``, keeps running, and takes up nothing by itself;
  the newer engine runs what the older one no longer takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator

import psycopg
import pytest

import stepline
from stepline.embedded import EmbeddedEngine
from stepline.engine import Engine, RunStatus, SchemaTooNewError
from stepline.engine._http.ready import ready
from stepline.engine._store import dsn, is_postgres, postgres_schema, sqlite_schema
from stepline.engine._store.schema_version import refusal
from tests._support.aio import arun
from tests._support.cli import run_stepline
from tests._support.clients import dev_client
from tests._support.engines import FAST, fast_settings, only_run, running
from tests._support.polling import await_until
from tests._support.processes import clean_env, free_port

pytestmark = [pytest.mark.postgres]

#: how often the running engines here read the schema version (the default is 5 s)
CHECK = 0.1
#: the longest a running engine may take to stop leasing once the version moved
BOUND = 3.0
SIGNING_KEY = "signkey-prod-" + "5c" * 32


def latest(url: str) -> int:
    """The newest schema version this release knows on ``url``'s store."""
    return len(postgres_schema.MIGRATIONS if is_postgres(url) else sqlite_schema.MIGRATIONS)


def recorded(url: str) -> int:
    """The schema version ``url``'s database records."""
    if is_postgres(url):
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM stepline_schema")
            return int(row.fetchone()[0])  # type: ignore[index]
    with contextlib.closing(sqlite3.connect(url)) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def bump(url: str, version: int) -> None:
    """Record ``version`` as a newer engine's migration would (its tables aside)."""
    if is_postgres(url):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO stepline_schema (version) VALUES (%s)", (version,))
        return
    with contextlib.closing(sqlite3.connect(url)) as conn:
        conn.execute(f"PRAGMA user_version = {version}")


def migrated_past(url: str) -> int:
    """Migrate ``url`` with this release, then move it one version past; that version."""
    assert run_stepline("migrate", "--db", url).returncode == 0
    newer = latest(url) + 1
    bump(url, newer)
    return newer


def counting_app(
    app_id: str, ran: list[str], tag: str
) -> tuple[stepline.Client, list[stepline.Function]]:
    """An app whose one function records ``tag`` in ``ran`` each time it runs."""
    client = dev_client(app_id)

    @client.function(id="work", trigger=stepline.TriggerEvent(event="schema/work"))
    def work(ctx: stepline.SyncContext) -> str:
        ran.append(tag)
        return ctx.step.run("one", lambda: tag)

    return client, [work]


@contextlib.contextmanager
def root_logging() -> Iterator[None]:
    """Undo what ``stepline dev|start`` does to the root logger, for the tests after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_an_engine_refuses_to_start_on_a_schema_newer_than_it_knows(db: str) -> None:
    newer = migrated_past(db)
    line = refusal(newer, latest(db))
    assert line.startswith(f"the database schema is at version {newer}, newer than this ")
    assert f"knows up to version {latest(db)}" in line
    assert "upgrade stepline" in line
    assert "restore the backup taken before that migration" in line

    for migrating in (True, False):  # Postgres reads the version apart when not migrating
        engine = Engine(fast_settings(db, migrate=migrating))
        with pytest.raises(SchemaTooNewError) as refused:
            arun(engine.start())
        assert (refused.value.found, refused.value.known) == (newer, latest(db))
        assert str(refused.value) == line
        arun(engine.stop())  # nothing started: nothing to stop

    where = dsn.redact(db)
    migrate = run_stepline("migrate", "--db", db)  # never claims to go backwards
    assert (migrate.returncode, migrate.stdout) == (2, "")
    assert migrate.stderr == f"stepline migrate: {where}: {line}\n"

    keys = ("--signing-key", SIGNING_KEY, "--event-key", "e")
    with root_logging():
        start = run_stepline("start", "--db", db, "--port", str(free_port()), *keys)
    assert start.returncode == 2, start
    assert start.stderr.splitlines()[-1] == f"stepline start: {where}: {line}"
    assert "Database" not in start.stdout, "no banner for an engine that did not start"
    assert recorded(db) == newer, "left as it was"


def test_the_embedded_engine_raises_the_refusal_where_the_app_starts_it(db: str) -> None:
    newer = migrated_past(db)
    client, functions = counting_app("schema", [], "embedded")
    embedded = EmbeddedEngine(client, functions, database=db, **FAST)
    with pytest.raises(SchemaTooNewError) as refused:
        embedded.start(timeout=30)
    assert str(refused.value) == refusal(newer, latest(db))
    assert not embedded.running
    assert recorded(db) == newer


@pytest.mark.process
def test_stepline_dev_exits_2_on_a_newer_schema(db: str) -> None:
    newer = migrated_past(db)
    args = ["-m", "stepline.engine", "dev", "--db", db, "--port", str(free_port())]
    done = subprocess.run(
        [sys.executable, "-W", "error", *args],
        env=clean_env(PYTHONIOENCODING="utf-8"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done
    line = f"stepline dev: {dsn.redact(db)}: {refusal(newer, latest(db))}"
    assert done.stderr.splitlines() == [line]
    assert recorded(db) == newer


def test_a_running_engine_stops_leasing_once_the_schema_moves_past_it(
    db: str, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []
    apps = [counting_app("schema", ran, "this")]
    reason = refusal(latest(db) + 1, latest(db))

    async def scenario() -> None:
        async with running(db, apps=apps, schema_check_interval=CHECK) as engine:
            await engine.send({"name": "schema/work"})
            first = await engine.wait_for_run(await only_run(engine, "schema-work"), timeout=20)
            assert first.status is RunStatus.COMPLETED
            assert (await ready(engine)).status_code == 200

            bump(db, latest(db) + 1)  # another node, a newer release, migrated it
            moved = time.monotonic()
            await await_until(
                lambda: engine.worker.refusal, timeout=BOUND, message="the engine refusing"
            )
            noticed = time.monotonic() - moved
            assert noticed < BOUND, noticed
            tasks = {task.get_name(): task for task in engine._tasks}
            await asyncio.wait([tasks["stepline-retention"]], timeout=BOUND)
            assert tasks["stepline-retention"].cancelled(), "no retention deletes either"
            assert not tasks["stepline-worker"].done(), "up, waiting for its stop"

            await engine.send({"name": "schema/work"})  # stored: a newer node may run it
            await asyncio.sleep(10 * CHECK)  # many polls and checks: nothing is leased
            runs = [r for r in await engine.list_runs() if r.run_id != first.run_id]
            assert [r.status for r in runs] == [RunStatus.QUEUED]
            assert ran == ["this"]
            leased = await engine.store.read(lambda tx: tx.queue.queue_summary(time.time()))
            assert leased.get("running", (0, None))[0] == 0

            answer = await ready(engine)  # up, and saying why it does nothing
            assert answer.status_code == 503
            assert json.loads(bytes(answer.body)) == {"status": "unavailable", "reason": reason}
            assert "stepline_schema_too_new 1" in (await engine.metrics()).splitlines()
            await asyncio.sleep(10 * CHECK)  # nothing resumes by itself
            assert ran == ["this"]

    with caplog.at_level(logging.ERROR, logger="stepline.engine"):
        arun(asyncio.wait_for(scenario(), 60))
    [logged] = [r.getMessage() for r in caplog.records if "past this engine" in r.getMessage()]
    assert logged.endswith(reason)


def test_an_older_engine_stops_when_a_newer_one_migrates_and_the_newer_runs_its_work(
    db: str,
) -> None:
    ran: list[str] = []
    older_known = latest(db) - 1

    async def scenario() -> None:
        older_app = [counting_app("schema", ran, "older")]
        async with running(
            db, apps=older_app, schema_check_interval=CHECK, known_schema=older_known
        ) as older:
            assert recorded(db) == older_known, "the older release migrates only what it knows"
            assert (await ready(older)).status_code == 200
            await older.send({"name": "schema/work"})
            done = await older.wait_for_run(await only_run(older, "schema-work"), timeout=20)
            assert done.status is RunStatus.COMPLETED

            newer_app = [counting_app("schema", ran, "newer")]
            async with running(db, apps=newer_app, schema_check_interval=CHECK) as newer:
                assert recorded(db) == latest(db), "the newer release migrated it"
                await await_until(lambda: older.worker.refusal, timeout=BOUND, message="refusal")
                assert older.worker.refusal == refusal(latest(db), older_known)

                sent = await older.send({"name": "schema/work"})  # to the older node
                assert sent
                later = [r for r in await newer.list_runs() if r.run_id != done.run_id]
                [run] = later
                finished = await newer.wait_for_run(run.run_id, timeout=20)
                assert finished.status is RunStatus.COMPLETED
                assert ran == ["older", "newer"], "the newer engine ran it"

                again = Engine(fast_settings(db, known_schema=older_known))  # a restart
                with pytest.raises(SchemaTooNewError, match=f"at version {latest(db)}, newer"):
                    await again.start()
                assert (await ready(newer)).status_code == 200

    arun(asyncio.wait_for(scenario(), 90))
