"""SIGKILL the engine again and again mid-run: every run completes exactly once.

The app logs when each step execution begins and ends (with a fresh nonce); the run's
output is the list of nonces its steps returned (from the engine's recorded memos). A
recorded step that ran again would leave a later nonce in the log than the one
recorded. Each kill waits until the life being killed has recorded some progress, runs
are unfinished and a step is running, so every kill lands mid-run; afterwards the log
shows, for every kill, a step that began before it and ended after it (in flight).
Runs once per store: the engine process gets a SQLite file or a Postgres schema's URL.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
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
from tests._support.processes import APPS, free_port, spawn, wait_until_up

pytestmark = [pytest.mark.process]

RUNS = 12
KILLS = 6
#: crash_chain.STEPS: a life advances each run by about a step, so more steps than kills
STEPS = 8


@dataclasses.dataclass
class Kill:
    """One SIGKILL: sent at ``sent``, the process gone at ``gone``."""

    sent: float
    gone: float
    unfinished: int  # runs the engine reported not completed just before the kill


#: one execution of a step: (began, ended or None while running, nonce)
Execution = tuple[float, float | None, str]


def _executions(log: Path) -> dict[tuple[str, str], list[Execution]]:
    """Each step's executions in order."""
    out: dict[tuple[str, str], list[Execution]] = collections.defaultdict(list)
    for line in log.read_text().splitlines() if log.exists() else []:
        kind, run_id, step, nonce, at = line.split()
        runs = out[run_id, step]
        if kind == "begin":
            runs.append((float(at), None, ""))
        else:
            began = next(i for i, e in enumerate(runs) if e[1] is None)
            runs[began] = (runs[began][0], float(at), nonce)
    return out


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    wait_until_up(url, proc, log=log, timeout=20, ready=lambda r: r.status_code < 500)


def _spawn(*args: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return spawn([sys.executable, *args], log=log, env=env, append=True)


def _mid_run(steps_log: Path, engine_url: str, life: float, progress: int) -> bool:
    """Whether this life (since ``life``) recorded ``progress`` steps and one is running.

    The engine calls step ``s{k}`` of a run only once it has recorded ``s{k-1}``: a
    ``s{k}`` begun after an ``s{k-1}`` ended in this life is a step this life recorded.
    """
    executions = _executions(steps_log)
    running = any(e is None and b > life for es in executions.values() for b, e, _ in es)
    ended = {key for key, es in executions.items() if any(e is not None for _, e, _ in es)}
    if not running and len(ended) == RUNS * STEPS:
        listed = httpx.get(f"{engine_url}/v1/runs", params={"limit": 100}).json()["data"]
        done = sum(1 for r in listed if r["status"] == "Completed")
        assert done < RUNS, "every run finished: no kill can land mid-run"
    recorded = 0
    for (run_id, step), es in executions.items():
        index = int(step[1:])
        before = [e for _, e, _ in executions.get((run_id, f"s{index - 1}"), []) if e]
        after = [e for e in before if e > life]
        if index and after and any(b > min(after) for b, _, _ in es):
            recorded += 1
    return running and recorded >= progress


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
        str(APPS / "crash_chain.py"),
        str(app_port),
        str(steps_log),
        log=tmp_path / "app.out",
        env=env_app,
    )
    engine_cmd = (str(APPS / "engine_server.py"), str(engine_port), db, "1.0")
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
        kills: list[Kill] = []
        life = time.time()  # when the engine being killed next started
        for number in range(KILLS):
            progress = rng.randint(1, 3)  # steps this life records before it is killed
            wait_until(
                functools.partial(_mid_run, steps_log, engine_url, life, progress),
                timeout=60,
                interval=0.01,
                message=f"kill {number + 1} to find this life's progress and a step running",
            )
            listed = httpx.get(f"{engine_url}/v1/runs", params={"limit": 100}).json()["data"]
            unfinished = RUNS - sum(1 for r in listed if r["status"] == "Completed")
            killed_at = time.time()
            engine.send_signal(signal.SIGKILL)
            engine.wait()
            kills.append(Kill(killed_at, time.time(), unfinished))
            life = time.time()
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

    executions = _executions(steps_log)
    assert all(end is not None for es in executions.values() for _, end, _ in es)
    in_flight = [
        sum(1 for es in executions.values() for b, e, _ in es if b < k.sent and e and e > k.gone)
        for k in kills
    ]
    assert len(kills) == KILLS
    assert all(k.unfinished > 0 for k in kills), [k.unfinished for k in kills]
    assert all(in_flight), f"a kill with no step running across it: {in_flight}"
    repeated = 0
    for run in runs:
        recorded = run["output"]
        assert isinstance(recorded, list)
        assert len(recorded) == STEPS
        for index, nonce in enumerate(recorded):
            seen = [n for _, _, n in executions[str(run["run_id"]), f"s{index}"]]
            assert nonce in seen, "the recorded result came from a logged execution"
            assert seen[-1] == nonce, f"step s{index} of {run['run_id']} ran after it was recorded"
            repeated += len(seen) - 1
    # Only steps in flight at a kill may run twice: at most one per run per kill.
    assert repeated <= KILLS * RUNS
    report = {
        "kills": KILLS,
        "unfinished_runs_at_kills": [k.unfinished for k in kills],
        "steps_in_flight_at_kills": in_flight,
        "re_executed_in_flight_steps": repeated,
    }
    print(json.dumps(report))
