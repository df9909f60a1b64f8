"""A failover drill: the Postgres primary is SIGKILLed mid-burst and its standby promoted.

Two engines in this process share one database through a multi-host URL
(``host1,host2 ... target_session_attrs=read-write``, ``tests/_support/pg_cluster.py``)
and each serves its own copy of an app whose function runs ``STEPS`` traced steps. A
sender delivers ``RUNS`` events, one a request, alternating engines, each re-sent with its
id seed until accepted (what the SDK's sender does). A third of the way in, every process
of the primary is SIGKILLed at once (its machine lost), or its postmaster alone;
``PAUSE`` seconds later the standby is promoted. The engines must find the new primary
by themselves and finish.

With synchronous replication every acknowledged event starts a run and every run
completes. With asynchronous replication the loss window is measured: the old primary,
started again alone afterwards, shows what it had committed that the standby lacked when
promoted (completed steps, events), and the sender's acknowledged events that no longer
exist were lost for good. Both ways the engine's promises hold for what survived
(SECURITY.md, "Execution guarantees"): a recorded step never runs again (its recorded
value is its last execution), and a step runs again only if its result was not recorded:
here, only one that began before the engines recovered.

Figures are printed as one JSON line (``-s`` shows it): seconds from the kill to the
first step recorded after it (read from the servers' commit timestamps), completed runs
a second before the kill and after the recovery, and the losses;
docs/production-postgres.md quotes them.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import os
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
#: seconds after the first step recorded after the failover within which a run's end
#: counts towards the rate after it: later ends waited for a lost step's lease to lapse
CATCH_UP = 10.0
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


def _drill(cluster: pg_cluster.Cluster, trace: Trace, *, whole: bool) -> dict[str, Any]:
    """Run the burst, the kill and the promotion; what the test checks and reports."""
    figures: dict[str, Any] = {}

    def fail_over() -> None:
        cluster.kill_primary(whole=whole)
        time.sleep(PAUSE)
        figures["standby"] = _committed(cluster.standby.url)
        cluster.promote()

    async def scenario() -> list[Run]:
        settings = EngineSettings(
            database_url=cluster.url, retry_scale=0.001, retry_jitter=0.0, poll_interval=0.1,
            db_pool_size=4,
        )  # fmt: skip
        engines = [Engine(settings), Engine(settings)]
        async with engines[0], engines[1]:
            for engine in engines:
                await engine.serve(*_app(trace, "failover"))
            acked: list[tuple[str, float]] = []
            figures["acked"] = acked
            sender = asyncio.create_task(_send(engines, acked))
            while len(trace.executions) < RUNS * STEPS * KILL_AT:
                await asyncio.sleep(0.005)
            await asyncio.to_thread(fail_over)
            return await _settled(engines[1], sender, timeout=90 + settings.lease_seconds)

    figures["runs"] = asyncio.run(scenario())
    # What the new primary ended with; then what the old one had committed when it died
    # (started again alone, its crash recovery replays its own WAL).
    figures["final"] = _committed(cluster.standby.url)
    with psycopg.connect(cluster.standby.url, autocommit=True) as conn:
        # the first step the new primary recorded: the earliest commit of a completed
        # step's row (``track_commit_timestamp``; a recorded step's row is not written
        # again) since the promotion was asked for. Not since the kill: the killed
        # postmaster's backends go on until they notice, and may still commit and stream.
        first = conn.execute(
            "SELECT extract(epoch FROM min(pg_xact_commit_timestamp(xmin))) FROM steps "
            "WHERE status = 'Completed' AND pg_xact_commit_timestamp(xmin) > to_timestamp(%s)",
            (cluster.promoting_at,),
        ).fetchone()
        figures["first_new"] = None if first is None or first[0] is None else float(first[0])
        figures["finished"] = [
            json.loads(payload)["data"]["run_id"]
            for (payload,) in conn.execute(
                "SELECT payload FROM events WHERE name = 'inngest/function.finished'"
            )
        ]
    cluster.start_server(cluster.primary)
    figures["old_primary"] = _committed(cluster.primary.url)
    return figures


def _per_second(ended: list[float], start: float, end: float) -> float:
    """Runs a second: those that ended from ``start`` to ``end``, over that time."""
    within = [t for t in ended if start <= t <= end]
    return round(len(within) / max(max(within, default=start) - start, 1e-3), 1)


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    ("replication", "whole"),
    [("synchronous", True), ("asynchronous", True), ("asynchronous", False)],
    ids=["synchronous", "asynchronous", "asynchronous-postmaster-only"],
)
def test_the_engines_ride_out_a_primary_failover(replication: str, whole: bool) -> None:
    """``whole``: every process of the primary killed at once; else its postmaster alone,
    whose backends may go on committing, and answering, a moment after the WAL sender
    has stopped streaming (with asynchronous replication, a wider loss window)."""
    synchronous = replication == "synchronous"
    trace = Trace()
    with pg_cluster.replicated(synchronous=synchronous) as cluster:
        figures = _drill(cluster, trace, whole=whole)
    killed, promoted, first_new = cluster.killed_at, cluster.promoted_at, figures["first_new"]
    assert killed is not None
    assert promoted is not None
    assert first_new is not None, "no step was recorded after the failover"
    runs: list[Run] = figures["runs"]
    acked: list[tuple[str, float]] = figures["acked"]
    at_promotion_steps, at_promotion_events, replayed = figures["standby"]
    _, final_events, _ = figures["final"]
    old_steps, old_events, _ = figures["old_primary"]

    # What survived keeps the engine's promises, whatever the replication.
    assert sorted({r.status.value for r in runs}) == ["Completed"]
    per_run = collections.Counter(figures["finished"])
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

    # The loss window: what the old primary had committed and the standby had not when
    # it was promoted. Synchronous: only commits never acknowledged (the primary died
    # waiting for the standby), whose callers retried them.
    lost_events = [(e, at) for e, at in acked if e not in final_events]
    ended = sorted(r.ended_at or 0.0 for r in runs)
    print(
        json.dumps(
            {
                "replication": replication,
                "killed": "every process" if whole else "the postmaster",
                "runs": len(runs),
                "events_acknowledged": len(acked),
                "seconds_kill_to_promoted": round(promoted - killed, 3),
                "seconds_kill_to_first_new_step": round(first_new - killed, 3),
                "seconds_promoted_to_first_new_step": round(first_new - promoted, 3),
                "runs_per_second_before": _per_second(ended, acked[0][1], killed),
                "runs_per_second_after": _per_second(ended, first_new, first_new + CATCH_UP),
                "steps_executed_again": repeated,
                "acknowledged_events_lost": len(lost_events),
                "acknowledged_events_lost_ms_before_kill": sorted(
                    round((killed - at) * 1000) for _, at in lost_events
                ),
                "committed_not_replicated": {
                    "steps": len(old_steps - at_promotion_steps),
                    "events": len(old_events - at_promotion_events),
                },
                "standby_replayed_ms_before_kill": None
                if replayed is None
                else round((killed - replayed) * 1000),
            }
        )
    )
    if synchronous:
        assert not lost_events, lost_events
        assert len(runs) == len(acked) == RUNS


#: seconds the database is away in the reconnect test, from its first failed transaction:
#: the pool's tries, 1, 2 and 4 s apart when they do not give up, are then 7 s and 15 s
#: after it (10% jitter each), and the server (started again in 0.3 to 4 s) is back in
#: the gap between
OUTAGE = 8.0


@pytest.mark.timeout(90)
def test_the_store_reconnects_within_a_second_or_so_of_the_database_returning() -> None:
    """However long the database was away, the store's next transaction after its return
    does not wait for the pool's next try of a doubling backoff."""
    from stepline.engine._store.postgres import PostgresStore

    def probe(tx: Any) -> Any:
        return tx.execute("SELECT 1").fetchone()

    with pg_cluster.replicated(synchronous=False) as cluster:
        store = PostgresStore(cluster.primary.url, pool_size=2)

        async def scenario() -> float:
            await store.open()
            try:
                await store.atomic(probe)
                await asyncio.to_thread(cluster.stop_server, cluster.primary)
                # the first transaction after the stop finds its connection dead and the
                # pool starts reconnecting; it fails when the pool's checkout times out
                lost = asyncio.ensure_future(store.atomic(probe))
                await asyncio.sleep(OUTAGE)
                await asyncio.to_thread(cluster.start_server, cluster.primary)
                back = time.monotonic()
                with contextlib.suppress(Exception):
                    await lost
                while True:
                    try:
                        await store.atomic(probe)
                        return time.monotonic() - back
                    except Exception:
                        await asyncio.sleep(0.05)
            finally:
                await store.close()

        lag = asyncio.run(scenario())
    print(json.dumps({"seconds_back_to_first_transaction": round(lag, 3)}))
    assert lag < 1.5, f"the first transaction came {lag:.1f} s after the database was back"
