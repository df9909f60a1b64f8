"""A call's answer on Postgres in one statement, fenced by its rows' ``xmin``
(``_store/pg_fence.py``).

Each unit here answers a call as the worker does on a middle step: it reads the call with
its run, moves the job to the run's next call, leased, and records a step. The step's
memo holds what the unit saw of the run, the job and the paused functions: a unit run
on a stale view of them would record it, so a fence that failed to refuse shows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from stepline.engine._model import Job, JobKind, StepRecord, StepStatus
from stepline.engine._store import Store, Tx, pg_fence
from stepline.engine._store.controls import FunctionPause
from stepline.engine._store.pg_tx import PostgresTx
from stepline.engine._store.postgres import PostgresStore
from tests._support.databases import postgres_schema
from tests.engine.test_store_contract import atomic, run_record, with_store

pytestmark = [pytest.mark.postgres]


@pytest.fixture
def schema() -> Iterator[str]:
    with postgres_schema() as url:
        yield url


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The calls whose answer went as one statement."""
    went: list[str] = []
    answer = pg_fence.Fences.answer

    def counted(self: pg_fence.Fences, conn: Any, work: Any) -> Any:
        result = answer(self, conn, work)
        went.append(str(result))
        return result

    monkeypatch.setattr(pg_fence.Fences, "answer", counted)
    return went


def call(i: int) -> Job:
    return Job(
        job_id=f"R:{i}",
        kind=JobKind.EXECUTE,
        available_at=500.0,
        run_id="R",
        step_id="step",
        lease_owner="w",
        lease_expires=500.0,
        lease_epoch=1,
    )


async def seed(store: Store) -> None:
    def work(tx: Tx) -> None:
        tx.insert_run(run_record("R"))
        tx.queue.enqueue(call(0))

    await atomic(store, work)


def answer(i: int, *, kept: bool = True) -> Any:
    """The unit answering call ``i``: what it saw, as its step's memo; its call's id.
    ``kept``: it says it may run on kept rows (as the worker's does for steps done)."""

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
        tx.put_step(StepRecord("R", f"s{i}", f"s{i}", "StepRun", StepStatus.COMPLETED, memo=saw))
        return current.job_id

    return work


def memos(url: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT step_id, memo FROM steps WHERE run_id = 'R'").fetchall()
    import json

    return {str(step_id): json.loads(memo) for step_id, memo in rows}


def jobs_and_revision(url: str) -> tuple[list[str], int]:
    with psycopg.connect(url) as conn:
        jobs = [str(r[0]) for r in conn.execute("SELECT job_id FROM jobs ORDER BY job_id")]
        row = conn.execute("SELECT steps_rev FROM runs WHERE run_id = 'R'").fetchone()
    assert row is not None
    return jobs, int(row[0])


SAW: dict[str, Any] = {"cancel_reason": None, "lease_expires": 500.0, "paused": []}


def test_a_call_s_next_answers_go_as_one_statement_each(schema: str, fast: list[str]) -> None:
    async def body(store: Store) -> None:
        await seed(store)
        for i in range(5):
            assert await atomic(store, answer(i)) == f"R:{i}"

    with_store(schema, body)
    # the first answer read its call (no transaction had left a fence); the rest did not
    assert fast == ["R:1", "R:2", "R:3", "R:4"]
    assert memos(schema) == {f"s{i}": SAW for i in range(5)}
    assert jobs_and_revision(schema) == (["R:5"], 5)


def _cancel_reason(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE runs SET cancel_reason = 'by hand' WHERE run_id = 'R'")


@pytest.mark.parametrize("meanwhile", ["run written", "lease extended", "function paused"])
def test_a_write_since_the_fence_sends_the_answer_through_a_transaction(
    schema: str, fast: list[str], meanwhile: str
) -> None:
    async def body(store: Store) -> None:
        await seed(store)
        for i in range(2):
            await atomic(store, answer(i))
        if meanwhile == "run written":
            _cancel_reason(schema)
        elif meanwhile == "lease extended":
            await atomic(store, lambda tx: tx.queue.extend_leases("w", ["R:2"], 900.0))
        else:
            pause = FunctionPause("other-fn", 1.0, "queue", None)
            await atomic(store, lambda tx: tx.controls.pause_function(pause))
        for i in range(2, 4):
            await atomic(store, answer(i))

    with_store(schema, body)
    saw = memos(schema)["s2"]
    assert (
        saw
        == {
            "run written": {**SAW, "cancel_reason": "by hand"},
            "lease extended": {**SAW, "lease_expires": 900.0},
            "function paused": {**SAW, "paused": ["other-fn"]},
        }[meanwhile]
    )
    # refused at the third answer; the fourth follows the transaction's fence again, but
    # while a function is paused every answer reads its call
    assert fast == (["R:1"] if meanwhile == "function paused" else ["R:1", "R:3"])
    assert jobs_and_revision(schema) == (["R:4"], 4)


def test_a_transaction_of_several_units_leaves_no_fence(schema: str, fast: list[str]) -> None:
    def cancel_reason(tx: PostgresTx) -> None:
        tx.execute("UPDATE runs SET cancel_reason = 'grouped' WHERE run_id = 'R'")

    async def body(store: Store) -> None:
        assert isinstance(store, PostgresStore)
        await seed(store)
        await atomic(store, answer(0))  # leaves a fence for R:1
        with store._pool.connection() as conn:  # what the group commit does with two
            store._transaction(conn, [answer(1), cancel_reason])
        await atomic(store, answer(2))

    with_store(schema, body)
    assert memos(schema)["s2"] == {**SAW, "cancel_reason": "grouped"}
    assert fast == []  # R:1 went in the group's transaction; R:2 had no fence


def test_a_next_call_queued_already_undoes_the_whole_statement(
    schema: str, fast: list[str]
) -> None:
    async def body(store: Store) -> None:
        await seed(store)
        await atomic(store, answer(0))
        # R:2 is there before the answer to R:1 moves R:1 to it: the unit counted on
        # inserting it, so nothing of the statement may stay
        with psycopg.connect(schema) as conn:
            conn.execute(
                "INSERT INTO jobs (job_id, kind, available_at, run_id, step_id, attempt, "
                "payload, lease_epoch, queued_at) "
                "VALUES ('R:2', 'execute', 1, 'R', 'other', 0, '{}', 0, 1)"
            )
        await atomic(store, answer(1))

    with_store(schema, body)
    assert fast == []
    assert memos(schema) == {"s0": SAW, "s1": SAW}
    # the transaction's answer: R:1 gone, the R:2 already there kept as it was
    with psycopg.connect(schema) as conn:
        rows = conn.execute("SELECT job_id, step_id FROM jobs ORDER BY job_id").fetchall()
    assert rows == [("R:2", "other")]


def test_a_unit_that_does_not_say_so_never_runs_on_kept_rows(schema: str, fast: list[str]) -> None:
    async def body(store: Store) -> None:
        await seed(store)
        for i in range(3):
            await atomic(store, answer(i, kept=False))

    with_store(schema, body)
    assert fast == []
    assert memos(schema) == {f"s{i}": SAW for i in range(3)}
