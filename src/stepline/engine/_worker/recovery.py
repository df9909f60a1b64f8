"""How the worker rides out a database fault (``StoreUnavailable``) without losing time.

A job whose transaction failed is not left to its lease (that would retry it only when the
lease lapses, 30 s later):

* **The answer of a call is kept** (``commit``): when recording an SDK call's answer fails,
  the worker tries the same transaction again every ``PAUSE`` seconds for as long as the
  job's lease is surely its own, so the answer is recorded within a moment of the fault
  clearing and the step does not run again. An answer that says the call failed spends
  its attempt then, as it would have.
* **A job it cannot finish goes back at once** (``hand_back``): a fault before the call (or
  in a job that is all database work: a wake-up, a timeout, a cron tick) makes the job due
  again, its lease and concurrency slots released, no attempt spent; the worker's loop
  leases it again as soon as the database takes writes.
* **The loop backs off briefly** (``pause``): ``PAUSE`` seconds after a fault, a second
  after anything else; the fault was logged once by the store's guard, not per retry.

"Surely its own": the lease this worker last committed for the job (at lease time, or by
a heartbeat: ``Holder.beat``) has not expired, checked inside the retried transaction
against the job's row. Past that, another worker, or this one, may lease the job again,
so the answer is dropped and the job left to the queue, exactly as a lapsed lease is.
A heartbeat committing in the very transaction group that clears the fault makes the row's
expiry later than the one known here: that too drops the answer (the check fails safe),
and the hand-back that follows, seeing the heartbeat by then, makes the call due at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Protocol, TypeVar

from stepline.engine._clock import Clock
from stepline.engine._flow import concurrency as _concurrency
from stepline.engine._model import Job
from stepline.engine._store import Store, Tx
from stepline.engine._store.faults import StoreUnavailable

T = TypeVar("T")
logger = logging.getLogger("stepline.engine")
#: Seconds between two tries of a transaction a fault failed (a lock or busy timeout adds
#: its own wait): the job is retried within about this long of the fault clearing.
PAUSE = 0.25


class Holder(Protocol):
    """What of the worker holding jobs this module uses."""

    store: Store
    clock: Clock
    owner: str
    wake: asyncio.Event
    #: the last heartbeat that committed: the lease expiry it set, and for which jobs
    beat: tuple[float, frozenset[str]]


class _Lapsed(Exception):
    """The job's lease may no longer be this worker's: record nothing."""


async def pause(exc: Exception, log: logging.Logger, message: str) -> None:
    """The worker's loop failed: log (unless a fault the guard logged) and back off."""
    if isinstance(exc, StoreUnavailable):
        await asyncio.sleep(PAUSE)
        return
    log.error("%s; retrying in a second", message, exc_info=exc)
    await asyncio.sleep(1.0)


def failed(exc: Exception, log: logging.Logger, message: str, *args: object) -> None:
    """Log a failed background write: one line for a fault, a traceback for the rest."""
    if isinstance(exc, StoreUnavailable):
        log.debug(message + ": %s", *args, exc)
    else:
        log.error(message, *args, exc_info=exc)


def held_until(holder: Holder, job: Job) -> float:
    """The latest lease expiry ``holder`` knows it committed for ``job``."""
    until, ids = holder.beat
    return max(job.lease_expires or 0.0, until if job.job_id in ids else 0.0)


async def commit(holder: Holder, job: Job, work: Callable[[Tx], T]) -> T:
    """``work`` in a (small) transaction; on a fault, again every ``PAUSE`` s while the
    lease holds.

    Raises:
        StoreUnavailable: the fault lasted until the lease could have lapsed: the
            answer is dropped and the job left to the queue.
    """
    try:
        return await holder.store.atomic(work, small=True)
    except StoreUnavailable as exc:
        fault = exc
    while True:  # a stop cancels it (after its grace); the lease bounds it anyway
        until = held_until(holder, job)
        if holder.clock.now() + PAUSE >= until:
            break
        await asyncio.sleep(PAUSE)
        try:
            guarded = functools.partial(_guarded, holder=holder, job=job, until=until, work=work)
            return await holder.store.atomic(guarded, small=True)
        except StoreUnavailable as exc:
            fault = exc
        except _Lapsed:
            break
    raise fault


async def hand_back(holder: Holder, job: Job) -> None:
    """Make ``job`` due again now (lease and slots released, no attempt spent).

    Tried every ``PAUSE`` s until the database takes it, or until the lease may have
    lapsed (then the queue has the job already).
    """
    while True:
        until = held_until(holder, job)
        if holder.clock.now() >= until:
            break
        try:
            release = functools.partial(_release, holder=holder, job=job, until=until)
            if await holder.store.atomic(release):
                holder.wake.set()
                logger.info("job %s handed back after a database fault", job.job_id)
            return
        except StoreUnavailable:
            await asyncio.sleep(PAUSE)
    logger.info("job %s left to its lease after a database fault", job.job_id)


def _ours(tx: Tx, holder: Holder, job: Job, until: float) -> Job | None:
    """The job's row, if its lease is still the one this worker committed (locked)."""
    row = tx.queue.get_job(job.job_id, lock=True)
    if holder.clock.now() >= until:
        raise _Lapsed
    if row is None:
        return None
    if row.lease_owner != holder.owner or (row.lease_expires or 0.0) > until:
        raise _Lapsed  # leased again since: by another worker, or by this one
    return row


def _guarded(tx: Tx, *, holder: Holder, job: Job, until: float, work: Callable[[Tx], T]) -> T:
    _ours(tx, holder, job, until)  # a row gone is the run's end: ``work`` sees to it
    return work(tx)


def _release(tx: Tx, *, holder: Holder, job: Job, until: float) -> bool:
    try:
        row = _ours(tx, holder, job, until)
    except _Lapsed:
        return False
    if row is None:
        return False
    now = holder.clock.now()
    _concurrency.release(tx, row, now)
    row.lease_owner, row.lease_expires, row.available_at = None, None, now
    tx.queue.update_job(row)
    return True
