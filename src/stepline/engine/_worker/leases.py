"""The transactions that lease calls, extend and drop leases (the worker's, in ``_worker``).

A call is leased with what it needs to run (``Snapshot``): its run, marked started, and
its steps with their revision, read in the lease's own transaction.
"""

from __future__ import annotations

from stepline._status import RunStatus
from stepline.engine._clock import Clock
from stepline.engine._control import pause as _pause
from stepline.engine._flow import concurrency as _concurrency
from stepline.engine._model import Job, JobKind, Run
from stepline.engine._runs.view import KnownSteps, Snapshot
from stepline.engine._store import Tx


def due(
    tx: Tx, *, clock: Clock, owner: str, seconds: float, limit: int, recheck: float
) -> tuple[list[Job], int, float, dict[str, Snapshot], float | None]:
    """Lease up to ``limit`` due jobs for ``owner``: those admitted, how many were parked
    or held, the time they were leased at, each call's snapshot, the next job's time."""
    # The time is read inside the transaction, so a retried attempt leases until a
    # fresh deadline rather than one that may already have passed.
    now = clock.now()
    until = now + seconds
    leased = tx.queue.lease_jobs(owner, now, until, limit)
    jobs, held = _pause.hold(tx, leased, now)  # paused functions'
    admitted, parked = _concurrency.admit(tx, jobs, now=now, until=until, recheck=recheck)
    # the state each call needs is read here, in the lease's own transaction: one round
    # trip to the database per call fewer, on the path every step takes
    snapshots: dict[str, Snapshot] = {}
    for job in admitted:
        if job.kind is JobKind.EXECUTE and job.run_id is not None:
            # the run as it was before this lease started it: a first call still shows
            # as Queued, with what held it back (the observer times flow-control delays)
            snapshots[job.job_id] = snapshot(tx, job.run_id, now)
    return admitted, parked + held, now, snapshots, tx.queue.next_job_at()


def extend(tx: Tx, *, owner: str, ids: list[str], until: float) -> None:
    """Move the leases ``owner`` holds on ``ids`` to ``until`` (now: hand them back)."""
    tx.queue.extend_leases(owner, ids, until)


def drop(tx: Tx, job: Job, now: float) -> None:
    """Delete a call whose run is gone or ended, freeing its concurrency slots."""
    tx.queue.delete_job(job.job_id)
    _concurrency.release(tx, job, now)


def snapshot(tx: Tx, run_id: str, now: float) -> Snapshot:
    """A leased call's run, marked started, and its steps (with their revision)."""
    run = mark_started(tx, run_id, now)
    if run is None:
        return None, [], None
    steps = tx.get_steps(run_id)
    revision = tx.steps_revision(run_id)
    known = None if revision is None else KnownSteps(run_id, revision, tuple(steps))
    return run, steps, known


def mark_started(tx: Tx, run_id: str, now: float) -> Run | None:
    """Mark a queued run Running; returns the run as it was read (before the change)."""
    run = tx.get_run(run_id)
    if run is not None and run.status is RunStatus.QUEUED:
        started = run.copy()
        started.status, started.started_at, started.waiting = RunStatus.RUNNING, now, None
        tx.update_run(started)
    return run
