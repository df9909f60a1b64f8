"""What the fence tests of both stores run (``test_pg_fence``, ``test_sqlite_fence``).

Each ``answer`` answers a call as the worker does on a middle step: it reads the call with
its run, moves the job to the run's next call, leased, and records a step. The step's
memo holds what the unit saw of the run, the job and the paused functions: a unit run on
a stale view of them would record it, so a fence that failed to refuse shows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from stepline.engine._model import Job, JobKind, StepRecord, StepStatus
from stepline.engine._store import Store, Tx
from tests.engine.test_store_contract import atomic, run_record

#: what a unit saw when nothing was written between two answers
SAW: dict[str, Any] = {"cancel_reason": None, "lease_expires": 500.0, "paused": []}
#: rows of a query, sent by a connection of the test's own
Query = Callable[[str], list[tuple[Any, ...]]]


def call(i: int, lease_expires: float = 500.0) -> Job:
    """Run ``R``'s ``i``-th call, leased by ``w``."""
    return Job(
        job_id=f"R:{i}",
        kind=JobKind.EXECUTE,
        available_at=lease_expires,
        run_id="R",
        step_id="step",
        lease_owner="w",
        lease_expires=lease_expires,
        lease_epoch=1,
    )


async def seed(store: Store) -> None:
    """Run ``R`` and its first call."""

    def work(tx: Tx) -> None:
        tx.insert_run(run_record("R"))
        tx.queue.enqueue(call(0))

    await atomic(store, work)


def answer(i: int, *, kept: bool = True, then: Callable[[Tx], object] | None = None) -> Any:
    """The unit answering call ``i``: what it saw, as its step's memo; its call's id.
    ``kept``: it says it may run on kept rows (as the worker's does for steps done);
    ``then``: more it does with the transaction once the job moved."""

    def work(tx: Tx) -> str:
        if kept:
            tx.may_answer_from_kept_rows()
        current = tx.get_call(f"R:{i}")
        assert current is not None
        run = tx.get_run("R")
        assert run is not None
        saw = {
            "cancel_reason": run.cancel_reason,
            "lease_expires": current.lease_expires,
            "paused": sorted(tx.controls.paused_functions()),
        }
        tx.queue.enqueue(call(i + 1), replacing=current.job_id)
        tx.claimed.add(f"R:{i + 1}")  # leased by this worker: nobody to tell
        if then is not None:
            then(tx)
        tx.put_step(StepRecord("R", f"s{i}", f"s{i}", "StepRun", StepStatus.COMPLETED, memo=saw))
        return current.job_id

    return work


def memos(query: Query) -> dict[str, Any]:
    """What each step of run ``R`` saw, by step id."""
    rows = query("SELECT step_id, memo FROM steps WHERE run_id = 'R'")
    return {str(step_id): json.loads(memo) for step_id, memo in rows}


def jobs_and_revision(query: Query) -> tuple[list[str], int]:
    """The jobs there are, and run ``R``'s steps revision."""
    jobs = [str(row[0]) for row in query("SELECT job_id FROM jobs ORDER BY job_id")]
    [(revision,)] = query("SELECT steps_rev FROM runs WHERE run_id = 'R'")
    return jobs, int(revision)
