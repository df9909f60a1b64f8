"""Run affinity: a run's next call skips the queue, unless other work waits for a slot.

A worker that records a call's answer leases the run's next call in the same
transaction, and a run started by this node has its first call taken by its worker in
the starting transaction. Neither may let one run hold a slot others are queued for.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

import stepline
from stepline.engine import RunStatus
from stepline.engine._model import Job, JobKind
from stepline.engine._store.queue import QueueSql
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.engines import finished, running


@pytest.fixture
def queue_leases(monkeypatch: pytest.MonkeyPatch) -> list[Job]:
    """Every job leased through the queue (``lease_jobs``), on any store."""
    leased: list[Job] = []
    original = QueueSql.lease_jobs

    def spy(self: QueueSql, *args: Any, **kwargs: Any) -> list[Job]:
        jobs = original(self, *args, **kwargs)
        leased.extend(jobs)
        return jobs

    monkeypatch.setattr(QueueSql, "lease_jobs", spy)
    return leased


def steps_app(steps: int, log: list[tuple[str, int]]) -> tuple[stepline.Client, Any]:
    client = dev_client("aff", checkpointing=False)  # one call per step

    @client.function(id="steps", trigger=stepline.TriggerEvent(event="aff/go"))
    def fn(ctx: stepline.SyncContext) -> int:
        total = 0
        for i in range(steps):
            total += ctx.step.run(f"s{i}", lambda i=i: log.append((ctx.event.data["k"], i)) or i)
        return total

    return client, fn


def test_a_run_s_calls_go_from_one_to_the_next_without_the_queue(
    db: str, queue_leases: list[Job]
) -> None:
    log: list[tuple[str, int]] = []
    client, fn = steps_app(4, log)

    async def scenario() -> None:
        async with running(db, apps=[(client, [fn])], checkpointing=False) as engine:
            run_id, _ = await engine.start_function("aff-steps", {"k": "a"})
            run = await finished(engine, run_id)
            assert run.status is RunStatus.COMPLETED
            assert json.loads(run.output or "") == 0 + 1 + 2 + 3
            steps = await engine.run_steps(run_id)
            assert [s.name for s in steps] == ["s0", "s1", "s2", "s3"]

    arun(scenario())
    assert log == [("a", 0), ("a", 1), ("a", 2), ("a", 3)]
    calls = [j for j in queue_leases if j.kind is JobKind.EXECUTE]
    assert calls == [], "five calls, each taken by the worker directly"


def test_a_full_worker_takes_turns_between_runs(db: str, queue_leases: list[Job]) -> None:
    log: list[tuple[str, int]] = []
    client, fn = steps_app(3, log)

    async def scenario() -> None:
        settings: dict[str, Any] = {"checkpointing": False, "concurrency": 1}
        async with running(db, apps=[(client, [fn])], **settings) as engine:
            events = [{"name": "aff/go", "data": {"k": k}} for k in ("a", "b")]
            await engine.send(events)
            runs = await engine.list_runs()
            assert len(runs) == 2
            for run in runs:
                assert (await finished(engine, run.run_id)).status is RunStatus.COMPLETED

    arun(scenario())
    assert sorted(log) == [(k, i) for k in ("a", "b") for i in range(3)]
    # one slot: a run gives it up after each call while the other waits, so neither run
    # finishes before the other starts. Strict alternation is not promised: a run whose
    # next call is not queued yet when the slot frees (a loaded machine) does not hold it,
    # and the other run takes a second turn.
    first = {k: log.index((k, 0)) for k in ("a", "b")}
    last = {k: log.index((k, 2)) for k in ("a", "b")}
    assert first["b"] < last["a"], log
    assert first["a"] < last["b"], log
    assert any(j.kind is JobKind.EXECUTE for j in queue_leases)
