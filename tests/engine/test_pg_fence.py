"""A call's answer on Postgres in one statement, fenced by its rows' ``xmin``
(``_store/pg_fence.py``). The units are ``fence_units``': what each saw is its step's
memo, so a fence that failed to refuse shows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from stepline.engine._store import Store, pg_fence
from stepline.engine._store.controls import FunctionPause
from stepline.engine._store.pg_tx import PostgresTx
from stepline.engine._store.postgres import PostgresStore
from tests._support.databases import postgres_schema
from tests.engine.fence_units import SAW, Query, answer, jobs_and_revision, memos, seed
from tests.engine.test_store_contract import atomic, with_store

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


def query(url: str) -> Query:
    def rows(sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(url) as conn:
            return conn.execute(sql).fetchall()

    return rows


def test_a_call_s_next_answers_go_as_one_statement_each(schema: str, fast: list[str]) -> None:
    async def body(store: Store) -> None:
        await seed(store)
        for i in range(5):
            assert await atomic(store, answer(i)) == f"R:{i}"

    with_store(schema, body)
    # the first answer read its call (no transaction had left a fence); the rest did not
    assert fast == ["R:1", "R:2", "R:3", "R:4"]
    assert memos(query(schema)) == {f"s{i}": SAW for i in range(5)}
    assert jobs_and_revision(query(schema)) == (["R:5"], 5)


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
    saw = memos(query(schema))["s2"]
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
    assert jobs_and_revision(query(schema)) == (["R:4"], 4)


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
    assert memos(query(schema))["s2"] == {**SAW, "cancel_reason": "grouped"}
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
    assert memos(query(schema)) == {"s0": SAW, "s1": SAW}
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
    assert memos(query(schema)) == {f"s{i}": SAW for i in range(3)}
