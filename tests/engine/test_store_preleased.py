"""Calls inserted already leased (``lease_calls``), on both stores.

A worker that records a call's answer, or starts runs, leases the next call in the same
transaction; ``lease_calls`` has the call inserted leased, so ``lease_run_call`` takes
it with no statement. What no one takes must be back in the queue at commit, and a
call changed after its insert (deleted, parked) must not be handed out.
"""

from __future__ import annotations

from typing import Any

from stepline.engine._model import Job, JobKind
from stepline.engine._store import Store, Tx

from .test_store_contract import atomic, job, run_record, with_store
from .test_store_run_rows import counting

NOW, UNTIL = 100.0, 130.0


def call(job_id: str, run_id: str, at: float = 90.0, **changes: Any) -> Job:
    return job(job_id, at, run_id=run_id, step_id="step", **changes)


def test_a_call_queued_while_leasing_is_taken_with_no_statement(db: str) -> None:
    async def body(store: Store) -> None:
        def work(tx: Tx) -> tuple[Job | None, list[str]]:
            tx.queue.lease_calls("r1", "w1", NOW, UNTIL)
            assert tx.queue.enqueue(call("r1-next", "r1"))
            sent = counting(tx)
            taken = tx.queue.lease_run_call("r1", "w1", NOW, UNTIL)
            tx.queue.unlease_calls()
            return taken, sent

        taken, sent = await atomic(store, work)
        assert sent == []
        assert taken is not None
        assert (taken.job_id, taken.lease_owner, taken.lease_expires) == ("r1-next", "w1", UNTIL)
        stored = await store.read(lambda tx: tx.queue.get_job("r1-next"))
        assert stored is not None
        assert (stored.lease_owner, stored.available_at) == ("w1", UNTIL)
        # leased: no other worker gets it before the lease runs out
        assert await atomic(store, lambda tx: tx.queue.lease_jobs("w2", NOW, UNTIL, 5)) == []

    with_store(db, body)


def test_calls_no_one_took_are_due_again_as_queued(db: str) -> None:
    async def body(store: Store) -> None:
        def work(tx: Tx) -> float | None:
            tx.queue.lease_calls("r1", "w1", NOW, UNTIL)
            tx.queue.enqueue(call("r1-next", "r1", at=80.0))
            due = tx.queue.next_job_at()  # leased in the row, due for the worker's room check
            tx.queue.unlease_calls()
            return due

        assert await atomic(store, work) == 80.0
        stored = await store.read(lambda tx: tx.queue.get_job("r1-next"))
        assert stored is not None
        assert (stored.lease_owner, stored.lease_expires, stored.available_at) == (
            None,
            None,
            80.0,
        )
        taken = await atomic(store, lambda tx: tx.queue.lease_jobs("w2", NOW, UNTIL, 5))
        assert [j.job_id for j in taken] == ["r1-next"]

    with_store(db, body)


def test_only_the_asked_for_calls_are_inserted_leased(db: str) -> None:
    async def body(store: Store) -> None:
        def work(tx: Tx) -> None:
            tx.insert_run(run_record("fresh"))
            tx.queue.lease_calls(None, "w1", NOW, UNTIL)  # the first calls of runs made here
            tx.queue.enqueue(call("fresh-1", "fresh"))
            tx.queue.enqueue(call("old-1", "old"))  # a run this transaction did not create
            tx.queue.lease_calls("r1", "w1", NOW, UNTIL)
            tx.queue.enqueue(call("r1-late", "r1", at=NOW + 5))  # not due yet
            tx.queue.enqueue(call("r2-1", "r2"))  # another run's
            keyed = {"keys": [["fn:app-fn", 1]]}
            tx.queue.enqueue(call("r1-keyed", "r1", payload=keyed))  # concurrency keys: queued
            tx.queue.enqueue(job("r1-wake", 90.0, run_id="r1", kind=JobKind.WAKE))  # not a call

        await atomic(store, work)  # never unleased: what was leased stays leased
        owners = {}
        for job_id in ("fresh-1", "old-1", "r1-late", "r2-1", "r1-keyed", "r1-wake"):
            stored = await store.read(lambda tx, job_id=job_id: tx.queue.get_job(job_id))
            assert stored is not None
            owners[job_id] = stored.lease_owner
        assert owners == {
            "fresh-1": "w1",
            "old-1": None,
            "r1-late": None,
            "r2-1": None,
            "r1-keyed": None,
            "r1-wake": None,
        }

    with_store(db, body)


def test_a_call_deleted_or_parked_after_its_insert_is_not_handed_out(db: str) -> None:
    async def body(store: Store) -> None:
        def work(tx: Tx) -> tuple[Job | None, Job | None]:
            tx.queue.lease_calls("r1", "w1", NOW, UNTIL)
            tx.queue.enqueue(call("r1-next", "r1"))
            tx.queue.delete_run_jobs("r1")  # the run ended in the same transaction
            ended = tx.queue.lease_run_call("r1", "w1", NOW, UNTIL)
            tx.queue.lease_calls("r2", "w1", NOW, UNTIL)
            tx.queue.enqueue(call("r2-next", "r2"))
            tx.queue.park_job("r2-next", "paused:app-fn", NOW + 60)  # its function was paused
            parked = tx.queue.lease_run_call("r2", "w1", NOW, UNTIL)
            tx.queue.unlease_calls()
            return ended, parked

        assert await atomic(store, work) == (None, None)
        parked = await store.read(lambda tx: tx.queue.get_job("r2-next"))
        assert parked is not None
        assert (parked.lease_owner, parked.available_at) == (None, NOW + 60)

    with_store(db, body)
