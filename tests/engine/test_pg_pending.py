"""What a write transaction on Postgres sends, and when (``pg_tx.Pending``).

Behind a transaction pooler (no prepared statements there) the ``BEGIN`` goes with the
first statement and the writes nobody reads with the next statement or the ``COMMIT``;
otherwise each statement goes alone, bound by the server. Either way a transaction that
sends nothing sends no ``BEGIN``, and one that fails leaves nothing behind. The
pooler's mode is the store's setting: these stores talk to Postgres itself.

What is sent is counted at psycopg: every ``Cursor.execute`` (one round trip each, a
simple query of several statements joined by ``";\\n"`` included) and every command
psycopg sends on its own. What each case then reads back says whether the writes went,
and went once, with their values as given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import psycopg.errors
import pytest
from psycopg import _connection_base

import stepline
from stepline.embedded import EmbeddedEngine
from stepline.engine._model import EventRunLink, StepRecord, StepStatus
from stepline.engine._store import Store, Tx
from stepline.engine._store.pg_tx import PostgresTx
from stepline.engine._store.postgres import PostgresStore
from tests._support.aio import arun
from tests._support.databases import postgres_database, postgres_schema
from tests.engine.test_store_contract import atomic, run_record

pytestmark = [pytest.mark.postgres]


@pytest.fixture
def pooled() -> bool:
    return False


@pytest.fixture
def schema(pooled: bool) -> Iterator[str]:
    """A fresh schema; behind a pooler, a fresh database (a pooler passes no ``options=``
    on, so no ``search_path`` in the URL, and its default schema is free)."""
    with postgres_database("pending") if pooled else postgres_schema() as url:
        yield url


def with_store(url: str, body: Callable[[Store], Any], *, pooled: bool) -> None:
    """``body`` on a store of ``url``, told it is behind a transaction pooler or not (the
    pooler's direct URL is ``url`` too: migrations and ``LISTEN`` go there)."""

    async def scenario() -> None:
        if pooled:
            store = PostgresStore(url, pooler="transaction", direct_url=url)
        else:
            store = PostgresStore(url)
        await store.open()
        try:
            await body(store)
        finally:
            await store.close()

    arun(scenario())


both = pytest.mark.parametrize("pooled", [False, True], ids=["postgres", "transaction-pooler"])


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


@both
def test_a_transaction_that_sends_nothing_sends_no_begin(
    schema: str, sent: list[str], pooled: bool
) -> None:
    async def body(store: Store) -> None:
        sent.append("on")
        assert await atomic(store, lambda tx: 7) == 7

    with_store(schema, body, pooled=pooled)
    assert sent == ["on"], sent


@both
def test_the_writes_nobody_reads_go_with_the_commit_behind_a_pooler(
    schema: str, sent: list[str], pooled: bool
) -> None:
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
        if not pooled:  # each alone, bound by the server
            assert [w.split(" ")[0] for w in writes] == ["BEGIN", "INSERT"] * 1 + [
                "INSERT",
                "INSERT",
                "COMMIT",
            ], writes
            return
        assert len(writes) == 2, writes  # BEGIN with the run's insert; the rest with COMMIT
        assert writes[0].startswith("BEGIN;\nINSERT INTO runs"), writes
        assert writes[1].endswith(";\nCOMMIT"), writes
        assert "INSERT INTO event_runs" in writes[1]
        assert "INSERT INTO steps" in writes[1]

    with_store(schema, body, pooled=pooled)


@both
def test_a_write_that_fails_leaves_nothing(schema: str, sent: list[str], pooled: bool) -> None:
    def work(tx: Tx) -> None:
        assert tx.insert_run(run_record("R"))
        tx.put_step(_step(1))
        assert isinstance(tx, PostgresTx)
        tx.write("SELECT 1 / 0")  # fails where it is sent: at once, or with the COMMIT

    async def body(store: Store) -> None:
        sent.append("on")
        with pytest.raises(psycopg.errors.DivisionByZero):
            await atomic(store, work)
        assert sent[-1] == "ROLLBACK", sent
        # nothing of it is stored, and the connections serve on
        assert await store.read(lambda tx: tx.get_run("R")) is None
        assert await atomic(store, lambda tx: tx.insert_run(run_record("R")))
        assert await store.read(lambda tx: tx.get_steps("R")) == []

    with_store(schema, body, pooled=pooled)


@both
def test_an_error_in_the_work_rolls_back_what_it_sent(
    schema: str, sent: list[str], pooled: bool
) -> None:
    def work(tx: Tx) -> None:
        assert tx.insert_run(run_record("R"))
        tx.link_event(_link())  # waiting: dropped
        raise LookupError("the work's own error")

    async def body(store: Store) -> None:
        sent.append("on")
        with pytest.raises(LookupError):
            await atomic(store, work)
        heads = [text.split(";")[0].split(" ")[0] for text in sent[1:]]
        assert heads == (
            ["BEGIN", "ROLLBACK"] if pooled else ["BEGIN", "INSERT", "INSERT", "ROLLBACK"]
        ), sent
        assert await store.read(lambda tx: tx.get_run("R")) is None
        assert await store.read(lambda tx: tx.event_links("E1")) == []
        assert await atomic(store, lambda tx: tx.insert_run(run_record("R")))

    with_store(schema, body, pooled=pooled)


@pytest.mark.parametrize("pooled", [True], ids=["transaction-pooler"])
def test_a_step_by_step_run_behind_a_transaction_pooler_is_nineteen_round_trips(
    schema: str, sent: list[str]
) -> None:
    client = stepline.Client("pending", is_production=False, checkpointing=False, environ={})

    @client.function(id="ten", trigger=stepline.TriggerEvent(event="pending/ten"), retries=0)
    def ten(ctx: stepline.SyncContext) -> object:
        for i in range(10):
            ctx.step.run(f"s{i}", lambda i=i: {"i": i})
        return ctx.event.data.get("k")

    engine = EmbeddedEngine(
        client,
        [ten],
        database=schema,
        checkpointing=False,
        db_pooler="transaction",
        database_direct_url=schema,
    )
    engine.start()
    try:
        client.start_sync(ten, {"k": -1}).result(timeout=30)  # warm
        sent.append("on")
        runs = 5
        for k in range(runs):
            assert client.start_sync(ten, {"k": k}).result(timeout=30) == k
        trips = sent[1:]
    finally:
        engine.stop()
        client.close()
    # a run: its start (BEGIN with the event's insert, the look at the waits and the
    # paused functions, the run's insert, its first call's, the event's link with the run
    # marked started and the COMMIT: 5), its first answer (BEGIN with the call's read,
    # the next call's insert, the step with the run's row and the COMMIT: 3), eight
    # answers of one statement each (``pg_fence``), its last answer (BEGIN with the
    # call's read, its step with the run's end, the finished event with the COMMIT: 3).
    # On a loaded machine an answer that joined a group commit leaves no fence: the next
    # takes the transaction. Each statement alone, bound by the server: 27 a run.
    assert not [t for t in trips if t.strip().upper() in ("BEGIN", "COMMIT")], trips
    assert len(trips) <= 22 * runs, f"{len(trips) / runs:.1f} round trips a run"
