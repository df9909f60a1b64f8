"""A write transaction remembers the run rows it read or wrote (both stores).

``get_run`` answers again from that memory, ``update_run`` writes only the columns that
changed (so a run's indexes are rewritten only where theirs did), and a run created in
the transaction has no steps to read. Each test would fail if the memory went stale or
if ``update_run`` rewrote the whole row.
"""

from __future__ import annotations

from typing import Any

from stepline.engine._model import RunStatus, StepRecord, StepStatus
from stepline.engine._store import Store, Tx
from stepline.engine._store.controls import FunctionPause

from .test_store_contract import atomic, job, run_record, with_store


def counting(tx: Tx) -> list[str]:
    """Record the text of every statement ``tx`` sends from now on: at once
    (``execute``), or with its next statement or its commit (``write``)."""
    sent: list[str] = []
    execute, write = tx.execute, tx.write  # type: ignore[attr-defined]
    writing: list[bool] = []  # SQLite's write is an execute: counted once

    def counted(sql: str, args: Any = ()) -> Any:
        if not writing:
            sent.append(sql)
        return execute(sql, args)

    def counted_write(sql: str, args: Any = ()) -> None:
        sent.append(sql)
        writing.append(True)
        try:
            write(sql, args)
        finally:
            writing.pop()

    tx.execute, tx.write = counted, counted_write  # type: ignore[attr-defined]
    return sent


def test_a_run_read_twice_in_one_transaction_is_read_once_and_stays_current(db: str) -> None:
    async def body(store: Store) -> None:
        await atomic(store, lambda tx: tx.insert_run(run_record("R1")))

        def work(tx: Tx) -> tuple[Any, ...]:
            sent = counting(tx)
            first = tx.get_run("R1")
            assert first is not None
            first.status, first.output = RunStatus.RUNNING, None
            tx.update_run(first)
            again = tx.get_run("R1")
            held = {"reason": "throttled"}
            tx.set_waiting("R1", held)  # a write outside update_run: read afresh after it
            stacked = tx.get_run("R1")
            reads = sum(sql.lstrip().startswith("SELECT") for sql in sent)
            assert again is not None
            assert stacked is not None
            return again.status, stacked.waiting, stacked.status, reads

        status, waiting, stacked_status, reads = await atomic(store, work)
        assert (status, waiting, stacked_status) == (
            RunStatus.RUNNING,
            {"reason": "throttled"},
            RunStatus.RUNNING,
        )
        assert reads == 2  # the first read and the one after set_waiting

    with_store(db, body)


def test_update_run_writes_only_the_columns_that_changed(db: str) -> None:
    async def body(store: Store) -> None:
        await atomic(store, lambda tx: tx.insert_run(run_record("R1", output="old")))

        def work(tx: Tx) -> list[str]:
            run = tx.get_run("R1")
            assert run is not None
            # a column changed behind the transaction's memory: a whole-row write undoes it
            tx.execute("UPDATE runs SET output = ? WHERE run_id = ?", ("behind", "R1"))  # type: ignore[attr-defined]
            sent = counting(tx)
            run.status, run.ended_at = RunStatus.COMPLETED, 5.0
            tx.update_run(run)
            tx.update_run(run)  # nothing changed since: nothing sent
            return sent

        sent = await atomic(store, work)
        assert len(sent) == 1
        assert "output" not in sent[0]
        assert "status" in sent[0]
        got = await store.read(lambda tx: tx.get_run("R1"))
        assert got is not None
        assert (got.status, got.ended_at, got.output) == (RunStatus.COMPLETED, 5.0, "behind")

    with_store(db, body)


def test_update_run_of_a_row_it_has_not_seen_writes_it_whole(db: str) -> None:
    async def body(store: Store) -> None:
        await atomic(store, lambda tx: tx.insert_run(run_record("R1", output="old")))
        run = await store.read(lambda tx: tx.get_run("R1"))
        assert run is not None
        run.status = RunStatus.FAILED

        def work(tx: Tx) -> list[str]:
            sent = counting(tx)
            tx.update_run(run)  # read by another transaction: all its columns, as an upsert
            return sent

        sent = await atomic(store, work)
        assert len(sent) == 1
        assert "ON CONFLICT" in sent[0]
        got = await store.read(lambda tx: tx.get_run("R1"))
        assert got is not None
        assert (got.status, got.output) == (RunStatus.FAILED, "old")
        assert got.events == [{"name": "e", "data": {"n": 1}}]

    with_store(db, body)


def test_a_run_created_in_the_transaction_has_no_steps_until_one_is_written(db: str) -> None:
    async def body(store: Store) -> None:
        def work(tx: Tx) -> tuple[int, int, list[str], str | None]:
            tx.insert_run(run_record("R1"))
            sent = counting(tx)
            before = len(tx.get_steps("R1")) + (tx.get_step("R1", "s1") is not None)
            reads_before = len(sent)
            tx.put_step(StepRecord("R1", "s1", "one", "StepRun", StepStatus.COMPLETED, seq=0))
            after = [s.step_id for s in tx.get_steps("R1")]
            one = tx.get_step("R1", "s1")
            return before, reads_before, after, None if one is None else one.step_id

        before, reads_before, after, one = await atomic(store, work)
        assert (before, reads_before) == (0, 0)  # nothing read for a run made here
        assert (after, one) == (["s1"], "s1")

        def other(tx: Tx) -> list[str]:
            return [s.step_id for s in tx.get_steps("R1")]  # another transaction reads

        assert await atomic(store, other) == ["s1"]

    with_store(db, body)


def test_a_call_is_read_with_its_run_in_one_statement(db: str) -> None:
    async def body(store: Store) -> None:
        def seed(tx: Tx) -> None:
            tx.insert_run(run_record("R1"))
            tx.queue.enqueue(job("J1", 90.0, run_id="R1", step_id="s"))
            tx.queue.enqueue(job("J2", 90.0, run_id="gone", step_id="s"))  # its run was deleted

        await atomic(store, seed)

        def work(tx: Tx) -> tuple[Any, ...]:
            sent = counting(tx)
            call = tx.get_call("J1")
            run = tx.get_run("R1")
            one = len(sent)
            orphan = tx.get_call("J2")  # no run to join: the job alone
            return call, run, one, orphan

        call, run, one, orphan = await atomic(store, work)
        assert call is not None
        assert (call.job_id, call.run_id, call.available_at) == ("J1", "R1", 90.0)
        assert run is not None
        assert run.events == [{"name": "e", "data": {"n": 1}}]
        assert one == 1
        assert orphan is not None
        assert orphan.job_id == "J2"

    with_store(db, body)


def test_a_call_read_tells_whether_any_function_is_paused(db: str) -> None:
    async def body(store: Store) -> None:
        def seed(tx: Tx) -> None:
            tx.insert_run(run_record("R1"))
            tx.queue.enqueue(job("J1", 90.0, run_id="R1", step_id="s"))

        await atomic(store, seed)

        def look(tx: Tx) -> tuple[list[str], int]:
            tx.get_call("J1")
            sent = counting(tx)
            return sorted(tx.controls.paused_functions()), len(sent)

        assert await atomic(store, look) == ([], 0)  # none paused: nothing more to read
        pause = FunctionPause("app-fn", 50.0)
        await atomic(store, lambda tx: tx.controls.pause_function(pause))
        assert await atomic(store, look) == (["app-fn"], 1)  # read (and share-locked)

    with_store(db, body)


def _sql(tx: Tx, sql: str, *args: Any) -> Any:
    return tx.execute(sql, args)  # type: ignore[attr-defined]


def test_a_run_s_events_are_written_back_as_read_and_anew_once_replaced(db: str) -> None:
    """``update_run`` writes the text it read for a run's events while the run holds the
    lists it read (no encoding a step), and encodes them once code assigns new ones."""

    async def body(store: Store) -> None:
        await atomic(store, lambda tx: tx.insert_run(run_record("R1")))
        # stored with a spacing no encoder here writes: kept text shows as kept
        odd = '[ {"name": "e", "data": {"n": 1}} ]'
        await atomic(
            store, lambda tx: _sql(tx, "UPDATE runs SET events = ? WHERE run_id = ?", odd, "R1")
        )

        def stored(tx: Tx) -> str:
            return str(_sql(tx, "SELECT events FROM runs WHERE run_id = ?", "R1").fetchone()[0])

        def step(tx: Tx) -> str:
            run = tx.get_run("R1")
            assert run is not None
            run.status = RunStatus.RUNNING
            tx.update_run(run)  # the events are the lists read: their text as it was
            return stored(tx)

        assert await atomic(store, step) == odd

        def replace(tx: Tx) -> str:
            run = tx.get_run("R1")
            assert run is not None
            run.events = [*run.events, {"name": "f", "data": {}}]
            run.event_ids = [*run.event_ids, "E2"]
            tx.update_run(run)
            return stored(tx)

        text = await atomic(store, replace)
        got = await store.read(lambda tx: tx.get_run("R1"))
        assert text != odd
        assert got is not None
        assert [e["name"] for e in got.events] == ["e", "f"]
        assert got.event_ids == ["E1", "E2"]
        assert got.status is RunStatus.RUNNING

    with_store(db, body)
