"""Concurrency limits, enforced when a call is leased.

A call (an ``execute`` job) of a run with concurrency keys holds one slot per key from
the moment it is leased until its answer is recorded; sleeping or waiting runs hold
none. A call that does not fit is parked on the full key, out of the due set, so one
hot key never blocks the queue for others; each released slot unparks the oldest
parked call of that key (priority boosts count as age). Slots expire with the lease,
so a dead worker's slots come back by themselves, and parked calls are re-examined
every ``recheck`` seconds in case a wake-up was missed.
"""

from __future__ import annotations

from typing import Any

from stepline.engine._model import Job, JobKind
from stepline.engine._store import Tx


def admit(
    tx: Tx, jobs: list[Job], *, now: float, until: float, recheck: float
) -> tuple[list[Job], int]:
    """Keep the leased jobs that fit their limits, park the others.

    Returns:
        The admitted jobs and how many were parked.
    """
    for key, count in tx.flow.expire_slots(now).items():
        _wake(tx, key, count)
    admitted: list[Job] = []
    parked = 0
    for job in jobs:
        keys = _keys(job)
        if keys:
            blocked = tx.flow.acquire_slots(job.job_id, keys, now, until)
            if blocked is not None:
                tx.queue.park_job(job.job_id, blocked, now + recheck)
                # it may have been woken by a slot freed on another of its keys: pass
                # that wake-up on, or the next call parked there waits for the recheck
                for key, limit in keys:
                    if key != blocked:
                        _wake(tx, key, limit - tx.flow.count_slots(key, now))
                if job.run_id is not None:
                    waiting = {"reason": "concurrency", "key": blocked, "since": now}
                    tx.set_waiting(job.run_id, waiting)
                parked += 1
                continue
        admitted.append(job)
    return admitted, parked


def limited(job: Job) -> bool:
    """Whether ``job`` takes concurrency slots when leased (its function has limits)."""
    return bool(_keys(job))


def release(tx: Tx, job: Job, now: float) -> None:
    """Free a finished call's slots and unpark as many waiting calls as now fit."""
    keys = _keys(job)
    if not keys:
        return
    released = set(tx.flow.release_slots(job.job_id))
    for key, limit in keys:
        if key in released:
            _wake(tx, key, limit - tx.flow.count_slots(key, now))


def _wake(tx: Tx, key: str, count: int) -> None:
    for run_id in tx.queue.unpark_jobs(key, count):
        tx.set_waiting(run_id, None)


def _keys(job: Job) -> list[tuple[str, int]]:
    if job.kind is not JobKind.EXECUTE:
        return []
    raw: Any = job.payload.get("keys")
    if not isinstance(raw, list):
        return []
    return [(str(key), int(limit)) for key, limit in raw]
