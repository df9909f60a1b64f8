"""A call on SQLite taken as the transaction before left it, while nothing was written
since (``_store/sqlite_fence.py``). The units are ``fence_units``': what each saw is its
step's memo, so a fence that failed to refuse shows.
"""

from __future__ import annotations

import gc
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import stepline
from stepline.embedded import EmbeddedEngine
from stepline.engine._model import StepRecord, StepStatus
from stepline.engine._store import Store, Tx
from stepline.engine._store.controls import FunctionPause
from stepline.engine._store.outcomes import Slot
from stepline.engine._store.sqlite import SqliteStore, SqliteTx
from tests.engine.fence_units import SAW, Query, answer, call, jobs_and_revision, memos, seed
from tests.engine.test_store_contract import atomic, with_store


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "engine.db")


@pytest.fixture
def read(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The calls whose answer read them (not taken from a fence)."""
    went: list[str] = []
    call_row = SqliteTx._call_row

    def counted(self: SqliteTx, job_id: str) -> Any:
        went.append(job_id)
        return call_row(self, job_id)

    monkeypatch.setattr(SqliteTx, "_call_row", counted)
    return went


def query(db: str) -> Query:
    def rows(sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(db) as conn:
            return conn.execute(sql).fetchall()

    return rows


def test_a_call_s_next_answers_take_it_as_the_last_transaction_left_it(
    db: str, read: list[str]
) -> None:
    async def body(store: Store) -> None:
        await seed(store)
        for i in range(5):
            assert await atomic(store, answer(i)) == f"R:{i}"

    with_store(db, body)
    # the first answer read its call (no transaction had left a fence); the rest did not
    assert read == ["R:0"]
    assert memos(query(db)) == {f"s{i}": SAW for i in range(5)}
    assert jobs_and_revision(query(db)) == (["R:5"], 5)


def _by_another_connection(db: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE runs SET cancel_reason = 'by hand' WHERE run_id = 'R'")


@pytest.mark.parametrize(
    "meanwhile",
    [
        "run written by another connection",
        "run written by the store",
        "lease extended",
        "function paused",
    ],
)
def test_a_write_since_the_fence_sends_the_answer_to_read_its_call(
    db: str, read: list[str], meanwhile: str
) -> None:
    def by_hand(tx: Tx) -> None:
        assert isinstance(tx, SqliteTx)
        tx.execute("UPDATE runs SET cancel_reason = 'by hand' WHERE run_id = 'R'")

    async def body(store: Store) -> None:
        await seed(store)
        for i in range(2):
            await atomic(store, answer(i))
        if meanwhile == "run written by another connection":  # another process, say
            _by_another_connection(db)
        elif meanwhile == "run written by the store":
            await atomic(store, by_hand)
        elif meanwhile == "lease extended":
            await atomic(store, lambda tx: tx.queue.extend_leases("w", ["R:2"], 900.0))
        else:
            pause = FunctionPause("other-fn", 1.0, "queue", None)
            await atomic(store, lambda tx: tx.controls.pause_function(pause))
        for i in range(2, 4):
            await atomic(store, answer(i))

    with_store(db, body)
    by_hand_seen = {**SAW, "cancel_reason": "by hand"}
    assert (
        memos(query(db))["s2"]
        == {
            "run written by another connection": by_hand_seen,
            "run written by the store": by_hand_seen,
            "lease extended": {**SAW, "lease_expires": 900.0},
            "function paused": {**SAW, "paused": ["other-fn"]},
        }[meanwhile]
    )
    # refused at the third answer; the fourth follows the third's fence again, but while
    # a function is paused every answer reads its call
    assert read == (["R:0", "R:2", "R:3"] if meanwhile == "function paused" else ["R:0", "R:2"])
    assert jobs_and_revision(query(db)) == (["R:4"], 4)


def test_a_job_written_after_its_move_leaves_no_fence(db: str, read: list[str]) -> None:
    later = call(2, lease_expires=700.0)

    async def body(store: Store) -> None:
        await seed(store)
        await atomic(store, answer(0))
        await atomic(store, answer(1, then=lambda tx: tx.queue.update_job(later)))
        await atomic(store, answer(2))

    with_store(db, body)
    assert memos(query(db))["s2"] == {**SAW, "lease_expires": 700.0}
    assert read == ["R:0", "R:2"]


def test_a_transaction_of_several_units_leaves_no_fence(db: str, read: list[str]) -> None:
    def cancel_reason(tx: SqliteTx) -> None:
        tx.execute("UPDATE runs SET cancel_reason = 'grouped' WHERE run_id = 'R'")

    async def body(store: Store) -> None:
        assert isinstance(store, SqliteStore)
        await seed(store)
        await atomic(store, answer(0))  # leaves a fence for R:1
        # what the writer does with two units queued together
        group = [(cancel_reason, Slot()), (answer(1), Slot())]
        store._commit_group(group)  # type: ignore[arg-type]
        assert [slot.result() for _, slot in group] == [None, "R:1"]
        await atomic(store, answer(2))

    with_store(db, body)
    assert memos(query(db))["s1"] == memos(query(db))["s2"] == {**SAW, "cancel_reason": "grouped"}
    assert read == ["R:0", "R:1", "R:2"]


def checkpoint(i: int) -> Any:
    """A per-step checkpoint under call ``R:0``: it reads the call with its run and
    records step ``c{i}`` with what it saw; no job written."""

    def work(tx: Tx) -> None:
        current = tx.get_call("R:0")
        run = tx.get_run("R")
        assert current is not None
        assert run is not None
        saw = {**SAW, "cancel_reason": run.cancel_reason, "lease_expires": current.lease_expires}
        tx.put_step(StepRecord("R", f"c{i}", f"c{i}", "StepRun", StepStatus.COMPLETED, memo=saw))

    return work


def test_checkpoints_under_one_call_read_it_once_until_its_lease_is_extended(
    db: str, read: list[str]
) -> None:
    async def body(store: Store) -> None:
        await seed(store)
        for i in range(3):
            await atomic(store, checkpoint(i))
        # the call's heartbeat: its job written, so the next checkpoint reads it
        await atomic(store, lambda tx: tx.queue.extend_leases("w", ["R:0"], 900.0))
        for i in range(3, 5):
            await atomic(store, checkpoint(i))
        assert await atomic(store, answer(0)) == "R:0"  # the answer follows them
        await atomic(store, answer(1))

    with_store(db, body)
    assert read == ["R:0", "R:0"]
    saw = memos(query(db))
    assert [saw[f"c{i}"]["lease_expires"] for i in range(5)] == [500.0] * 3 + [900.0] * 2
    assert saw["s0"] == {**SAW, "lease_expires": 900.0}
    assert saw["s1"] == SAW


def test_a_run_another_process_cancels_between_two_steps_goes_no_further(db: str) -> None:
    """End to end, step by step: the worker's answers take their calls from fences, and
    a cancel written by another process (its own connection to the file) ends the run at
    the answer of the step in flight."""
    entered, release = threading.Event(), threading.Event()
    ran: list[str] = []
    client = stepline.Client("fence", is_production=False, checkpointing=False, environ={})

    def did(name: str) -> str:
        ran.append(name)
        return name

    def blocked() -> str:
        entered.set()
        release.wait(30)
        return did("b")

    @client.function(id="three", trigger=stepline.TriggerEvent(event="fence/three"), retries=0)
    def three(ctx: stepline.SyncContext) -> list[str]:
        return [
            ctx.step.run("a", did, "a"),
            ctx.step.run("b", blocked),
            ctx.step.run("c", did, "c"),
        ]

    engine = EmbeddedEngine(client, [three], database=db, checkpointing=False)
    engine.start(30)
    try:
        handle = client.start_sync(three, {})
        assert entered.wait(30)
        with sqlite3.connect(db) as conn:  # what a cancel writes, from another process
            conn.execute(
                "UPDATE runs SET status = 'Cancelled', ended_at = 1, cancel_reason = 'other' "
                "WHERE run_id = ?",
                (handle.run_id,),
            )
            conn.execute("DELETE FROM jobs WHERE run_id = ?", (handle.run_id,))
        release.set()
        time.sleep(1.0)  # step c would have run by now: each step takes milliseconds
        assert ran == ["a", "b"]
        with sqlite3.connect(db) as conn:
            row = conn.execute("SELECT status FROM runs WHERE run_id = ?", (handle.run_id,))
            assert row.fetchone() == ("Cancelled",)
            steps = conn.execute("SELECT step_id FROM steps WHERE run_id = ?", (handle.run_id,))
            assert len(steps.fetchall()) == 1  # a's; b's answer came after the cancel
    finally:
        release.set()
        engine.stop()
        client.close()


def test_answers_leave_nothing_to_the_cycle_collector(db: str) -> None:
    """What a transaction keeps of its queue's writes refers to nothing that refers back
    to it: with a transaction a step, a cycle would be two collections more a step."""

    async def body(store: Store) -> None:
        await seed(store)
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for i in range(3):
                await atomic(store, answer(i))
            gc.collect()
            ours = {
                type(o).__qualname__
                for o in gc.garbage
                if type(o).__module__.startswith("stepline")
            }
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
        assert ours == set()

    with_store(db, body)
