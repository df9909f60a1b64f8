"""The worker's recovery from database faults, on a real SQLite store, fault by fault.

``_flow/recovery.py``: a job handed back is due at once with no attempt spent; a kept
answer is retried while the lease is surely the worker's own, and dropped (nothing
recorded) once the job may have been leased again; ``StoreHealth`` logs a cause once a
minute at most and leaves the degraded state only on a commit that proves the fault over.
"""

from __future__ import annotations

import asyncio
import logging
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from stepline.engine._clock import Clock, ManualClock
from stepline.engine._model import Job, JobKind
from stepline.engine._store import Store, Tx
from stepline.engine._store.faults import StoreUnavailable
from stepline.engine._store.guard import GuardedStore, StoreHealth
from stepline.engine._store.sqlite import SqliteStore
from stepline.engine._worker import recovery

T = TypeVar("T")
OWNER = "worker-1"
LEASE = 30.0


class Flaky:
    """A store whose next ``failures`` writes fail with a lock, then work."""

    def __init__(self, store: Store, failures: int) -> None:
        self.store = store
        self.failures = failures
        self.tries = 0

    async def atomic(self, work: Callable[[Tx], T], *, small: bool = False) -> T:
        self.tries += 1
        if self.failures > 0:
            self.failures -= 1
            raise StoreUnavailable("locked", "database is locked")
        return await self.store.atomic(work, small=small)


class Holder:
    def __init__(self, store: Any, clock: ManualClock) -> None:
        self.store = store
        self.clock: Clock = clock
        self.owner = OWNER
        self.wake = asyncio.Event()
        self.beat: tuple[float, frozenset[str]] = (0.0, frozenset())


async def _leased(store: SqliteStore, clock: ManualClock) -> Job:
    now = clock.now()
    job = Job(job_id="execute:r1:s1", kind=JobKind.EXECUTE, available_at=now, run_id="r1")
    await store.atomic(lambda tx: tx.queue.enqueue(job))
    (leased,) = await store.atomic(lambda tx: tx.queue.lease_jobs(OWNER, now, now + LEASE, 10))
    return leased


def _run(tmp_path: Path, scenario: Callable[[SqliteStore, ManualClock], Any]) -> Any:
    async def main() -> Any:
        store = SqliteStore(tmp_path / "r.db")
        await store.open()
        try:
            return await scenario(store, ManualClock())
        finally:
            await store.close()

    return asyncio.run(main())


@pytest.mark.slow
def test_a_job_handed_back_is_due_at_once_with_no_attempt_spent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:  # recovery's own pauses, counted, then taken
        pauses.append(seconds)
        await asyncio.sleep(seconds)

    # the module's view of asyncio only: the store and the loop keep the real one
    view = types.SimpleNamespace(**{**vars(asyncio), "sleep": sleep})
    monkeypatch.setattr(recovery, "asyncio", view)

    async def scenario(store: SqliteStore, clock: ManualClock) -> None:
        job = await _leased(store, clock)
        flaky = Flaky(store, failures=3)
        holder = Holder(flaky, clock)
        started = time.monotonic()
        await recovery.hand_back(holder, job)
        took = time.monotonic() - started
        assert flaky.tries == 4
        assert pauses == [recovery.PAUSE] * 3  # one pause a failed try, none longer
        assert took >= 3 * recovery.PAUSE, took
        assert holder.wake.is_set()
        row = await store.read(lambda tx: tx.queue.get_job(job.job_id))
        assert row is not None
        assert (row.lease_owner, row.lease_expires, row.attempt) == (None, None, job.attempt)
        assert row.available_at == clock.now()  # due now
        again = await store.atomic(
            lambda tx: tx.queue.lease_jobs("worker-2", clock.now(), 1e12, 10)
        )
        assert [j.job_id for j in again] == [job.job_id]

    _run(tmp_path, scenario)


@pytest.mark.slow
def test_a_kept_answer_is_recorded_once_the_fault_clears(tmp_path: Path) -> None:
    async def scenario(store: SqliteStore, clock: ManualClock) -> None:
        job = await _leased(store, clock)
        flaky = Flaky(store, failures=2)

        def record(tx: Tx) -> str:
            tx.queue.delete_job(job.job_id)  # what recording an answer does to a finished call
            return "recorded"

        assert await recovery.commit(Holder(flaky, clock), job, record) == "recorded"
        assert flaky.tries == 3
        assert await store.read(lambda tx: tx.queue.get_job(job.job_id)) is None

    _run(tmp_path, scenario)


@pytest.mark.parametrize("who", ["this worker", "another worker"])
def test_a_kept_answer_is_dropped_once_the_job_was_leased_again(tmp_path: Path, who: str) -> None:
    """The lease lapsed during the fault and the job was leased again (by another worker,
    or by this one: the same owner, a later expiry): nothing is recorded."""

    async def scenario(store: SqliteStore, clock: ManualClock) -> None:
        job = await _leased(store, clock)
        flaky = Flaky(store, failures=1)
        clock.advance(LEASE + 1)  # the fault outlasted the lease; the queue leased it again
        owner = OWNER if who == "this worker" else "worker-2"
        now = clock.now()
        await store.atomic(lambda tx: tx.queue.lease_jobs(owner, now, now + LEASE, 10))
        ran: list[str] = []
        with pytest.raises(StoreUnavailable):
            await recovery.commit(Holder(flaky, clock), job, lambda tx: ran.append("x"))
        assert ran == []
        await recovery.hand_back(Holder(store, clock), job)  # and no hand-back either
        row = await store.read(lambda tx: tx.queue.get_job(job.job_id))
        assert row is not None
        assert (row.lease_owner, row.lease_expires) == (owner, now + LEASE)

    _run(tmp_path, scenario)


def test_a_heartbeat_extends_how_long_an_answer_is_kept(tmp_path: Path) -> None:
    async def scenario(store: SqliteStore, clock: ManualClock) -> None:
        job = await _leased(store, clock)
        clock.advance(LEASE - 1)
        until = clock.now() + LEASE
        await store.atomic(lambda tx: tx.queue.extend_leases(OWNER, [job.job_id], until))
        holder = Holder(Flaky(store, failures=1), clock)
        holder.beat = (until, frozenset({job.job_id}))
        clock.advance(5)  # past the first lease, within the heartbeat's
        assert await recovery.commit(holder, job, lambda tx: "kept") == "kept"

    _run(tmp_path, scenario)


def test_health_logs_a_cause_once_a_minute_and_clears_only_on_proof(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [1000.0]
    health = StoreHealth(clock=lambda: now[0])
    error = OSError("database or disk is full")
    with caplog.at_level(logging.INFO, logger="stepline.engine"):
        for _ in range(5):
            health.failed("disk full", error, write=True)
        now[0] += 30
        health.failed("disk full", error, write=True)
        health.failed("locked", error, write=False)  # another cause: its own line
        now[0] += 31
        health.failed("disk full", error, write=True)
        assert _degraded(health)
        health.wrote(changed=False)  # an empty commit needs no disk space: proves nothing
        assert health.report() is not None
        assert health.report()["cause"] == "disk full"  # type: ignore[index]
        health.wrote(changed=True)
    lines = [r.getMessage() for r in caplog.records]
    full = [line for line in lines if "database fault (disk full)" in line]
    assert len(full) == 2, lines
    assert "(5 more since the last report)" in full[1]
    assert len([line for line in lines if "database fault (locked)" in line]) == 1
    assert not _degraded(health)
    assert health.counts == {"disk full": 7, "locked": 1}
    assert any("accepts writes again after 61.0 s (disk full)" in line for line in lines)


def test_a_lock_is_over_with_any_commit(tmp_path: Path) -> None:
    async def scenario(store: SqliteStore, clock: ManualClock) -> None:
        guarded = GuardedStore(store)
        guarded.health.failed("locked", OSError("database is locked"), write=True)
        await guarded.atomic(lambda tx: None)  # it got the write lock: the fault is over
        assert not _degraded(guarded.health)
        guarded.health.failed("read-only", OSError("readonly database"), write=True)
        await guarded.atomic(lambda tx: None)
        assert _degraded(guarded.health)  # a write that wrote nothing proves nothing
        await guarded.atomic(lambda tx: tx.claim_key("s", "k", clock.now(), clock.now()))
        assert not _degraded(guarded.health)

    _run(tmp_path, scenario)


def _degraded(health: StoreHealth) -> bool:
    return health.degraded  # a call: mypy narrows a property across asserts
