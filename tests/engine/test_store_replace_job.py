"""A call answered and the run's next call queued in one statement (both stores).

``enqueue(job, replacing=old)`` deletes ``old`` and inserts ``job``: on Postgres as one
statement (a ``DELETE`` in a ``WITH``), on SQLite as one too (the old job's row rewritten
as the new one's, ``UPDATE OR IGNORE``), falling back to two there when the old job is
gone or the new one is queued already. Whatever the store does, the result must be the
two statements' result, including when the ids are the same, the new job is queued
already, or the old one is gone.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from stepline.engine._model import JobKind
from stepline.engine._store import Store, Tx

from .test_store_contract import atomic, job, with_store
from .test_store_run_rows import counting


def _ids(tx: Tx) -> list[str]:
    rows = tx.execute("SELECT job_id FROM jobs ORDER BY job_id")  # type: ignore[attr-defined]
    return [str(row[0]) for row in rows]


def test_enqueue_replacing_deletes_the_old_job_and_inserts_the_new(db: str) -> None:
    async def body(store: Store) -> None:
        await atomic(store, lambda tx: tx.queue.enqueue(job("old", 1.0, run_id="r2")))
        await atomic(store, lambda tx: tx.queue.enqueue(job("taken", 1.0)))

        new = job("new", 2.0, run_id="r2", step_id="s1", attempt=2, payload={"x": [1]})
        # a parked job's row rewritten: the new job is not parked
        await atomic(
            store, lambda tx: tx.execute("UPDATE jobs SET parked_on = 'f' WHERE job_id = 'old'")
        )

        def replace(tx: Tx) -> tuple[bool, list[str], int]:
            sent = counting(tx)
            inserted = tx.queue.enqueue(new, replacing="old")
            return inserted, list(tx.queued), len(sent)

        inserted, queued, statements = await atomic(store, replace)
        assert (inserted, queued) == (True, ["new"])
        assert statements == 1
        assert await store.read(_ids) == ["new", "taken"]
        assert await store.read(lambda tx: tx.queue.get_job("new")) == new
        parked = await store.read(
            lambda tx: tx.execute("SELECT parked_on, queued_at FROM jobs WHERE job_id = 'new'")
        )
        assert list(parked) == [(None, 2.0)]

        # another run's job (or kind) replaced: the same result (two statements on SQLite)
        other = job("other", 2.5, run_id="r3", kind=JobKind.WAKE)
        assert await atomic(store, lambda tx: tx.queue.enqueue(other, replacing="new"))
        assert await store.read(_ids) == ["other", "taken"]
        assert await store.read(lambda tx: tx.queue.get_job("other")) == other
        await atomic(store, lambda tx: tx.queue.enqueue(new, replacing="other"))
        assert await store.read(lambda tx: tx.queue.get_job("new")) == new

        # queued already: not inserted again (and the old job still goes)
        await atomic(store, lambda tx: tx.queue.enqueue(job("old", 1.0)))
        assert not await atomic(
            store, lambda tx: tx.queue.enqueue(job("taken", 3.0), replacing="old")
        )
        assert await store.read(_ids) == ["new", "taken"]
        taken = await store.read(lambda tx: tx.queue.get_job("taken"))
        assert taken is not None
        assert taken.available_at == 1.0

        # the old job gone already: the new one is still queued
        assert await atomic(store, lambda tx: tx.queue.enqueue(job("later", 5.0), replacing="gone"))
        assert await store.read(_ids) == ["later", "new", "taken"]
        await atomic(store, lambda tx: tx.queue.delete_job("later"))

        # the same id: deleted, then inserted anew (a single statement would keep neither)
        assert await atomic(
            store, lambda tx: tx.queue.enqueue(job("taken", 4.0), replacing="taken")
        )
        taken = await store.read(lambda tx: tx.queue.get_job("taken"))
        assert taken is not None
        assert taken.available_at == 4.0

    with_store(db, body)


def test_a_runs_next_call_rewrites_only_the_queues_key_and_due_pages(tmp_path: Path) -> None:
    """On SQLite a call's row becomes the run's next call with three pages written to the
    log: the row's, its id's and its due time's (not ``jobs_run``, whose ``run_id`` stays,
    nor ``jobs_parked``, which holds parked jobs only): five before."""
    path = tmp_path / "engine.db"

    def log_frames(mode: str) -> int:  # checkpointing: the frames the log holds
        with contextlib.closing(sqlite3.connect(path)) as conn:
            return int(conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()[1])

    async def body(store: Store) -> None:
        await atomic(
            store, lambda tx: tx.queue.enqueue(job("call-1", 1.0, run_id="r1", step_id="a"))
        )
        log_frames("TRUNCATE")  # the log starts over empty
        nxt = job("call-2", 2.0, run_id="r1", step_id="b", attempt=1)
        assert await atomic(store, lambda tx: tx.queue.enqueue(nxt, replacing="call-1"))
        assert log_frames("PASSIVE") == 3
        assert await store.read(_ids) == ["call-2"]

    with_store(str(path), body)
