"""A call answered and the run's next call queued in one statement (both stores).

``enqueue(job, replacing=old)`` deletes ``old`` and inserts ``job``: on Postgres as one
statement (a ``DELETE`` in a ``WITH``), on SQLite as two. Whatever the store does, the
result must be the two statements' result, including when the ids are the same or the
new job is queued already.
"""

from __future__ import annotations

from stepline.engine._store import Store, Tx

from .test_store_contract import atomic, job, with_store
from .test_store_run_rows import counting


def _ids(tx: Tx) -> list[str]:
    rows = tx._x("SELECT job_id FROM jobs ORDER BY job_id")  # type: ignore[attr-defined]
    return [str(row[0]) for row in rows]


def test_enqueue_replacing_deletes_the_old_job_and_inserts_the_new(db: str) -> None:
    async def body(store: Store) -> None:
        await atomic(store, lambda tx: [tx.enqueue(job(i, 1.0)) for i in ("old", "taken")])

        def replace(tx: Tx) -> tuple[bool, list[str], int]:
            sent = counting(tx)
            inserted = tx.enqueue(job("new", 2.0), replacing="old")
            return inserted, list(tx.queued), len(sent)

        inserted, queued, statements = await atomic(store, replace)
        assert (inserted, queued) == (True, ["new"])
        assert statements == (1 if db.startswith("postgres") else 2)
        assert await store.read(_ids) == ["new", "taken"]

        # queued already: not inserted again (and the old job still goes)
        await atomic(store, lambda tx: tx.enqueue(job("old", 1.0)))
        assert not await atomic(store, lambda tx: tx.enqueue(job("taken", 3.0), replacing="old"))
        assert await store.read(_ids) == ["new", "taken"]
        taken = await store.read(lambda tx: tx.get_job("taken"))
        assert taken is not None
        assert taken.available_at == 1.0

        # the same id: deleted, then inserted anew (a single statement would keep neither)
        assert await atomic(store, lambda tx: tx.enqueue(job("taken", 4.0), replacing="taken"))
        taken = await store.read(lambda tx: tx.get_job("taken"))
        assert taken is not None
        assert taken.available_at == 4.0

    with_store(db, body)
