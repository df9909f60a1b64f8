"""What the engine sends Postgres per step and per batch of events (a budget).

Statements are counted at psycopg (``Cursor.execute`` and ``executemany``, which the
store's ``_x`` and its ``NOTIFY`` go through) around an embedded engine on a fresh
schema. The figures pin the budget: a step-by-step step is one write
transaction that sends no ``NOTIFY`` for the call it leased itself, nor does a start
whose first call this node takes; a batch of events is one multi-row ``INSERT`` and one
look at the waits (which also reads whether any function is paused), not two statements
per event.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import psycopg
import pytest

import stepline
from stepline.embedded import EmbeddedEngine
from stepline.engine import EngineSettings
from stepline.engine._store import RunFilter, filters, store_for
from tests._support.databases import postgres_schema

pytestmark = [pytest.mark.postgres]

STEPS = 10


class Statements:
    """Every statement text psycopg executes while installed (any thread)."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self._lock = threading.Lock()

    def count(self, fragment: str) -> int:
        with self._lock:
            return sum(fragment in text for text in self.sent)

    def reset(self) -> None:
        with self._lock:
            self.sent.clear()

    def total(self) -> int:
        with self._lock:
            return len(self.sent)

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

    monkeypatch.setattr(psycopg.Cursor, "execute", counted)
    monkeypatch.setattr(psycopg.Cursor, "executemany", counted_many)
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
            per_step = statements.total() / steps
            notifies = statements.count("pg_notify")
            reads = statements.count("FROM steps")
            paused_reads = statements.count("reason FROM function_controls")
            looks = statements.count("FROM pauses")
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
    assert reads <= runs, f"{reads} reads of steps for {runs} runs"
    assert notifies == 0, f"{notifies} NOTIFYs for {runs} runs of {STEPS} steps"
    # a start looks once at the waits for its event, which says too whether any function
    # is paused: its first call's lease reads no paused functions of its own (a run's
    # end looks once too, for its finished event's waits)
    assert looks == 2 * runs, f"{looks} looks at the waits for {runs} runs"
    assert paused_reads == 0, f"{paused_reads} reads of the paused functions"


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
    assert not [s for s in sent if "reason FROM function_controls" in s], sent


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

    ending = threading.local()
    at_end: list[str] = []
    original = RunTransitions._finish
    note = statements.note

    def finish(self: RunTransitions, *args: Any, **kwargs: Any) -> None:
        ending.on = True
        try:
            original(self, *args, **kwargs)
        finally:
            ending.on = False

    def noted(query: Any) -> None:
        if getattr(ending, "on", False):
            at_end.append(str(query))
        note(query)

    monkeypatch.setattr(RunTransitions, "_finish", finish)
    monkeypatch.setattr(statements, "note", noted)
    with postgres_schema("budget") as url:
        client, ten, other = _app()
        engine = EmbeddedEngine(client, [ten, other], database=url, checkpointing=False)
        engine.start()
        try:
            client.start_sync(ten, {"k": -1}).result(timeout=30)  # warm
            at_end.clear()
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
    assert sum(s.startswith("WITH d0 AS (DELETE FROM jobs") for s in at_end) == runs, at_end
    assert not [s for s in at_end if s.startswith("SELECT pause_id")], at_end
