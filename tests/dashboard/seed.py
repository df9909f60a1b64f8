"""Fill a store with many runs, straight through ``Tx`` (no SDK calls): for load tests."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from stepline.engine._ids import ulid
from stepline.engine._model import (
    AppRecord,
    EventRecord,
    EventRunLink,
    FunctionRecord,
    Run,
    RunStatus,
    StepRecord,
    StepStatus,
)
from stepline.engine._store import Store, Tx
from stepline.engine._store.attempts import StepAttempt
from stepline.engine._store.sql import SqlTx

FUNCTIONS = tuple(f"load-fn-{i}" for i in range(8))
#: every this-many runs, the last step of one failed twice before it succeeded
RETRIED_EVERY = 10
#: every this-many runs, one (index ``k * CHILD_EVERY + 1``) was invoked by the run before it
CHILD_EVERY = 50
#: Most runs end well; a few fail, are cancelled or still going, as in a real engine.
_STATUSES = (
    [RunStatus.COMPLETED] * 85
    + [RunStatus.FAILED] * 5
    + [RunStatus.CANCELLED] * 3
    + [RunStatus.RUNNING] * 5
    + [RunStatus.QUEUED] * 2
)


def _function(function_id: str, now: float) -> FunctionRecord:
    config = {
        "id": function_id,
        "name": function_id,
        "triggers": [{"event": f"load/{function_id}"}],
        "steps": {"step": {"id": "step", "name": "step", "runtime": {"type": "http"}}},
    }
    return FunctionRecord(function_id, "load", function_id, config, now)


async def seed(store: Store, *, runs: int, steps: int, now: float, span: float) -> list[str]:
    """Store ``runs`` runs (each with an event, a link and ``steps`` steps) over ``span`` s.

    Every ``RETRIED_EVERY``-th run's last step has two failed attempts (``step_attempts``),
    and every ``CHILD_EVERY``-th run invoked the next one from its first step.

    Returns:
        The run ids, oldest first.
    """
    rng = random.Random(7)
    app = AppRecord("load", "http://127.0.0.1:9/api", "py:stepline", None, now, "x")
    await store.atomic(lambda tx: tx.apps.put_app(app, [_function(f, now) for f in FUNCTIONS]))
    ids: list[str] = []
    batch = 1000
    for start in range(0, runs, batch):
        rows = [_one(rng, now - span + span * i / runs, steps) for i in range(start, start + batch)]
        rows = rows[: max(0, runs - start)]
        tries: list[StepAttempt] = []
        for k, (run, _, records) in enumerate(rows):
            if records and (start + k) % RETRIED_EVERY == 0:
                tries.extend(_retried(records[-1]))
            if k and steps and (start + k) % CHILD_EVERY == 1:
                parent = rows[k - 1]
                run.parent_run_id = parent[0].run_id
                run.correlation_id = f"{parent[0].run_id}.{parent[2][0].step_id}"

        def write(
            tx: Tx,
            rows: list[tuple[Run, EventRecord, list[StepRecord]]] = rows,
            tries: list[StepAttempt] = tries,
        ) -> None:
            for attempt in tries:
                tx.attempts.put_attempt(attempt)
            for run, event, records in rows:
                tx.insert_event(event)
                tx.insert_run(run)
                tx.link_event(
                    EventRunLink(
                        event.internal_id, run.function_id, run.run_id, None, run.created_at
                    )
                )
                for record in records:
                    tx.put_step(record)

        await store.atomic(lambda tx, write=write: batched(tx, write))
        ids.extend(run.run_id for run, _, _ in rows)
    return ids


class _Inserted:
    """What ``batched`` answers each insert: one row written, none read."""

    rowcount = 1

    def fetchone(self) -> None:
        return None

    def __iter__(self) -> Iterator[Any]:
        return iter(())


def batched(tx: Tx, write: Callable[[Tx], None]) -> None:
    """Run ``write``'s inserts as one ``executemany`` per statement, in the order each
    statement first came: the tables' own insert methods write the rows, and the store
    sends them batched (pipelined on Postgres) rather than a round trip a row. ``write``
    may only insert: each statement is answered as one row written."""
    assert isinstance(tx, SqlTx), tx
    statements: dict[str, list[Sequence[Any]]] = {}
    execute = tx.execute

    def record(sql: str, args: Sequence[Any] = ()) -> _Inserted:
        statements.setdefault(sql, []).append(args)
        return _Inserted()

    tx.execute = record  # type: ignore[method-assign]
    try:
        write(tx)
    finally:
        tx.execute = execute  # type: ignore[method-assign]
    for sql, rows in statements.items():
        tx.execute_many(sql, rows)


def _one(rng: random.Random, at: float, steps: int) -> tuple[Run, EventRecord, list[StepRecord]]:
    ms = int(at * 1000)
    function_id = rng.choice(FUNCTIONS)
    event_id = ulid(ms)
    payload: dict[str, Any] = {
        "id": event_id,
        "name": f"load/{function_id}",
        "data": {"order": rng.randrange(10**6), "note": "x" * 200},
        "ts": ms,
        "user": {},
        "v": None,
    }
    event = EventRecord(event_id, payload["name"], payload, at)
    status = rng.choice(_STATUSES)
    ended = at + 1.5 if status.terminal else None
    run = Run(
        run_id=ulid(ms),
        function_id=function_id,
        app_id="load",
        status=status,
        events=[payload],
        event_ids=[event_id],
        created_at=at,
        started_at=at + 0.01,
        ended_at=ended,
        output='{"ok": true, "total": 42}' if status is RunStatus.COMPLETED else None,
    )
    records = [
        StepRecord(
            run_id=run.run_id,
            step_id=f"{i:040x}",
            name=f"step-{i}",
            op="StepRun",
            status=StepStatus.COMPLETED,
            memo={"data": {"i": i, "rows": list(range(20))}},
            attempts=1,
            started_at=at + 0.1 * i,
            ended_at=at + 0.1 * i + 0.05,
            seq=i,
        )
        for i in range(steps)
    ]
    return run, event, records


def _retried(step: StepRecord) -> list[StepAttempt]:
    """Two failed attempts before ``step`` succeeded (its row counts three)."""
    step.attempts = 3
    at = float(step.started_at or 0.0)
    error = {"name": "ConnectionError", "message": "the provider timed out", "stack": "x" * 500}
    return [  # 10 ms each, 10 ms apart, before the step's last attempt (it ends at + 50 ms)
        StepAttempt(
            step.run_id,
            step.step_id,
            n,
            at + 0.02 * n - 0.02,
            at + 0.02 * n - 0.01,
            error,
            at + 0.02 * n,
        )
        for n in (1, 2)
    ]
