"""What the engine sends Postgres per step and per batch of events (a budget).

Round trips are counted at psycopg (``Cursor.execute`` and ``executemany``, which the
store's ``_x`` and its ``NOTIFY`` go through) around an embedded engine on a fresh
schema, and the statements in each (a write transaction's ``BEGIN`` goes with its first
statement, the writes whose answer nobody reads with its next one or its ``COMMIT``:
``pg_tx.Pending``, one simple query of statements joined by ``";\\n"``). The figures pin
the budget: a step-by-step step is one write transaction that sends no ``NOTIFY`` for the
call it leased itself, nor does a start whose first call this node takes; a batch of
events is one multi-row ``INSERT`` and one look at the waits (which also reads whether
any function is paused), not two statements per event.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import psycopg
import pytest
from psycopg import _connection_base

import stepline
from stepline.embedded import EmbeddedEngine
from stepline.engine import EngineSettings
from stepline.engine._store import RunFilter, filters, store_for
from tests._support.databases import postgres_schema

pytestmark = [pytest.mark.postgres]

STEPS = 10


def split(query: str) -> list[str]:
    """The statements of one round trip, less the transaction's ``BEGIN`` and ``COMMIT``."""
    return [text for text in query.split(";\n") if text not in ("BEGIN", "COMMIT")]


class Statements:
    """Every query text psycopg executes while installed (any thread): one a round trip."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self._lock = threading.Lock()

    def count(self, fragment: str) -> int:
        """Statements holding ``fragment``."""
        with self._lock:
            return sum(fragment in text for query in self.sent for text in split(query))

    def reset(self) -> None:
        with self._lock:
            self.sent.clear()

    def total(self) -> int:
        """Round trips."""
        with self._lock:
            return len(self.sent)

    def alone(self, command: str) -> int:
        """Round trips that sent ``command`` and nothing else."""
        with self._lock:
            return sum(query.strip().upper() == command for query in self.sent)

    def statements(self) -> int:
        """Statements, ``BEGIN`` and ``COMMIT`` left out."""
        with self._lock:
            return sum(len(split(query)) for query in self.sent)

    def note(self, query: Any) -> None:
        with self._lock:
            self.sent.append(str(query))


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Statements:
    seen = Statements()
    execute, many = psycopg.Cursor.execute, psycopg.Cursor.executemany

    def counted(self: psycopg.Cursor[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
        seen.note(query)
        return execute(self, query, *args, **kwargs)

    def counted_many(self: psycopg.Cursor[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
        seen.note(query)  # one pipelined round trip
        return many(self, query, *args, **kwargs)

    def counted_command(self: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
        seen.note(command.decode() if isinstance(command, bytes) else command)  # BEGIN, COMMIT
        return run_command(self, command, *args, **kwargs)

    run_command = _connection_base.BaseConnection._exec_command
    monkeypatch.setattr(psycopg.Cursor, "execute", counted)
    monkeypatch.setattr(psycopg.Cursor, "executemany", counted_many)
    monkeypatch.setattr(_connection_base.BaseConnection, "_exec_command", counted_command)
    return seen


def _app() -> tuple[stepline.Client, stepline.Function, stepline.Function]:
    client = stepline.Client("budget", is_production=False, checkpointing=False, environ={})

    @client.function(id="ten", trigger=stepline.TriggerEvent(event="budget/ten"), retries=0)
    def ten(ctx: stepline.SyncContext) -> object:
        for i in range(STEPS):
            ctx.step.run(f"s{i}", lambda i=i: {"i": i})
        return ctx.event.data.get("k")

    @client.function(id="other", trigger=stepline.TriggerEvent(event="budget/other"))
    def other(ctx: stepline.SyncContext) -> object:
        return None

    return client, ten, other


def test_a_step_by_step_step_is_one_transaction_with_no_notify(statements: Statements) -> None:
    with postgres_schema("budget") as url:
        client, ten, other = _app()
        engine = EmbeddedEngine(client, [ten, other], database=url, checkpointing=False)
        engine.start()
        try:
            client.start_sync(ten, {"k": -1}).result(timeout=30)  # warm: statements prepared
            statements.reset()
            runs = 5
            for k in range(runs):
                assert client.start_sync(ten, {"k": k}).result(timeout=30) == k
            steps = runs * STEPS
            per_step = statements.statements() / steps
            trips = statements.total() / steps
            begins = statements.alone("BEGIN")
            notifies = statements.count("pg_notify")
            reads = statements.count("FROM steps")
        finally:
            engine.stop()
            client.close()
    # ~4.9 statements a step: the next call inserted already leased, the call read with
    # its run and whether any function is paused, a run's row read once a transaction,
    # its steps once a run (``test_known_steps``), the answered call deleted by the
    # insert of the next (``test_store_replace_job``), the step written in the run's
    # UPDATE; no NOTIFY: each call, the first included, is leased by this node in the
    # transaction that queued it (a NOTIFY per step would cost 2 more transactions, for
    # its echo)
    assert per_step <= 5.3, f"{per_step:.1f} statements per step"
    # a run of ten steps: its start (BEGIN with the event's insert, the run's, its first
    # call's, the event's link with the look at the waits, the paused functions, the
    # run marked started with the COMMIT: 6), its first answer (BEGIN with the call's
    # read, the next call's insert, the step with the run's row and the COMMIT: 3), eight
    # answers of one statement each (``pg_fence``), its last answer (BEGIN with the
    # call's read, its step with the run's end, the finished event with the COMMIT: 3):
    # 2.0 a step (before these rode together: 2.8); on a loaded machine an answer that
    # joined a group commit leaves no fence, and the next takes the transaction
    assert begins == 0, f"{begins} BEGINs sent alone"
    assert trips <= 2.6, f"{trips:.2f} round trips per step"
    assert reads <= runs, f"{reads} reads of steps for {runs} runs"
    assert notifies == 0, f"{notifies} NOTIFYs for {runs} runs of {STEPS} steps"


def test_an_event_whose_run_this_node_starts_sends_no_notify(statements: Statements) -> None:
    client = stepline.Client("budget", is_production=False, environ={})
    gate = threading.Event()

    @client.function(id="held", trigger=stepline.TriggerEvent(event="budget/held"))
    def held(ctx: stepline.SyncContext) -> object:
        gate.wait(30)  # the send's statements are counted before the run answers
        return None

    with postgres_schema("budget") as url:
        engine = EmbeddedEngine(client, [held], database=url)
        engine.start()
        try:
            gate.set()
            client.start_sync(held, {}).result(timeout=30)  # warm, and ended
            gate.clear()
            statements.reset()
            client.send_sync(stepline.Event(name="budget/held", data={}))
            sent = list(statements.sent)
        finally:
            gate.set()
            engine.stop()
            client.close()
    # its first call is this node's, leased in the transaction: no other node to wake
    assert not [s for s in sent if "pg_notify" in s], sent
    # one look at the waits, which says too whether any function is paused (none is):
    # no read of the paused functions of its own
    assert sum("FROM pauses" in s for s in sent) == 1, sent
    assert sum("function_controls" in s for s in sent) == 1, sent
    assert not [s for s in sent if "paused_at FROM function_controls" in s], sent


def test_a_batch_of_events_is_one_insert_and_one_look_at_the_waits(
    statements: Statements,
) -> None:
    with postgres_schema("budget") as url:
        client, ten, other = _app()
        engine = EmbeddedEngine(client, [ten, other], database=url)
        engine.start()
        try:
            client.send_sync(stepline.Event(name="budget/none", data={}))
            statements.reset()
            sent = client.send_sync(
                [stepline.Event(name="budget/none", data={"i": i}) for i in range(100)]
            )
            inserts = statements.count("INSERT INTO events")
            looks = statements.count("FROM pauses")
        finally:
            engine.stop()
            client.close()
    assert len(sent) == 100
    assert inserts == 1, f"{inserts} INSERTs for 100 events"  # not one per event
    assert looks == 1, f"{looks} reads of the waits for 100 events"  # not one per event


def test_runs_of_an_event_are_found_through_the_index_of_event_runs() -> None:
    # event_runs.event_id had the default collation, events.internal_id "C": the join
    # could not use event_runs_event and read the whole table (83 ms at 1M runs)
    with postgres_schema("plans") as url:
        store = store_for(EngineSettings(database_url=url))
        asyncio.run(store.open())
        asyncio.run(store.close())
        sql, args = filters.runs_query(RunFilter(event_id="01K0000000000000000000000E", limit=51))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET enable_seqscan = off")  # a table this small is scanned anyway
            plan = "\n".join(
                str(row[0])
                for row in conn.execute(f"EXPLAIN {sql.replace('?', '%s')}", args).fetchall()
            )
    assert "Seq Scan on event_runs" not in plan, plan
    assert "event_runs_event" in plan, plan


def test_a_run_s_end_is_three_statements(
    statements: Statements, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stepline.engine._runs.transitions import RunTransitions
    from stepline.engine._store.pg_tx import Pending, PostgresTx

    ending = threading.local()
    at_end: list[str] = []  # the statements the run's end asks for, sent at once or later
    trips: list[str] = []  # the round trips made while it runs
    original = RunTransitions._finish
    note, execute, add = statements.note, PostgresTx.execute, Pending.add

    def finish(self: RunTransitions, *args: Any, **kwargs: Any) -> None:
        ending.on = True
        try:
            original(self, *args, **kwargs)
        finally:
            ending.on = False

    def noted(query: Any) -> None:
        if getattr(ending, "on", False):
            trips.append(str(query))
        note(query)

    def asked(self: PostgresTx, sql: str, args: Any = ()) -> Any:
        if getattr(ending, "on", False):
            at_end.append(sql)
        return execute(self, sql, args)

    def queued(self: Pending, text: str, args: Any = ()) -> None:
        if getattr(ending, "on", False):
            at_end.append(text)
        add(self, text, args)

    monkeypatch.setattr(RunTransitions, "_finish", finish)
    monkeypatch.setattr(statements, "note", noted)
    monkeypatch.setattr(PostgresTx, "execute", asked)
    monkeypatch.setattr(Pending, "add", queued)
    with postgres_schema("budget") as url:
        client, ten, other = _app()
        engine = EmbeddedEngine(client, [ten, other], database=url, checkpointing=False)
        engine.start()
        try:
            client.start_sync(ten, {"k": -1}).result(timeout=30)  # warm
            at_end.clear()
            trips.clear()
            runs = 3
            for k in range(runs):
                assert client.start_sync(ten, {"k": k}).result(timeout=30) == k
        finally:
            engine.stop()
            client.close()
    # the run's row with its last step; its jobs, waits, singletons and buckets deleted
    # with its attributes and the waits for its finished event read, in one statement;
    # the finished event, whose waits need no look of their own when none listens
    assert len(at_end) == 3 * runs, at_end
    # the run's row and step go with the deletes: one round trip; the finished event
    # (its id made just now: its insert needs no answer) goes with the COMMIT after
    assert len(trips) == runs, trips
    assert sum(s.startswith("WITH d0 AS (DELETE FROM jobs") for s in at_end) == runs, at_end
    assert not [s for s in at_end if s.startswith("SELECT pause_id")], at_end
