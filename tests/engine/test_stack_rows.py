"""A run's completion order is its done steps' ``seq``, not a list on its row (both stores).

A step adds its own row with its ``seq``; nothing rewrites the run's ``stack`` column as
the run grows (a list of every step id, rewritten at each step, was quadratic in bytes
over a long run). The order is read back from the steps: through a restart of the
engine, for a run whose row holds a stale list (as an earlier release left it), and for
a replay from a step, whose copied steps take the new run's first ``seq``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

import stepline
from stepline._status import RunStatus
from stepline.engine import Engine
from stepline.engine._control import replay as _replay
from stepline.engine._model import StepRecord, stack_of
from stepline.engine._store import Tx
from stepline.engine._store.pg_tx import PostgresTx
from stepline.engine._store.sql import SqlTx
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.engines import finished, only_run, running
from tests._support.polling import await_until

STEPS = 6
LONG = stepline.TriggerEvent(event="stack/long")
PAUSED = stepline.TriggerEvent(event="stack/paused")
NAMES = ["s0", "s1", "s2", "hear", "s3", "s4"]


def _functions(client: stepline.Client) -> list[stepline.Function]:
    @client.function(id="long", trigger=LONG, retries=0)
    def long(ctx: stepline.SyncContext) -> int:
        return sum(ctx.step.run(f"s{i}", lambda i=i: i) for i in range(STEPS))

    @client.function(id="paused", trigger=PAUSED, retries=0)
    def paused(ctx: stepline.SyncContext) -> list[Any]:
        got = [ctx.step.run(f"s{i}", lambda i=i: i) for i in range(3)]
        heard = ctx.step.wait_for_event("hear", event="stack/go", timeout="1d")
        got += [ctx.step.run(f"s{i}", lambda i=i: i) for i in range(3, 5)]
        return [*got, heard.data if heard is not None else None]

    return [long, paused]


@pytest.fixture
def stack_writes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statements any transaction sends that set a run's ``stack``."""
    sent: list[str] = []
    for cls in (SqlTx, PostgresTx):
        execute = cls.execute

        def counted(self: SqlTx, sql: str, args: Any = (), _execute: Any = execute) -> Any:
            if "stack = ?" in sql:
                sent.append(sql)
            return _execute(self, sql, args)

        monkeypatch.setattr(cls, "execute", counted)
    return sent


def _stored_stack(tx: Tx, run_id: str) -> str:
    row = tx.execute("SELECT stack FROM runs WHERE run_id = ?", (run_id,))  # type: ignore[attr-defined]
    return str(row.fetchone()[0])


def _in_order(steps: list[StepRecord]) -> list[tuple[str, int | None]]:
    done = [s for s in steps if s.seq is not None]
    return [(s.name, s.seq) for s in sorted(done, key=lambda s: s.seq or 0)]


@pytest.mark.parametrize(
    "checkpointing",
    [False, stepline.Checkpointing(buffered_steps=1)],
    ids=["one-call-per-step", "per-step-checkpoints"],
)
def test_a_growing_run_writes_no_stack_to_its_row(
    db: str, stack_writes: list[str], checkpointing: bool | stepline.Checkpointing
) -> None:
    client = dev_client(checkpointing=checkpointing)

    async def scenario() -> None:
        apps = [(client, _functions(client))]
        async with running(db, apps=apps, checkpointing=checkpointing is not False) as engine:
            await engine.send({"name": LONG.event})
            run = await finished(engine, await only_run(engine, "t-long"))
            assert run.status is RunStatus.COMPLETED, run.output
            steps = await engine.run_steps(run.run_id)
            stored = await engine.store.read(lambda tx: _stored_stack(tx, run.run_id))
            read = await engine.get_run(run.run_id)
        assert _in_order(steps) == [(f"s{i}", i) for i in range(STEPS)]
        assert read.stack == stack_of(steps) == [s.step_id for s in steps]
        assert stack_writes == [], "a step rewrote the run's stack"
        assert stored == "[]"

    arun(scenario())


def test_the_order_survives_a_restart_a_stale_row_and_a_replay_from_a_step(db: str) -> None:
    async def waiting(engine: Engine, run_id: str) -> bool:
        steps = await engine.run_steps(run_id)
        return any(s.name == "hear" and s.status.value == "Waiting" for s in steps)

    async def first() -> str:
        client = dev_client()
        async with running(db, apps=[(client, _functions(client))]) as engine:
            await engine.send({"name": PAUSED.event})
            run_id = await only_run(engine, "t-paused")
            await await_until(lambda: waiting(engine, run_id), timeout=20, message="the wait")

            def stale(tx: Tx) -> None:  # a list as a release that kept it there wrote it
                tx.execute("UPDATE runs SET stack = ? WHERE run_id = ?", ('["gone"]', run_id))  # type: ignore[attr-defined]

            await engine.store.atomic(stale)
        return run_id

    async def second(run_id: str) -> None:
        client = dev_client()
        async with running(db, apps=[(client, _functions(client))]) as engine:
            before = await engine.get_run(run_id)
            assert len(before.stack) == 3  # its three steps done before the restart
            await engine.send({"name": "stack/go", "data": {"ok": True}})
            run = await finished(engine, run_id)
            assert run.status is RunStatus.COMPLETED, run.output
            assert json.loads(run.output or "null") == [0, 1, 2, 3, 4, {"ok": True}]
            assert run.notices == [], "the app's replays matched the order the engine sent"
            steps = await engine.run_steps(run_id)
            assert _in_order(steps) == list(zip(NAMES, range(len(NAMES)), strict=True))
            assert (await engine.get_run(run_id)).stack == stack_of(steps)
            stored = await engine.store.read(lambda tx: _stored_stack(tx, run_id))
            assert stored == "[]"  # the stale list, replaced when the run was next written

            def again(tx: Tx) -> tuple[str, list[StepRecord]]:
                # the copy as the replay's transaction leaves it: the new run may go on
                # at once, before a later read
                fn = engine.registry.get(run.function_id)
                new_id = _replay.replay(tx, fn, run_id, "s3", engine.clock.now())
                return new_id, tx.get_steps(new_id)

            new_id, copied = await engine.store.atomic(again)
            engine.worker.wake.set()
            assert _in_order(copied) == list(zip(NAMES[:4], range(4), strict=True))
            replayed = await finished(engine, new_id)
            assert replayed.status is RunStatus.COMPLETED, replayed.output
            steps = await engine.run_steps(new_id)
            assert _in_order(steps) == list(zip(NAMES, range(len(NAMES)), strict=True))
            assert replayed.stack == stack_of(steps)

    run_id = arun(first())
    arun(second(run_id))
