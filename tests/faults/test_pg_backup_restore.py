"""A backup and restore drill: ``pg_dump`` of a live engine's database resumes its runs.

A ``stepline start`` node on Postgres has runs sleeping (``step.sleep``) and runs waiting
for an event (``step.wait_for_event``) when ``pg_dump`` (the Debian one matching the
server, ``/usr/lib/postgresql/<major>/bin``) copies its database, while it runs. One more
run starts after the dump, then the node stops. The dump is restored into a fresh
database with ``pg_restore``, and a node started on the copy (same port, so the app,
in a process of its own, reaches it unchanged): the sleeping runs wake, the waiting ones
receive events sent after the restore, every one completes once and no step recorded
before the dump runs again. The run started after the dump is not in the copy: what a
restore loses is what the database recorded after the dump began.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from tests._support.ci import unavailable
from tests._support.databases import postgres_database
from tests._support.polling import wait_until
from tests._support.processes import free_port
from tests.faults import drills

pytestmark = [pytest.mark.postgres, pytest.mark.process]

#: runs of each kind: sleeping across the restore, waiting for an event across it
RUNS = 4
#: long enough that no sleeper wakes before the original node stops
SLEEP = 12.0


def _tool(db: str, name: str) -> str:
    """``pg_dump``/``pg_restore`` of the server's major version (Debian's layout)."""
    with psycopg.connect(db, autocommit=True) as conn:
        row = conn.execute("SHOW server_version_num").fetchone()
    assert row is not None
    path = Path(f"/usr/lib/postgresql/{int(row[0]) // 10000}/bin/{name}")
    if not path.exists():
        unavailable(f"{path} (Debian: apt-get install postgresql-client-<major>)")
    return str(path)


def _parked(db: str) -> dict[str, int]:
    """Steps sleeping or waiting for an event, by status."""
    with psycopg.connect(db, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM steps WHERE status IN ('Sleeping', 'Waiting') "
            "GROUP BY status"
        ).fetchall()
    return {str(status): int(n) for status, n in rows}


def _run_ids(db: str) -> set[str]:
    with psycopg.connect(db, autocommit=True) as conn:
        return {str(run_id) for (run_id,) in conn.execute("SELECT run_id FROM runs").fetchall()}


def _send(node: drills.Node, events: list[dict[str, object]]) -> None:
    answer = httpx.post(f"{node.base}/e/{drills.EVENT_KEY}", json=events, timeout=20)
    assert answer.status_code == 200, answer.text


@pytest.mark.timeout(150)
def test_a_dump_of_a_live_engine_restored_resumes_its_sleeping_and_waiting_runs(
    tmp_path: Path,
) -> None:
    port = free_port()
    with (
        postgres_database("live") as live,
        postgres_database("restored") as restored,
        drills.app(tmp_path, f"http://127.0.0.1:{port}") as (app_url, trace),
    ):
        original = drills.Node("original", live, app_url, tmp_path, port=port)
        try:
            original.start()
            sleep = f"{SLEEP:g}s"
            _send(original, [{"name": "drill/go", "data": {"sleep": sleep}}] * RUNS)
            _send(original, [{"name": "drill/ask", "data": {"k": k}} for k in range(RUNS)])
            parked = {"Sleeping": RUNS, "Waiting": RUNS}
            wait_until(
                lambda: _parked(live) == parked,
                timeout=40,
                message=lambda: f"runs to park: {_parked(live)}, {drills.statuses(live)}",
            )
            dump = tmp_path / "live.dump"
            began = time.monotonic()
            subprocess.run(
                [_tool(live, "pg_dump"), "--format=custom", f"--file={dump}", live],
                check=True,
                capture_output=True,
                timeout=60,
            )
            dumped = time.monotonic() - began
            # work after the dump: a run the copy will not have
            _send(original, [{"name": "drill/ask", "data": {"k": "after"}}])
            wait_until(lambda: len(_run_ids(live)) == 2 * RUNS + 1, message="the late run")
            late = _run_ids(live)
            original.terminate()
        finally:
            original.close()
        began = time.monotonic()
        subprocess.run(
            [_tool(restored, "pg_restore"), "--exit-on-error", f"--dbname={restored}", str(dump)],
            check=True,
            capture_output=True,
            timeout=60,
        )
        restoring = time.monotonic() - began
        copied = _run_ids(restored)
        assert len(copied) == 2 * RUNS
        assert len(late - copied) == 1  # the run started after the dump is lost
        assert _parked(restored) == parked
        node = drills.Node("restored", restored, app_url, tmp_path, port=port)
        try:
            node.start()
            _send(node, [{"name": "drill/reply", "data": {"k": k}} for k in range(RUNS)])

            def completed() -> bool:
                return drills.statuses(restored) == {"Completed": 2 * RUNS}

            wait_until(
                completed, timeout=SLEEP + 30, message=lambda: str(drills.statuses(restored))
            )
        finally:
            node.close()
        counts = trace.counts()
        for run_id in copied:  # each step once, across both nodes; each run ended once
            assert [counts[(run_id, step)] for step in ("s0", "s1", "end")] == [1, 1, 1]
        (lost,) = late - copied
        assert counts[(lost, "s0")] == 1  # it ran on the original, after the dump
        assert trace.twice() == {}
        assert set(drills.finished_events(restored).values()) == {1}
        assert set(drills.finished_events(restored)) == copied
    print(
        f"backup drill: {2 * RUNS} runs parked; pg_dump {dumped:.2f} s, pg_restore "
        f"{restoring:.2f} s; all {2 * RUNS} completed on the copy, 1 run after the dump lost"
    )
