"""A sleep's end and the run's next call: one unit of work, with no turn through the queue.

The transaction that ends a run's sleep (its wake job) queues the run's next call already
leased by the worker that woke it, reading the run's steps the call needs, and the same
task makes the call. Through the queue, the call waited behind every older wake still due
and cost a lease's statements: on Postgres, where each statement is a round trip, waking
ran at a quarter of SQLite's rate (bench/README.md, "Waking sleepers on Postgres").
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from typing import Any

import psycopg
import pytest

import stepline
from stepline.engine import RunStatus
from stepline.engine._model import Job, JobKind
from stepline.engine._store.queue import QueueSql
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.databases import postgres_schema
from tests._support.engines import finished, running

RUNS = 12
_TRANSACTION_CONTROL = {"BEGIN", "COMMIT", "ROLLBACK"}


@pytest.fixture
def queue_leases(monkeypatch: pytest.MonkeyPatch) -> list[Job]:
    """Every job leased through the queue (``lease_jobs``), on any store."""
    leased: list[Job] = []
    lock = threading.Lock()
    original = QueueSql.lease_jobs

    def spy(self: QueueSql, *args: Any, **kwargs: Any) -> list[Job]:
        jobs = original(self, *args, **kwargs)
        with lock:
            leased.extend(jobs)
        return jobs

    monkeypatch.setattr(QueueSql, "lease_jobs", spy)
    return leased


def sleepers_app(woke: dict[int, list[float]]) -> tuple[stepline.Client, stepline.Function]:
    client = dev_client("wake", checkpointing=False)  # one call after the sleep

    @client.function(id="sleeper", trigger=stepline.TriggerEvent(event="wake/go"), retries=0)
    def sleeper(ctx: stepline.SyncContext) -> object:
        data: dict[str, Any] = dict(ctx.event.data)
        k, due = int(data["k"]), float(data["due"])
        ctx.step.sleep_until("nap", dt.datetime.fromtimestamp(due, dt.timezone.utc))

        def mark() -> int:
            woke.setdefault(k, []).append(time.time())
            return k

        return ctx.step.run("woke", mark)

    return client, sleeper


async def sleep_and_wake(db: str, woke: dict[int, list[float]], due: float) -> None:
    client, fn = sleepers_app(woke)
    async with running(db, apps=[(client, [fn])], checkpointing=False) as engine:
        await engine.send([{"name": "wake/go", "data": {"k": k, "due": due}} for k in range(RUNS)])
        runs = await engine.list_runs()
        assert len(runs) == RUNS
        for run in runs:
            ended = await finished(engine, run.run_id)
            assert ended.status is RunStatus.COMPLETED, ended


def test_a_woken_run_s_next_call_is_taken_by_its_wake(db: str, queue_leases: list[Job]) -> None:
    woke: dict[int, list[float]] = {}
    due = time.time() + 1.5
    arun(sleep_and_wake(db, woke, due))
    assert sorted(woke) == list(range(RUNS))
    assert all(len(times) == 1 for times in woke.values()), woke  # each woke once
    assert min(t for times in woke.values() for t in times) >= due  # not before its time
    woken: set[str | None] = set()  # the runs whose wake was leased so far
    calls = []  # calls of runs leased through the queue after their wake
    for job in queue_leases:
        if job.kind is JobKind.WAKE:
            woken.add(job.run_id)
        elif job.kind is JobKind.EXECUTE and job.run_id in woken:
            calls.append(job)
    assert len(woken) == RUNS
    assert calls == [], f"{len(calls)} calls of woken runs leased through the queue"


@pytest.mark.postgres
def test_waking_a_run_costs_postgres_few_statements(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []
    lock = threading.Lock()
    counting = [False]
    execute, many = psycopg.Cursor.execute, psycopg.Cursor.executemany

    def counted(self: psycopg.Cursor[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
        if counting[0] and not self.connection.read_only:  # the engine's, not the test's
            # the statements a message carries (writes go with the COMMIT), not the
            # transaction's own BEGIN and COMMIT
            texts = [t.strip() for t in str(query).split(";\n")]
            with lock:
                sent.extend(t for t in texts if t.upper() not in _TRANSACTION_CONTROL)
        return execute(self, query, *args, **kwargs)

    def counted_many(self: psycopg.Cursor[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
        if counting[0] and not self.connection.read_only:
            with lock:
                sent.append(str(query))  # one pipelined round trip
        return many(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", counted)
    monkeypatch.setattr(psycopg.Cursor, "executemany", counted_many)
    woke: dict[int, list[float]] = {}
    due = time.time() + 4.0
    client, fn = sleepers_app(woke)

    async def scenario(db: str) -> None:
        # no idle poll: the loop leases when the wakes come due and when a commit queues
        # a call, not twenty times a second for as long as a loaded machine takes
        async with running(
            db, apps=[(client, [fn])], checkpointing=False, poll_interval=60.0
        ) as engine:
            events = [{"name": "wake/go", "data": {"k": k, "due": due}} for k in range(RUNS)]
            await engine.send(events)
            runs = await engine.list_runs()
            assert len(runs) == RUNS
            for run in runs:  # every run asleep; counted from their due time on
                while not any(s.name == "nap" for s in await engine.run_steps(run.run_id)):
                    await asyncio.sleep(0.02)
            await asyncio.sleep(max(0.0, due - time.time()))
            counting[0] = True
            for run in runs:
                assert (await finished(engine, run.run_id)).status is RunStatus.COMPLETED
            counting[0] = False

    with postgres_schema("wake") as url:
        arun(scenario(url))
    assert sorted(woke) == list(range(RUNS))
    per_run = len(sent) / RUNS
    print(f"{per_run:.2f} statements per woken run")
    # ~8.3 a run (BEGIN and COMMIT not counted): the wake (its job read with the run's
    # row and whether any function is paused, the run's steps, its job replaced by the
    # run's next call inserted leased, the step's end), the call's answer and the run's
    # end (3: its row, one statement of deletes and reads, the finished event), a share of
    # the leases that took the wakes. With the run's end one statement a table (8) it was
    # ~13.6; through the queue (19.8): the wake job's own DELETE, the waited step, the
    # others pending and the last seq read apart, the call's lease and its reads.
    assert per_run <= 9.5, f"{per_run:.1f} statements per woken run"
