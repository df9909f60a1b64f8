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

from .servers import free_port

HERE = Path(__file__).parent
RUNS = 12
KILLS = 6


def _wait(url: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited early with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} never came up")


def _spawn(*args: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, *args], stdout=out, stderr=out, env=env)


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
        _wait(app_url, app)
        _wait(f"{engine_url}/health", engine)
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
            _wait(f"{engine_url}/health", engine)
        deadline = time.monotonic() + 90
        runs: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            runs = httpx.get(f"{engine_url}/v1/runs", params={"limit": 100}).json()["data"]
            if len(runs) == RUNS and all(r["status"] == "Completed" for r in runs):
                break
            time.sleep(0.2)
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
