"""SIGKILL the engine again and again mid-run: every run completes exactly once.

The app logs every step execution with a fresh nonce; the run's output is the list
of nonces its steps returned (from the engine's recorded memos). A recorded step that
ran again would leave a later nonce in the log than the one recorded. Runs once per
store: the engine process gets a SQLite file or a Postgres schema's URL.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests._support.polling import wait_until
from tests._support.processes import free_port, spawn, wait_until_up

HERE = Path(__file__).parent
RUNS = 12
KILLS = 6


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    wait_until_up(url, proc, log=log, timeout=20, ready=lambda r: r.status_code < 500)


def _spawn(*args: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return spawn([sys.executable, *args], log=log, env=env, append=True)


@pytest.mark.timeout(180)
def test_engine_killed_repeatedly_loses_nothing_and_repeats_no_recorded_step(
    tmp_path: Path, db: str
) -> None:
    steps_log = tmp_path / "steps.log"
    app_port, engine_port = free_port(), free_port()
    app_url = f"http://127.0.0.1:{app_port}/api/inngest"
    engine_url = f"http://127.0.0.1:{engine_port}"
    env_app = {"STEPLINE_API_BASE_URL": engine_url, "STEPLINE_EVENT_API_BASE_URL": engine_url}
    app = _spawn(
        str(HERE / "crash_app.py"),
        str(app_port),
        str(steps_log),
        log=tmp_path / "app.out",
        env=env_app,
    )
    engine_cmd = (str(HERE / "engine_proc.py"), str(engine_port), db, "1.0")
    engine = _spawn(*engine_cmd, log=tmp_path / "engine.out")
    try:
        _wait(app_url, app, tmp_path / "app.out")
        _wait(f"{engine_url}/health", engine, tmp_path / "engine.out")
        synced = httpx.post(f"{engine_url}/v1/apps/sync", json={"url": app_url}, timeout=30)
        assert synced.status_code == 200, synced.text
        events = [{"name": "crash/go", "data": {"i": i}} for i in range(RUNS)]
        sent = httpx.post(f"{engine_url}/e/key", json=events, timeout=10)
        assert sent.status_code == 200, sent.text
        rng = random.Random(7)
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.1, 0.5))
            engine.send_signal(signal.SIGKILL)
            engine.wait()
            engine = _spawn(*engine_cmd, log=tmp_path / "engine.out")
            _wait(f"{engine_url}/health", engine, tmp_path / "engine.out")
        latest: list[dict[str, object]] = []

        def settled() -> list[dict[str, object]] | None:
            latest[:] = httpx.get(f"{engine_url}/v1/runs", params={"limit": 100}).json()["data"]
            done = len(latest) == RUNS and all(r["status"] == "Completed" for r in latest)
            return latest if done else None

        def state() -> str:
            return f"{RUNS} completed runs, not {sorted(str(r['status']) for r in latest)}"

        runs = wait_until(settled, timeout=90, interval=0.2, message=state)
        assert len(runs) == RUNS
        assert sorted(r["status"] for r in runs) == ["Completed"] * RUNS
        finished = httpx.get(
            f"{engine_url}/v1/events", params={"name": "inngest/function.finished", "limit": 500}
        ).json()["data"]
        per_run = collections.Counter(e["data"]["run_id"] for e in finished)
        assert per_run == dict.fromkeys((r["run_id"] for r in runs), 1), "one finish per run"
    finally:
        for proc in (engine, app):
            proc.send_signal(signal.SIGKILL)
            proc.wait()

    executions: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
    for line in steps_log.read_text().splitlines():
        run_id, step, nonce = line.split()
        executions[run_id, step].append(nonce)
    repeated = 0
    for run in runs:
        recorded = run["output"]
        assert isinstance(recorded, list)
        assert len(recorded) == 5
        for index, nonce in enumerate(recorded):
            seen = executions[str(run["run_id"]), f"s{index}"]
            assert nonce in seen, "the recorded result came from a logged execution"
            assert seen[-1] == nonce, f"step s{index} of {run['run_id']} ran after it was recorded"
            repeated += len(seen) - 1
    # Only steps in flight at a kill may run twice: at most one per run per kill.
    assert repeated <= KILLS * RUNS
    print(json.dumps({"kills": KILLS, "re_executed_in_flight_steps": repeated}))
