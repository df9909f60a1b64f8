"""A run's view shares its stored steps until one changes (both stores).

``RunView.load`` hands out the steps as stored, not copies: code that changes a step gets
a copy of the view's own (``own``, ``step``) or puts a new record in, and ``save`` writes
only the records that are not the stored ones. Recording one result of a step-by-step
run copies, compares and writes one step, however many the run has, and the steps the
next call starts from (``known_steps``) keep the order ``Tx.get_steps`` reads them in.
"""

from __future__ import annotations

from stepline.engine._model import StepRecord, StepStatus
from stepline.engine._runs.view import KnownSteps, RunView
from stepline.engine._store import Store, Tx

from .test_store_contract import atomic, run_record, with_store
from .test_store_run_rows import counting

DONE = StepStatus.COMPLETED


def _step(step_id: str, status: StepStatus, seq: int | None, at: float = 1.0) -> StepRecord:
    return StepRecord("R1", step_id, step_id, "StepRun", status, started_at=at, seq=seq)


def _view(tx: Tx, known: KnownSteps | None = None) -> RunView:
    view = RunView.load(tx, "R1", known)
    assert view is not None
    return view


def test_recording_a_step_copies_compares_and_writes_that_step_alone(db: str) -> None:
    async def body(store: Store) -> None:
        def first(tx: Tx) -> KnownSteps | None:
            tx.insert_run(run_record("R1"))
            view = _view(tx)
            for i in range(5):
                view.steps[f"s{i}"] = _step(f"s{i}", DONE, i)
            view.save(tx)
            return view.known_steps(tx)

        known = await atomic(store, first)
        assert known is not None

        def record(tx: Tx) -> tuple[int, KnownSteps | None, bool]:
            sent = counting(tx)
            view = _view(tx, known)
            shared = all(view.steps[s.step_id] is s for s in known.steps)
            view.steps["s5"] = _step("s5", DONE, 5)
            view.save(tx)
            writes = sum(sql.startswith("INSERT INTO steps") for sql in sent)
            return writes, view.known_steps(tx), shared

        writes, after, shared = await atomic(store, record)
        assert shared, "the view handed out the stored steps, not copies"
        assert writes == 1
        assert after is not None
        assert [s.step_id for s in after.steps] == [f"s{i}" for i in range(6)]
        assert all(a is b for a, b in zip(after.steps, known.steps, strict=False))

    with_store(db, body)


def test_a_step_changed_through_own_is_written_and_the_stored_one_is_kept(db: str) -> None:
    async def body(store: Store) -> None:
        def first(tx: Tx) -> KnownSteps | None:
            tx.insert_run(run_record("R1"))
            view = _view(tx)
            view.steps["a"] = _step("a", DONE, 0)
            view.steps["b"] = _step("b", StepStatus.PLANNED, None)
            view.save(tx)
            return view.known_steps(tx)

        known = await atomic(store, first)
        assert known is not None

        def change(tx: Tx) -> tuple[int, str | None]:
            sent = counting(tx)
            view = _view(tx, known)
            view.fail_step("b", {"message": "no"}, 2.0)
            assert view.own("missing") is None
            view.save(tx)
            writes = sum(sql.startswith("INSERT INTO steps") for sql in sent)
            [b] = [s for s in tx.get_steps("R1") if s.step_id == "b"]
            return writes, b.status.value

        assert await atomic(store, change) == (1, "Failed")
        assert [s.status for s in known.steps] == [DONE, StepStatus.PLANNED]

    with_store(db, body)


def test_the_known_steps_keep_the_order_the_store_reads_them_in(db: str) -> None:
    async def body(store: Store) -> None:
        def first(tx: Tx) -> KnownSteps | None:
            tx.insert_run(run_record("R1"))
            view = _view(tx)
            view.steps["a"] = _step("a", DONE, 0)
            view.steps["x"] = _step("x", StepStatus.PLANNED, None, at=2.0)  # parallel
            view.steps["y"] = _step("y", StepStatus.PLANNED, None, at=3.0)
            view.save(tx)
            return view.known_steps(tx)

        known = await atomic(store, first)
        assert known is not None
        assert [s.step_id for s in known.steps] == ["a", "x", "y"]

        def complete(tx: Tx, step_id: str, seq: int, was: KnownSteps) -> KnownSteps | None:
            view = _view(tx, was)
            step = view.own(step_id)
            assert step is not None
            step.status, step.seq = DONE, seq
            later = _step(f"after-{step_id}", StepStatus.PLANNED, None, at=10.0 + seq)
            view.steps[later.step_id] = later
            view.save(tx)
            stored = [s.step_id for s in tx.get_steps("R1")]
            now = view.known_steps(tx)
            assert now is not None
            assert [s.step_id for s in now.steps] == stored
            return now

        # y completes before x: the records move, the order follows what is stored
        known = await atomic(store, lambda tx: complete(tx, "y", 1, known))
        assert known is not None
        known = await atomic(store, lambda tx: complete(tx, "x", 2, known))
        assert known is not None
        assert [s.step_id for s in known.steps][:3] == ["a", "y", "x"]

    with_store(db, body)
