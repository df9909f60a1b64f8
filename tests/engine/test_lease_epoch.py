"""The fencing token: every lease of a call raises its ``lease_epoch``, on every store.

``RunTransitions.apply`` records an answer only if the call's row still has the owner and
the epoch the call was leased with; the partition drill (``faults/test_pg_partition.py``)
shows what that stops. Here: each way of leasing raises the epoch, by any owner, and what
does not lease (a heartbeat, a hand-back, a retry) leaves it.
"""

from __future__ import annotations

from stepline.engine._model import Job
from stepline.engine._store import Store, Tx
from tests.engine.test_store_contract import atomic, job, run_record, with_store


def _epoch(tx: Tx, job_id: str) -> int:
    found = tx.queue.get_job(job_id)
    assert found is not None
    return found.lease_epoch


def test_every_lease_raises_the_epoch_and_nothing_else_does(db: str) -> None:
    async def body(store: Store) -> None:
        await atomic(store, lambda tx: tx.queue.enqueue(job("J", 10.0, run_id="R")))
        assert await store.read(lambda tx: _epoch(tx, "J")) == 0
        (first,) = await atomic(store, lambda tx: tx.queue.lease_jobs("w1", 100.0, 130.0, 5))
        assert (first.lease_owner, first.lease_epoch) == ("w1", 1)
        # a heartbeat extends the lease it holds: the same epoch
        await atomic(store, lambda tx: tx.queue.extend_leases("w1", ["J"], 160.0))
        assert await store.read(lambda tx: _epoch(tx, "J")) == 1
        # lapsed, and taken by another worker: the epoch the old call carries is stale
        (second,) = await atomic(store, lambda tx: tx.queue.lease_jobs("w2", 170.0, 200.0, 5))
        assert (second.lease_owner, second.lease_epoch) == ("w2", 2)
        # lapsed again, and taken back by the first worker: the owner matches its old
        # call's, the epoch does not
        taken = await atomic(store, lambda tx: tx.queue.lease_job("J", "w1", 210.0, 240.0))
        assert taken is not None
        assert (taken.lease_owner, taken.lease_epoch) == ("w1", 3)

        # handed back (or retried): no lease, the epoch stays for the next one to raise
        def hand_back(tx: Tx) -> None:
            row = tx.queue.get_job("J", lock=True)
            assert row is not None
            row.lease_owner, row.lease_expires, row.available_at = None, None, 215.0
            tx.queue.update_job(row)

        await atomic(store, hand_back)
        assert await store.read(lambda tx: _epoch(tx, "J")) == 3

        def by_run(tx: Tx) -> Job | None:  # run affinity: the run's next call, by its run
            return tx.queue.lease_run_call("R", "w2", 220.0, 250.0)

        nxt = await atomic(store, by_run)
        assert nxt is not None
        assert (nxt.lease_owner, nxt.lease_epoch) == ("w2", 4)
        assert await store.read(lambda tx: _epoch(tx, "J")) == 4

    with_store(db, body)


def test_a_call_queued_already_leased_has_the_first_epoch(db: str) -> None:
    async def body(store: Store) -> None:
        def queue_leased(tx: Tx) -> Job | None:
            tx.insert_run(run_record("R"))
            tx.queue.lease_calls("R", "w1", 100.0, 130.0)
            tx.queue.enqueue(job("K", 100.0, run_id="R"))
            leased = tx.queue.lease_run_call("R", "w1", 100.0, 130.0)
            tx.queue.unlease_calls()
            return leased

        leased = await atomic(store, queue_leased)
        assert leased is not None
        assert (leased.lease_owner, leased.lease_epoch) == ("w1", 1)
        assert await store.read(lambda tx: _epoch(tx, "K")) == 1
        # taken over after it lapsed: the next epoch
        (again,) = await atomic(store, lambda tx: tx.queue.lease_jobs("w2", 140.0, 170.0, 5))
        assert (again.job_id, again.lease_epoch) == ("K", 2)

    with_store(db, body)
