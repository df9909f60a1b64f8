"""A write transaction on Postgres sends its ``BEGIN`` with its first statement and the
writes nobody reads with its next statement or its ``COMMIT`` (``pg_tx.Pending``).

What is sent is counted at psycopg: every ``Cursor.execute`` (one round trip each, a
simple query of several statements joined by ``";\\n"`` included) and every command
psycopg sends on its own (``BEGIN``, ``COMMIT``). What each case then reads back says
whether the writes went, and went once, with their values as given.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg.errors
import pytest
from psycopg import _connection_base

from stepline.engine._model import EventRunLink, StepRecord, StepStatus
from stepline.engine._store import Store, Tx
from stepline.engine._store.pg_tx import PostgresTx
from tests._support.databases import postgres_schema
from tests.engine.test_store_contract import atomic, run_record, with_store

pytestmark = [pytest.mark.postgres]


@pytest.fixture
def schema() -> Iterator[str]:
    with postgres_schema() as url:
        yield url


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each round trip's text, from any thread, once ``sent.append("on")`` ran (the
    store's opening is not counted)."""
    trips: list[str] = []
    execute = psycopg.Cursor.execute
    command = _connection_base.BaseConnection._exec_command

    def counted(self: psycopg.Cursor[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
        if trips:
            trips.append(str(query))
        return execute(self, query, *args, **kwargs)

    def counted_command(self: Any, cmd: Any, *args: Any, **kwargs: Any) -> Any:
        if trips:
            trips.append(cmd.decode() if isinstance(cmd, bytes) else str(cmd))
        return command(self, cmd, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", counted)
    monkeypatch.setattr(_connection_base.BaseConnection, "_exec_command", counted_command)
    return trips


def _step(memo: Any) -> StepRecord:
    return StepRecord("R", "s1", "one", "StepRun", StepStatus.COMPLETED, memo=memo, seq=0)


def _link() -> EventRunLink:
    return EventRunLink("E1", "app-fn", "R", None, 100.0)


def test_a_transaction_that_sends_nothing_sends_no_begin(schema: str, sent: list[str]) -> None:
    async def body(store: Store) -> None:
        sent.append("on")
        assert await atomic(store, lambda tx: 7) == 7

    with_store(schema, body)
    assert sent == ["on"], sent


def test_the_writes_nobody_reads_go_with_the_commit(schema: str, sent: list[str]) -> None:
    memo = {"text": "it's 100% \\ done; COMMIT", "n": 2**62, "none": None}

    def work(tx: Tx) -> None:
        assert tx.insert_run(run_record("R"))  # its answer is read: sent at once
        tx.link_event(_link())
        tx.put_step(_step(memo))

    def read(tx: Tx) -> tuple[Any, Any]:
        return tx.get_steps("R"), tx.event_links("E1")

    async def body(store: Store) -> None:
        sent.append("on")
        await atomic(store, work)
        writes = sent[1:]
        del sent[1:]
        steps, linked = await store.read(read)
        assert [step.memo for step in steps] == [memo]
        assert linked == [_link()]
        assert len(writes) == 2, writes  # BEGIN with the run's insert; the rest with COMMIT
        assert writes[0].startswith("BEGIN;\nINSERT INTO runs"), writes
        assert writes[1].endswith(";\nCOMMIT"), writes
        assert "INSERT INTO event_runs" in writes[1]
        assert "INSERT INTO steps" in writes[1]

    with_store(schema, body)


def test_a_write_that_fails_with_the_commit_leaves_nothing(schema: str, sent: list[str]) -> None:
    def work(tx: Tx) -> None:
        assert tx.insert_run(run_record("R"))
        tx.put_step(_step(1))
        assert isinstance(tx, PostgresTx)
        tx.write("SELECT 1 / 0")  # fails where it is sent: with the COMMIT

    async def body(store: Store) -> None:
        sent.append("on")
        with pytest.raises(psycopg.errors.DivisionByZero):
            await atomic(store, work)
        assert sent[-1] == "ROLLBACK", sent
        # nothing of it is stored, and the connections serve on
        assert await store.read(lambda tx: tx.get_run("R")) is None
        assert await atomic(store, lambda tx: tx.insert_run(run_record("R")))
        assert await store.read(lambda tx: tx.get_steps("R")) == []

    with_store(schema, body)


def test_an_error_in_the_work_rolls_back_what_it_sent(schema: str, sent: list[str]) -> None:
    def work(tx: Tx) -> None:
        assert tx.insert_run(run_record("R"))
        tx.link_event(_link())  # waiting: dropped
        raise LookupError("the work's own error")

    async def body(store: Store) -> None:
        sent.append("on")
        with pytest.raises(LookupError):
            await atomic(store, work)
        assert [text.split(";")[0] for text in sent[1:]] == ["BEGIN", "ROLLBACK"], sent
        assert await store.read(lambda tx: tx.get_run("R")) is None
        assert await store.read(lambda tx: tx.event_links("E1")) == []
        assert await atomic(store, lambda tx: tx.insert_run(run_record("R")))

    with_store(schema, body)
