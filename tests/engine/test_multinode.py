"""Three engine processes on one Postgres schema; one is SIGKILLed mid-burst.

Each node (``tests/apps/multinode_node.py``) is a full engine serving its own in-process copy of an
app whose function runs ``STEPS`` steps under two concurrency limits (``LIMIT``
function-wide, ``KEY_LIMIT`` per ``event.data.k``). Nodes share nothing but the
database. Every step execution is traced (node, run, step, key, nonce, start and end
times) in one append-only file, and the checks run on that trace afterwards:

(a) every run completes exactly once: all Completed, one ``inngest/function.finished``
    each, no job or slot left behind;
(b) at no instant did more steps execute than the limits allow, across all nodes. A step
    of the killed node that never ended counts as executing until its slot expires
    (read from the database just before the kill: the engine holds a dead node's slots
    until its lease runs out), and its re-execution must not start before that;
(c) a step whose result was recorded never runs again: every other execution of it is
    an in-flight one on the killed node, begun before the kill;
(d) the work was spread over more than one node.

Before the kill the victim is made to sit in one step for longer than a lease, so its
heartbeat must keep both the lease and the slots alive while other nodes keep working.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests._support.databases import postgres_schema
from tests._support.polling import wait_until
from tests._support.processes import APPS, clean_env, free_port, spawn, wait_until_up
from tests.apps import multinode_node as node_app

pytestmark = [pytest.mark.process, pytest.mark.postgres]

NODES = ("n1", "n2", "n3")
VICTIM = "n2"
RUNS = 40
KEYS = 8
LEASE = 2.0


@dataclasses.dataclass
class Execution:
    node: str
    run_id: str
    step: str
    key: str
    nonce: str
    start: float
    end: float | None = None
    held: bool = False


def _spawn(
    port: int, db: str, name: str, trace: Path, app_id: str, log: Path
) -> subprocess.Popen[bytes]:
    args = [str(APPS / "multinode_node.py"), str(port), db, name, str(trace), str(LEASE), app_id]
    return spawn([sys.executable, *args], log=log, env=clean_env(), append=True)


def _read_trace(trace: Path) -> list[Execution]:
    executions: dict[str, Execution] = {}
    for line in trace.read_text().splitlines():
        kind, node, run_id, step, key, nonce, at = line.split()
        if kind == "start":
            assert nonce not in executions
            executions[nonce] = Execution(node, run_id, step, key, nonce, float(at))
        elif kind == "end":
            executions[nonce].end = float(at)
        else:
            executions[nonce].held = True
    return list(executions.values())


def _peak(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end at t comes before a start at t)."""
    edges = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    peak = level = 0
    for _, delta in edges:
        level += delta
        peak = max(peak, level)
    return peak


@pytest.mark.timeout(120)
def test_three_nodes_share_the_queue_and_survive_a_sigkill(tmp_path: Path) -> None:
    trace = tmp_path / "trace.log"
    trace.touch()
    ports = {name: free_port() for name in NODES}
    base = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    # A fresh app id: advisory locks (on concurrency keys) are shared by every schema.
    app_id = f"multinode-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    with postgres_schema() as db:
        procs: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for name in NODES:
                procs[name] = _spawn(ports[name], db, name, trace, app_id, tmp_path / f"{name}.out")
            for name in NODES:
                log = tmp_path / f"{name}.out"
                wait_until_up(f"{base[name]}/health", procs[name], log=log, what=f"node {name}")

            # The burst, spread over the nodes' event APIs.
            events = [
                {"name": node_app.EVENT, "data": {"i": i, "k": i % KEYS}} for i in range(RUNS)
            ]
            for index, name in enumerate(NODES):
                sent = httpx.post(f"{base[name]}/e/key", json=events[index::3], timeout=10)
                assert sent.status_code == 200, sent.text

            # Mid-burst, make the victim sit in one step past its first lease ...
            done_steps = RUNS * node_app.STEPS // 5
            wait_until(
                lambda: trace.read_text().count("\nend ") >= done_steps,
                message="first steps",
                timeout=40,
            )
            Path(f"{trace}.hold").write_text(VICTIM)
            wait_until(
                lambda: "\nheld " in f"\n{trace.read_text()}",
                message="the victim to hold",
                timeout=30,
            )
            time.sleep(1.5 * LEASE)
            # ... then read what it holds (a lower bound on each slot's expiry) and kill it.
            owner = f"{procs[VICTIM].pid}-%"
            with psycopg.connect(db, autocommit=True) as conn:
                held_slots = conn.execute(
                    "SELECT j.run_id, s.key, s.expires_at FROM slots s "
                    "JOIN jobs j ON j.job_id = s.job_id WHERE j.lease_owner LIKE %s",
                    (owner,),
                ).fetchall()
            queried_at = time.time()
            procs[VICTIM].send_signal(signal.SIGKILL)
            procs[VICTIM].wait()
            killed_at = time.time()
            assert held_slots, "the victim held no slot when it was killed"

            # The survivors finish everything by themselves.
            survivor = base[NODES[0]]
            runs: list[dict[str, Any]] = []

            def all_completed() -> bool:
                nonlocal runs
                params = {"function_id": node_app.function_id(app_id), "limit": 500}
                runs = httpx.get(f"{survivor}/v1/runs", params=params, timeout=10).json()["data"]
                return len(runs) == RUNS and all(r["status"] == "Completed" for r in runs)

            wait_until(all_completed, message="every run to complete", timeout=60)
            finished = httpx.get(
                f"{survivor}/v1/events",
                params={"name": "inngest/function.finished", "limit": 500},
                timeout=10,
            ).json()["data"]
            with psycopg.connect(db, autocommit=True) as conn:
                left = {
                    table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                    for table in ("jobs", "slots")
                }
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs.values():
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    elapsed = time.monotonic() - started

    # (a) Every run completed exactly once, and nothing is left in the queue.
    assert len({r["run_id"] for r in runs}) == RUNS
    per_run = collections.Counter(e["data"]["run_id"] for e in finished)
    assert per_run == dict.fromkeys((r["run_id"] for r in runs), 1), "one finish per run"
    assert left == {"jobs": 0, "slots": 0}, left

    executions = _read_trace(trace)
    by_step: dict[tuple[str, str], list[Execution]] = collections.defaultdict(list)
    for ex in executions:
        by_step[ex.run_id, ex.step].append(ex)
    open_ones = [ex for ex in executions if ex.end is None]
    assert all(ex.node == VICTIM and ex.start < killed_at for ex in open_ones), open_ones
    assert any(ex.held for ex in open_ones), "the held step never ended"

    # (c) The recorded result of each step is its last execution; any earlier one was
    # in flight on the victim when it died.
    re_executed = 0
    for run in runs:
        recorded = run["output"]
        assert isinstance(recorded, list), recorded
        assert len(recorded) == node_app.STEPS, recorded
        for index, nonce in enumerate(recorded):
            seen = sorted(by_step[run["run_id"], f"s{index}"], key=lambda ex: ex.start)
            assert [ex.nonce for ex in seen].count(nonce) == 1, "recorded from a traced run"
            last = seen[-1]
            assert last.nonce == nonce, f"{run['run_id']} s{index} ran after it was recorded"
            assert last.end is not None
            for earlier in seen[:-1]:
                assert earlier.node == VICTIM, seen
                assert earlier.start < killed_at, seen
                re_executed += 1
    assert len(executions) == RUNS * node_app.STEPS + re_executed, "no stray executions"
    # The victim held at most LIMIT calls, so at most that many steps run twice.
    assert 1 <= re_executed <= node_app.LIMIT

    # (b) The limits held at every instant across all nodes. A victim step that never
    # ended holds its slots until they expire (at least the expiry read before the kill;
    # at least a lease after the read for a call leased after it).
    expiry = {str(run_id): float(at) for run_id, _, at in held_slots}
    intervals: list[tuple[Execution, float, float]] = []
    for ex in executions:
        if ex.end is not None:
            intervals.append((ex, ex.start, ex.end))
        else:
            held_until = max(killed_at, expiry.get(ex.run_id, queried_at + LEASE / 2))
            intervals.append((ex, ex.start, held_until))
            retry = max(by_step[ex.run_id, ex.step], key=lambda other: other.start)
            assert retry.start >= held_until, (
                f"{ex.run_id} {ex.step} was taken over at {retry.start:.3f}, before the "
                f"dead node's lease ran out at {held_until:.3f}"
            )
    overall = _peak([(a, b) for _, a, b in intervals])
    per_key = collections.defaultdict(list)
    for ex, a, b in intervals:
        per_key[ex.key].append((a, b))
    key_peaks = {key: _peak(spans) for key, spans in per_key.items()}
    assert overall <= node_app.LIMIT, f"{overall} steps executed at once"
    assert max(key_peaks.values()) <= node_app.KEY_LIMIT, key_peaks
    assert overall == node_app.LIMIT, "the burst never filled the limit (nothing was tested)"

    # (d) The work was shared.
    per_node = collections.Counter(ex.node for ex in executions)
    after_kill = collections.Counter(ex.node for ex in executions if ex.start > killed_at)
    assert sum(1 for n in NODES if per_node[n] >= 5) >= 2, per_node
    assert VICTIM not in after_kill, after_kill
    assert sum(after_kill.values()) > 0, after_kill
    print(
        json.dumps(
            {
                "runs": RUNS,
                "executions_per_node": dict(sorted(per_node.items())),
                "after_kill_per_node": dict(sorted(after_kill.items())),
                "victim_calls_at_kill": len(expiry),
                "re_executed_in_flight_steps": re_executed,
                "peak_overall": overall,
                "seconds": round(elapsed, 1),
            }
        )
    )
