"""A worker reads a run's steps again only when some step was written since (both stores).

Every write of a step moves its run's ``steps_rev`` (a trigger, so no writer can forget
to), and a write transaction knows the revision it leaves (``Tx.steps_revision``). The
transaction that records a call's answer takes the steps the call's lease stored instead
of reading them, unless the revision moved: a step-by-step run reads its steps once, not
once a step. Each test fails if the revision missed a write or the steps were taken
stale.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

import stepline
from stepline._status import RunStatus
from stepline.embedded import EmbeddedEngine
from stepline.engine._model import StepRecord, StepStatus
from stepline.engine._runs.view import KnownSteps, RunView
from stepline.engine._store import Store, Tx
from stepline.engine._store.sql import SqlTx

from .test_store_contract import atomic, run_record, with_store
from .test_store_run_rows import counting


def _stored_revision(tx: Tx, run_id: str) -> int:
    return int(tx.execute("SELECT steps_rev FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0])  # type: ignore[attr-defined]


def _step(
    step_id: str, status: StepStatus = StepStatus.PLANNED, seq: int | None = None
) -> StepRecord:
    return StepRecord("R1", step_id, step_id, "StepRun", status, seq=seq)


def test_every_step_written_moves_the_revision_the_transaction_knows(db: str) -> None:
    async def body(store: Store) -> None:
        def create(tx: Tx) -> int | None:
            tx.insert_run(run_record("R1"))
            tx.put_step(_step("a"))  # a run created here: its revision is known from 0
            return tx.steps_revision("R1")

        assert await atomic(store, create) == 1

        def write(tx: Tx) -> tuple[Any, ...]:
            unread = tx.steps_revision("R1")  # not read yet in this transaction
            tx.get_run("R1")
            read = tx.steps_revision("R1")
            tx.put_step(_step("a", StepStatus.COMPLETED, seq=0))  # an update
            tx.put_step(_step("b"))  # an insert
            tx.put_steps([_step("c"), _step("b", StepStatus.COMPLETED, seq=1)])
            return unread, read, tx.steps_revision("R1"), _stored_revision(tx, "R1")

        unread, read, left, stored = await atomic(store, write)
        assert (unread, read) == (None, 1)
        assert left == stored == 5

        def behind(tx: Tx) -> tuple[int | None, int]:
            # a write that does not go through this transaction's memory still counts
            tx.execute("UPDATE steps SET name = 'x' WHERE run_id = 'R1' AND step_id = 'c'")  # type: ignore[attr-defined]
            tx.get_run("R1")
            return tx.steps_revision("R1"), _stored_revision(tx, "R1")

        assert await atomic(store, behind) == (6, 6)

    with_store(db, body)


def test_known_steps_are_taken_until_another_write_moves_the_revision(db: str) -> None:
    async def body(store: Store) -> None:
        def first(tx: Tx) -> KnownSteps | None:
            tx.insert_run(run_record("R1"))
            view = RunView.load(tx, "R1")
            assert view is not None
            view.steps["a"] = _step("a", StepStatus.COMPLETED, seq=0)
            view.save(tx)
            return view.known_steps(tx)

        known = await atomic(store, first)
        assert known is not None
        assert [s.step_id for s in known.steps] == ["a"]

        def again(tx: Tx) -> tuple[list[str], int]:
            sent = counting(tx)
            view = RunView.load(tx, "R1", known)
            assert view is not None
            shared = view.steps["a"]
            owned = view.own("a")  # a copy of the view's own: known stays as stored
            assert owned is not None
            assert owned is not shared
            owned.name = "changed in memory only"
            return sorted(view.steps), sum("FROM steps" in sql for sql in sent)

        assert await atomic(store, again) == (["a"], 0)
        assert known.steps[0].name == "a"

        def other_writer(tx: Tx) -> None:
            view = RunView.load(tx, "R1")
            assert view is not None
            view.steps["b"] = _step("b")
            view.save(tx)

        await atomic(store, other_writer)

        def stale(tx: Tx) -> tuple[list[str], int]:
            sent = counting(tx)
            view = RunView.load(tx, "R1", known)
            assert view is not None
            return sorted(view.steps), sum("FROM steps" in sql for sql in sent)

        assert await atomic(store, stale) == (["a", "b"], 1)

    with_store(db, body)


def test_a_step_by_step_run_reads_its_steps_once(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = []
    get_steps = SqlTx.get_steps

    def counted(self: SqlTx, run_id: str) -> list[StepRecord]:
        reads.append(run_id)
        return get_steps(self, run_id)

    monkeypatch.setattr(SqlTx, "get_steps", counted)
    client = stepline.Client("known", is_production=False, checkpointing=False, environ={})

    @client.function(id="ten", trigger=stepline.TriggerEvent(event="known/ten"), retries=0)
    def ten(ctx: stepline.SyncContext) -> object:
        total = 0
        for i in range(10):
            total += ctx.step.run(f"s{i}", lambda i=i: i)
        return total

    engine = EmbeddedEngine(client, [ten], database=db, checkpointing=False)
    engine.start()
    try:
        client.start_sync(ten, {}).result(timeout=30)  # warm
        reads.clear()
        handles = [client.start_sync(ten, {}) for _ in range(4)]
        assert [h.result(timeout=30) for h in handles] == [45] * 4
        runs = {h.run_id for h in handles}
    finally:
        engine.stop()
        client.close()
    # one read a run (its first call's lease), where each of its 11 calls read them (48)
    assert len([r for r in reads if r in runs]) <= len(runs), reads


def test_a_parent_reads_its_steps_as_it_calls_not_as_each_invoked_child_ends(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = []
    get_steps = SqlTx.get_steps

    def counted(self: SqlTx, run_id: str) -> list[StepRecord]:
        reads.append(run_id)
        return get_steps(self, run_id)

    monkeypatch.setattr(SqlTx, "get_steps", counted)
    client = stepline.Client("known", is_production=False, environ={})
    width = 30

    @client.function(id="child", trigger=stepline.TriggerEvent(event="known/never"), retries=0)
    def child(ctx: stepline.SyncContext) -> object:
        data: Any = ctx.event.data
        return ctx.step.run("double", lambda: 2 * int(data["j"]))

    @client.function(id="fan", trigger=stepline.TriggerEvent(event="known/fan"), retries=0)
    def fan(ctx: stepline.SyncContext) -> object:
        calls = [
            (lambda j=j: ctx.step.invoke(f"c{j}", function=child, data={"j": j}))
            for j in range(width)
        ]
        return sum(ctx.step.parallel(calls))

    engine = EmbeddedEngine(client, [child, fan], database=db)
    engine.start()
    try:
        handle = client.start_sync(fan, {})
        # every child's result, and the parent resumed once all had ended, not before
        assert handle.result(timeout=60) == width * (width - 1)
    finally:
        engine.stop()
        client.close()
    # its calls read them (the first and the last): a read as each child ended was 30 more
    assert reads.count(handle.run_id) <= 4, reads.count(handle.run_id)


def test_a_run_and_its_one_changed_step_are_written_together(db: str) -> None:
    async def body(store: Store) -> None:
        await atomic(store, lambda tx: tx.insert_run(run_record("R1")))

        def save(tx: Tx) -> tuple[int, int | None, int]:
            view = RunView.load(tx, "R1")
            assert view is not None
            view.steps["a"] = _step("a", StepStatus.COMPLETED, seq=0)
            view.run.status = RunStatus.RUNNING
            sent = counting(tx)
            view.save(tx)
            return len(sent), tx.steps_revision("R1"), _stored_revision(tx, "R1")

        statements, left, stored = await atomic(store, save)
        # Postgres: the step's upsert in a WITH of the run's UPDATE (its trigger still runs)
        assert statements == (1 if db.startswith("postgres") else 2)
        assert left == stored == 1

        def read(tx: Tx) -> tuple[list[str], list[str]]:
            return tx.stack("R1"), [s.step_id for s in tx.get_steps("R1")]

        assert await store.read(read) == (["a"], ["a"])

    with_store(db, body)


def _endpoint_app(database: str, between: Any = None, **options: Any) -> tuple[Any, EmbeddedEngine]:
    """A FastAPI app with a durable route of three steps on an embedded engine;
    ``between(run_id)`` runs inside the second step (after the first's checkpoint);
    ``options``: the durable function's."""
    import fastapi

    import stepline.fastapi

    client = stepline.Client("kept", is_production=False, environ={})
    app = fastapi.FastAPI()

    @app.post("/three")
    @stepline.fastapi.durable(client, **options)
    async def three(ctx: stepline.EndpointContext) -> dict[str, int]:
        a = await ctx.step.run("a", lambda: 1)

        def second() -> int:
            if between is not None:
                between(ctx.run_id)
            return a + 1

        b = await ctx.step.run("b", second)
        c = await ctx.step.run("c", lambda: b + 1)
        return {"c": c}

    engine = EmbeddedEngine(client, [], database=database)
    stepline.fastapi.serve(app, client, [], engine=engine)
    return app, engine


def test_a_durable_endpoint_reads_none_of_its_steps_and_its_call_once_a_transaction(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fastapi.testclient

    from stepline.engine._store.pg_tx import PostgresTx

    sent: list[str] = []
    inside = threading.local()  # a write that goes through execute is counted once

    def counting(send: Any) -> Any:
        def counted(self: SqlTx, text: str, args: Any = ()) -> Any:
            if getattr(inside, "on", False):
                return send(self, text, args)
            inside.on = True
            try:
                sent.append(" ".join(text.split()))
                return send(self, text, args)
            finally:
                inside.on = False

        return counted

    for kind in (SqlTx, PostgresTx):  # each store's transactions send their statements here
        for name in ("execute", "write"):
            monkeypatch.setattr(kind, name, counting(getattr(kind, name)))
    app, engine = _endpoint_app(db)
    with fastapi.testclient.TestClient(app) as http:
        assert http.post("/three").json() == {"c": 3}  # warm
        sent.clear()
        for _ in range(3):
            answer = http.post("/three")
            assert (answer.status_code, answer.json()) == (200, {"c": 3})
    engine.stop()
    steps = [t for t in sent if t.startswith("SELECT") and " FROM steps " in t]
    calls = [t for t in sent if t.startswith("SELECT") and " FROM jobs " in t]
    deletes = [t for t in sent if "DELETE FROM " in t]
    # its start made the run (no step to read); each checkpoint and the answer took the
    # steps the transaction before stored: two reads a checkpoint and one for the
    # answer otherwise
    assert steps == [], steps
    # the call: leased by the start by its id (no read first), read with its run by each
    # checkpoint and by the answer, which knows it holds no slots (else it read the job,
    # then again with its run); on SQLite only by the first checkpoint: the second and
    # the answer take it as the transaction before left it (``sqlite_fence``)
    assert len(calls) == 3 * (3 if db.startswith("postgres") else 1), calls
    # its end deletes its call and no wait, singleton or bucket: the run was made with
    # none, and its only call was held by the request since
    held = ("FROM pauses", "FROM singletons", "FROM buckets")
    assert [d for d in deletes if any(f"DELETE {table}" in d for table in held)] == []
    assert len([d for d in deletes if "DELETE FROM jobs" in d]) == 3, deletes


@pytest.mark.parametrize(
    "options",
    [
        {"cancel": stepline.Cancel(event="kept/cancel")},
        {"singleton": stepline.Singleton(mode="skip")},
    ],
    ids=["cancel", "singleton"],
)
def test_a_durable_endpoint_whose_run_holds_a_wait_or_singleton_deletes_it_at_its_end(
    db: str, options: dict[str, Any]
) -> None:
    import fastapi.testclient

    app, engine = _endpoint_app(db, **options)
    with fastapi.testclient.TestClient(app) as http:
        answer = http.post("/three")
        assert (answer.status_code, answer.json()) == (200, {"c": 3}), answer.text
        run_id = answer.headers["x-stepline-run-id"]
        left: list[str] = []

        def held(tx: Tx) -> None:
            for table in ("pauses", "singletons", "buckets"):
                rows = tx.execute(f"SELECT run_id FROM {table} WHERE run_id = ?", (run_id,))  # type: ignore[attr-defined]
                left.extend(table for _ in rows)

        running = engine._running
        assert running is not None
        read = running.engine.store.read(held)
        asyncio.run_coroutine_threadsafe(read, running.loop).result(15)
        again = http.post("/three")  # a singleton that was left would skip this one
        assert (again.status_code, again.json()) == (200, {"c": 3}), again.text
    engine.stop()
    assert left == [], left


def test_a_step_another_writer_stored_between_checkpoints_is_read_not_overwritten(
    tmp_path: Path,
) -> None:
    import sqlite3

    import fastapi.testclient

    from stepline.engine._store import rows, sql

    database = str(tmp_path / "kept.db")

    def foreign(run_id: str) -> None:
        # another writer (a connection of its own) completes a step of the run: the
        # run's steps revision moves, so the steps the engine kept are stale
        step = StepRecord(run_id, "x", "x", "StepRun", StepStatus.COMPLETED, seq=1)
        with sqlite3.connect(database, timeout=10) as conn:
            conn.execute(sql.UPSERT_STEP, rows.step_values(step))

    app, engine = _endpoint_app(database, foreign)
    with fastapi.testclient.TestClient(app) as http:
        answer = http.post("/three")
        assert (answer.status_code, answer.json()) == (200, {"c": 3}), answer.text
        run_id = answer.headers["x-stepline-run-id"]
    engine.stop()
    with sqlite3.connect(database) as conn:
        stored = conn.execute(
            "SELECT name, seq FROM steps WHERE run_id = ? ORDER BY seq", (run_id,)
        ).fetchall()
    # the foreign step keeps its place and b and c take the places after it: steps kept
    # and taken stale would have given b the seq 1 again, and c 2
    assert stored == [("a", 0), ("x", 1), ("b", 2), ("c", 3)], stored
