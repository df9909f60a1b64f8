"""A heartbeat cut off half-way must leave nothing the server keeps: no pipeline on Postgres.

``idle_in_transaction_session_timeout`` (docs/production-postgres.md) ends a transaction
whose client fell silent, releasing the rows it locked, so that the other nodes' leases
(which skip locked rows) take its calls over. The server arms it only once it has
answered a ``Sync``. psycopg's ``executemany`` is a pipeline: its statements go in one
write and their ``Sync`` in another, so a client cut off between the two leaves a backend
that ran the ``UPDATE`` (the call's row locked) and waits for the ``Sync`` for good. The
partition drill (``test_pg_partition.py``) once lost its takeover to a backend of the
cut-off node that held the call's row past the timeout, its last statement the lease
extension: this is one way that happens.

Here: what the server does with a pipeline left without its ``Sync``, and that a lease
extension on Postgres sends each of its statements whole (one ``execute`` a table, the
job ids as one array), never ``executemany``.
"""

from __future__ import annotations

import contextlib
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from stepline.engine._store import Store, Tx
from tests._support.databases import postgres_schema
from tests.engine.test_store_contract import atomic, job, with_store

pytestmark = [pytest.mark.postgres]


@pytest.fixture
def schema() -> Iterator[str]:
    with postgres_schema() as url:
        yield url


def _with_timeout(url: str, ms: int) -> str:
    """``url`` whose sessions end a transaction left idle ``ms`` milliseconds."""
    separator = "&" if "?" in url else "?"
    options = urllib.parse.quote(f"-c idle_in_transaction_session_timeout={ms}")
    # the schema's own options=-csearch_path=... is the URL's first option: keep it
    return (
        url.replace("options=", f"options={options}%20", 1)
        if "options=" in url
        else (f"{url}{separator}options={options}")
    )


def test_a_pipeline_left_without_its_sync_outlives_the_idle_timeout(schema: str) -> None:
    with psycopg.connect(schema, autocommit=True) as admin:
        admin.execute("CREATE TABLE rows (k int PRIMARY KEY, v int)")
        admin.execute("INSERT INTO rows VALUES (1, 0)")
        # closed, not left as a context manager: that would roll back through the pipeline
        with contextlib.closing(
            psycopg.connect(_with_timeout(schema, 500), autocommit=True)
        ) as cut:
            assert cut.execute("SHOW idle_in_transaction_session_timeout").fetchone() == ("500ms",)
            pid = cut.info.backend_pid
            cut.execute("BEGIN")
            pg = cut.pgconn
            pg.enter_pipeline_mode()  # what executemany sends, up to its Sync
            pg.send_query_params(b"UPDATE rows SET v = v + 1 WHERE k = $1", [b"1"])
            pg.send_flush_request()
            while pg.flush():
                pass
            time.sleep(1.5)  # three times the timeout
            state = admin.execute(
                "SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,)
            ).fetchone()
            assert state == ("active",), "the server ended it: the premise no longer holds"
            locked = admin.execute("SELECT k FROM rows FOR UPDATE SKIP LOCKED").fetchall()
            assert locked == [], "its row is still locked, skipped by every other lease"
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

        # the same statement sent whole (its Sync in the same write): ended at the timeout
        with contextlib.closing(
            psycopg.connect(_with_timeout(schema, 500), autocommit=True)
        ) as whole:
            pid = whole.info.backend_pid
            whole.execute("BEGIN")
            whole.execute("UPDATE rows SET v = v + 1 WHERE k = 1")
            time.sleep(1.5)
            gone = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)
            ).fetchone()
            assert gone == (0,)
            assert admin.execute("SELECT k FROM rows FOR UPDATE SKIP LOCKED").fetchall() == [(1,)]


def test_a_lease_extension_sends_each_statement_whole(
    schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipelined: list[str] = []
    many = psycopg.Cursor.executemany

    def recorded(self: Any, query: Any, params_seq: Any, **kwargs: Any) -> Any:
        pipelined.append(str(query))
        return many(self, query, params_seq, **kwargs)

    async def body(store: Store) -> None:
        def seed(tx: Tx) -> None:
            for name in ("A", "B", "C"):
                tx.queue.enqueue(job(name, 10.0, run_id=f"run-{name}"))

        await atomic(store, seed)
        leased = await atomic(store, lambda tx: tx.queue.lease_jobs("w1", 100.0, 130.0, 5))
        assert sorted(j.job_id for j in leased) == ["A", "B", "C"]
        monkeypatch.setattr(psycopg.Cursor, "executemany", recorded)
        await atomic(store, lambda tx: tx.queue.extend_leases("w1", ["A", "B", "gone"], 160.0))
        await atomic(store, lambda tx: tx.queue.extend_leases("w2", ["C"], 190.0))  # not its
        monkeypatch.setattr(psycopg.Cursor, "executemany", many)
        assert pipelined == []

        def leases(tx: Tx) -> dict[str, float | None]:
            found = {name: tx.queue.get_job(name) for name in ("A", "B", "C")}
            return {name: None if j is None else j.lease_expires for name, j in found.items()}

        assert await store.read(leases) == {"A": 160.0, "B": 160.0, "C": 130.0}

    with_store(schema, body)


def test_several_rows_go_as_one_simple_query_with_their_values(
    schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``execute_many`` of several rows on Postgres: no pipeline, one message (its Sync
    implied), and each value stored as the statement's own binding stores it."""
    with psycopg.connect(schema, autocommit=True) as admin:
        admin.execute(
            "CREATE TABLE kinds (k text PRIMARY KEY, n bigint, f double precision,"
            " j jsonb, b bytea, t text)"
        )
    sent: list[str] = []
    many = psycopg.Cursor.executemany
    client_execute = psycopg.ClientCursor.execute

    def pipelined(self: Any, query: Any, params_seq: Any, **kwargs: Any) -> Any:
        sent.append("executemany")
        return many(self, query, params_seq, **kwargs)

    def simple(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        sent.append("simple" if params is None else "bound")
        return client_execute(self, query, params, **kwargs)

    rows: list[tuple[Any, ...]] = [
        ("it's", 2**40, 1732780000.123456, '{"a": [1, "%s"]}', b"\x00\xff'", "50% ?"),
        ("b", None, float("inf"), None, b"", ""),
        ("c", -7, 0.1, '"x"', None, "line\nbreak\\"),
    ]
    upsert = (
        "INSERT INTO kinds (k, n, f, j, b, t) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (k) DO UPDATE SET n = excluded.n"
    )

    async def body(store: Store) -> None:
        monkeypatch.setattr(psycopg.Cursor, "executemany", pipelined)
        monkeypatch.setattr(psycopg.ClientCursor, "execute", simple)
        await atomic(store, lambda tx: tx.execute_many(upsert, rows))
        monkeypatch.undo()
        assert sent == ["simple"]

        def read(tx: Tx) -> list[tuple[Any, ...]]:
            return [tuple(r) for r in tx.execute("SELECT k, n, f, j, b, t FROM kinds").fetchall()]

        stored = sorted(await store.read(read), key=lambda r: r[0])
        assert stored == [
            ("b", None, float("inf"), None, b"", ""),
            ("c", -7, 0.1, "x", None, "line\nbreak\\"),
            ("it's", 2**40, 1732780000.123456, {"a": [1, "%s"]}, b"\x00\xff'", "50% ?"),
        ]

    with_store(schema, body)
