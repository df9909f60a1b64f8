"""A failover drill: the Postgres primary is SIGKILLed mid-burst and its standby promoted.

Two engines in this process share one database through a multi-host URL
(``host1,host2 ... target_session_attrs=read-write``, ``tests/_support/pg_cluster.py``)
and each serves its own copy of an app whose function runs ``STEPS`` traced steps. A
sender delivers ``RUNS`` events, one a request, alternating engines, each re-sent with its
id seed until accepted (what the SDK's sender does). A third of the way in, the primary's
postmaster is SIGKILLed; ``PAUSE`` seconds later the standby is promoted. The engines
must find the new primary by themselves and finish.

Right before the kill the test reads what the primary has committed (completed steps,
events); right before the promotion, what the standby has. With synchronous replication
the second holds the first (nothing committed is lost), every acknowledged event starts
a run and every run completes. With asynchronous replication what the standby lacks is
the loss window, measured: acknowledged events that never became runs, completed steps
that ran again. Both ways the engine's promises hold for what survived (SECURITY.md,
"Execution guarantees"): a recorded step never runs again (its recorded value is its
last execution), and a step runs again only if its result was not recorded: here, only
one that began before the engines recovered.

Figures are printed as one JSON line (``-s`` shows it): seconds from the kill to the
first step recorded after it, completed runs a second before the kill and after the
recovery, and the losses; docs/production-postgres.md quotes them.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import psycopg
import pytest

import stepline
from stepline.engine import Engine, EngineSettings
from stepline.engine._model import Run
from stepline.engine._store import RunFilter
from tests._support import pg_cluster
from tests.apps.fault_injecting import Trace

pytestmark = [pytest.mark.postgres, pytest.mark.process, pytest.mark.slow]

RUNS = 200
STEPS = 4
#: seconds each step's body takes
STEP_SECONDS = 0.005
#: seconds between two events sent: faster than the engines finish runs, so a backlog
#: keeps them busy before the kill and events are still being accepted at it
SEND_GAP = 0.01
#: the share of all step executions done when the primary is killed
KILL_AT = 1 / 3
#: seconds from the kill to the promotion
PAUSE = 1.0
EVENT = "failover/go"


def _app(trace: Trace, app_id: str) -> tuple[stepline.Client, list[stepline.Function]]:
    client = stepline.Client(app_id=app_id, is_production=False, checkpointing=False)

    def body(run_id: str, step: str) -> str:
        time.sleep(STEP_SECONDS)
        return trace.step(run_id, step)

    @client.function(id="chain", trigger=stepline.TriggerEvent(event=EVENT))
    def chain(ctx: stepline.SyncContext) -> list[str]:
        return [ctx.step.run(f"s{i}", body, ctx.run_id, f"s{i}") for i in range(STEPS)]

    return client, [chain]


class Watch:
    """Completed steps on the standby (the new primary once promoted), polled every
    10 ms from the kill on: when the first step after the failover was recorded."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.baseline: int | None = None  # the count once the primary is dead
        self.first_new: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="failover-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _poll(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self._stop.is_set() and self.first_new is None:
            try:
                if conn is None or conn.broken:
                    conn = psycopg.connect(self.url, autocommit=True, connect_timeout=2)
                row = conn.execute("SELECT count(*) FROM steps WHERE status = 'Completed'")
                count = int(row.fetchone()[0])  # type: ignore[index]
                now = time.time()
                if self.baseline is None:
                    self.baseline = count
                elif count > self.baseline:
                    self.first_new = now
            except psycopg.Error:
                conn = None
            self._stop.wait(0.01)
        if conn is not None:
            conn.close()


def _committed(url: str) -> tuple[set[tuple[str, str]], set[str], float | None]:
    """What ``url``'s server has committed (replayed, on a standby): completed steps,
    event ids, and on a standby the commit time of the last transaction it replayed."""
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        steps = conn.execute(
            "SELECT run_id, step_id FROM steps WHERE status = 'Completed'"
        ).fetchall()
        events = conn.execute("SELECT internal_id FROM events").fetchall()
        replayed = conn.execute(
            "SELECT extract(epoch FROM pg_last_xact_replay_timestamp())"
        ).fetchone()
    last = replayed[0] if replayed is not None else None
    return {(r, s) for r, s in steps}, {e for (e,) in events}, None if last is None else float(last)


async def _send(engines: Sequence[Engine], acked: list[tuple[str, float]]) -> None:
    """Send ``RUNS`` events, one a request, each until an engine accepts it."""
    for i in range(RUNS):
        engine = engines[i % len(engines)]
        seed = f"{int(time.time() * 1000)},{base64.b64encode(os.urandom(10)).decode()}"
        event = {"name": EVENT, "data": {"i": i}}
        deadline = time.monotonic() + 60
        while True:
            try:
                ids = await engine.send(event, seed=seed)
                break
            except Exception:  # a 503 (or 500) to an HTTP sender: it sends again
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        acked += [(event_id, time.time()) for event_id in ids]
        await asyncio.sleep(SEND_GAP)


async def _settled(engine: Engine, sender: asyncio.Task[None], timeout: float) -> list[Run]:
    deadline = time.monotonic() + timeout
    while True:
        runs = await engine.list_runs(RunFilter(limit=RUNS + 50))
        if sender.done() and all(r.status.terminal for r in runs):
            sender.result()
            return runs
        if time.monotonic() > deadline:
            states = collections.Counter(r.status.value for r in runs)
            raise AssertionError(f"runs never settled: {len(runs)} {states}")
        await asyncio.sleep(0.2)


def _drill(cluster: pg_cluster.Cluster, trace: Trace, lease: float) -> dict[str, Any]:
    """Run the burst, the kill and the promotion; what the test checks and reports."""
    figures: dict[str, Any] = {}
    watch = Watch(cluster.standby.url)

    def fail_over() -> None:
        figures["primary"] = _committed(cluster.primary.url)
        cluster.kill_primary()
        watch.start()
        time.sleep(PAUSE)
        figures["standby"] = _committed(cluster.standby.url)
        cluster.promote()

    async def scenario() -> list[Run]:
        settings = EngineSettings(
            database_url=cluster.url, retry_scale=0.001, retry_jitter=0.0, poll_interval=0.1,
            lease_seconds=lease, db_pool_size=4,
        )  # fmt: skip
        engines = [Engine(settings), Engine(settings)]
        async with engines[0], engines[1]:
            for engine in engines:
                await engine.serve(*_app(trace, "failover"))
            acked: list[tuple[str, float]] = []
            figures["acked"] = acked
            figures["started"] = time.time()
            sender = asyncio.create_task(_send(engines, acked))
            while len(trace.executions) < RUNS * STEPS * KILL_AT:
                await asyncio.sleep(0.005)
            await asyncio.to_thread(fail_over)
            return await _settled(engines[1], sender, timeout=90 + lease)

    try:
        figures["runs"] = asyncio.run(scenario())
    finally:
        watch.stop()
    figures["first_new"] = watch.first_new
    return figures


@pytest.mark.timeout(240)
@pytest.mark.parametrize("replication", ["synchronous", "asynchronous"])
def test_the_engines_ride_out_a_primary_failover(replication: str) -> None:
    synchronous = replication == "synchronous"
    trace = Trace()
    with pg_cluster.replicated(synchronous=synchronous) as cluster:
        figures = _drill(cluster, trace, lease=30.0)
        killed, promoted = cluster.killed_at, cluster.promoted_at
        with psycopg.connect(cluster.url, autocommit=True) as conn:
            final_events = {e for (e,) in conn.execute("SELECT internal_id FROM events")}
            finished = conn.execute(
                "SELECT payload FROM events WHERE name = 'inngest/function.finished'"
            ).fetchall()
    assert killed is not None
    assert promoted is not None
    runs: list[Run] = figures["runs"]
    acked: list[tuple[str, float]] = figures["acked"]
    before, _, _ = figures["primary"]
    standby_steps, standby_events, replayed = figures["standby"]
    first_new = figures["first_new"]
    assert first_new is not None, "no step was recorded after the failover"

    # What survived keeps the engine's promises, whatever the replication.
    assert sorted({r.status.value for r in runs}) == ["Completed"]
    per_run = collections.Counter(json.loads(p)["data"]["run_id"] for (p,) in finished)
    assert per_run == dict.fromkeys((r.run_id for r in runs), 1), "one finish per run"
    repeated = 0
    for run in runs:
        for index, nonce in enumerate(json.loads(str(run.output))):
            step = f"s{index}"
            seen = [e for e in trace.executions if e.run_id == run.run_id and e.step == step]
            assert seen[-1].nonce == nonce, f"{step} of {run.run_id} ran after it was recorded"
            # an execution whose result was lost began before the engines recovered
            assert all(e.start < first_new for e in seen[:-1]), (run.run_id, step, seen)
            repeated += len(seen) - 1

    lost_events = [(e, at) for e, at in acked if e not in final_events]
    lost_steps = before - standby_steps
    ended = sorted(r.ended_at or 0.0 for r in runs)
    recovered = first_new - killed
    figures_line = {
        "replication": replication,
        "runs": len(runs),
        "events_acknowledged": len(acked),
        "seconds_kill_to_promoted": round(promoted - killed, 3),
        "seconds_kill_to_first_new_step": round(recovered, 3),
        "runs_per_second_before": round(
            sum(1 for t in ended if t < killed) / (killed - figures["started"]), 1
        ),
        "runs_per_second_after": round(
            sum(1 for t in ended if t >= first_new) / max(ended[-1] - first_new, 1e-3), 1
        ),
        "steps_executed_again": repeated,
        "acknowledged_events_lost": len(lost_events),
        "acknowledged_events_lost_ms_before_kill": sorted(
            round((killed - at) * 1000) for _, at in lost_events
        ),
        "committed_steps_lost": len(lost_steps),
        "standby_replayed_ms_before_kill": None
        if replayed is None
        else round((killed - replayed) * 1000),
    }
    print(json.dumps(figures_line))
    if synchronous:
        assert not lost_steps, f"steps committed on the primary lost: {sorted(lost_steps)}"
        assert standby_events >= figures["primary"][1], "events committed on the primary lost"
        assert not lost_events, lost_events
        assert len(runs) == len(acked) == RUNS
