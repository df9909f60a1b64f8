"""The dev engine keeps apps synced: a failed ``-u`` sync is retried
with backoff, known apps are polled for changes, and a 200 from an app that registered
with another engine is reported as the failure it is, with the fix.

Real processes: ``stepline dev -u URL`` starts BEFORE the app; nobody calls PUT.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from stepline.engine._apps import sync as _appsync
from stepline.engine._apps.sync import Poller, SyncResult, retry_delay
from tests._support.polling import wait_until
from tests._support.processes import free_port, spawned, wait_until_up

from .test_cli import EXAMPLES, clean_env, engine_command, read_until

pytestmark = [pytest.mark.process]

ROOT = Path(__file__).resolve().parents[2]


def _uvicorn(target: str, app_dir: Path, port: int) -> list[str]:
    return [
        *(sys.executable, "-m", "uvicorn", target, "--app-dir", str(app_dir)),
        *("--host", "127.0.0.1", "--port", str(port), "--no-access-log"),
    ]


def _completed(engine: str, function_id: str) -> list[dict[str, Any]]:
    params = {"function_id": function_id, "status": "Completed"}
    runs: list[dict[str, Any]] = wait_until(
        lambda: httpx.get(f"{engine}/v1/runs", params=params).json()["data"] or None,
        timeout=20,
        interval=0.1,
        message=f"a completed run of {function_id}",
    )
    return runs


# -- the policy, pure ---------------------------------------------------------------------


def test_retry_delay_doubles_from_half_a_second_up_to_the_poll_interval() -> None:
    assert [retry_delay(n, 5.0) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert retry_delay(1000, 2.0) == 2.0  # no overflow, capped
    assert retry_delay(9, 0.0) == _appsync.RETRY_CAP  # polling off: failed syncs still retry


def test_the_poller_reports_each_change_of_state_once_not_each_attempt() -> None:
    asyncio.run(_the_poller_reports_each_change_of_state_once_not_each_attempt())


async def _the_poller_reports_each_change_of_state_once_not_each_attempt() -> None:
    now = [0.0]
    answers = [False, False, False, True]  # down three times, then up
    attempts: list[str] = []
    reported: list[SyncResult] = []

    async def sync(url: str) -> SyncResult:
        attempts.append(url)
        ok = answers.pop(0) if answers else True
        return SyncResult(url, ok, 200 if ok else 0, None if ok else "connection refused")

    async def inspect(url: str) -> str | None:
        return "1"

    async def urls() -> list[str]:
        return ["http://app/api/inngest"]

    poller = Poller(sync, inspect, urls, interval=5.0, report=reported.append, clock=lambda: now[0])
    poller.settled(SyncResult("http://app/api/inngest", False, 0, "connection refused"))
    for _ in range(20):  # 10 s, a tick every 0.5 s
        await poller.tick()
        now[0] += 0.5
    # retried 0.5 s, 1 s, 2 s, 4 s after each failure (at 0.5, 1.5, 3.5, 7.5): not every tick
    assert len(attempts) == 4
    assert [r.ok for r in reported] == [True]  # the first failure was reported by the CLI


def test_the_poller_syncs_again_when_the_function_count_changes() -> None:
    asyncio.run(_the_poller_syncs_again_when_the_function_count_changes())


async def _the_poller_syncs_again_when_the_function_count_changes() -> None:
    now = [0.0]
    count = ["2"]
    synced: list[str] = []

    async def sync(url: str) -> SyncResult:
        synced.append(url)
        return SyncResult(url, True, 200)

    async def inspect(url: str) -> str | None:
        return count[0]

    async def urls() -> list[str]:
        return ["http://app/api/inngest"]

    poller = Poller(sync, inspect, urls, interval=1.0, clock=lambda: now[0])
    poller.settled(SyncResult("http://app/api/inngest", True, 200))
    for _ in range(3):
        now[0] += 1.0
        await poller.tick()
    assert synced == []  # unchanged: inspected, not synced
    count[0] = "3"  # the app reloaded with one more function
    now[0] += 1.0
    await poller.tick()
    assert synced == ["http://app/api/inngest"]


# -- real processes -----------------------------------------------------------------------


@pytest.mark.parametrize("sdk", ["stepline", "official"])
def test_dev_started_before_the_app_syncs_it_once_up_and_runs_an_event(
    tmp_path: Path, sdk: str
) -> None:
    engine_port, app_port = free_port(), free_port()
    engine = f"http://127.0.0.1:{engine_port}"
    app_url = f"http://127.0.0.1:{app_port}/api/inngest"
    if sdk == "stepline":
        app_env = clean_env(STEPLINE_DEV=engine)
        app_cmd = _uvicorn("app:app", EXAMPLES / "asgi", app_port)
        name, data, function_id = "example/greet", {"name": "poll"}, "asgi-example-greet"
        output: object = {"text": "Hello, poll!"}
    else:
        app_env = clean_env(INNGEST_DEV=engine, INNGEST_BASE_URL=engine)
        app_cmd = _uvicorn("tests.apps.official_poll:app", ROOT, app_port)
        name, data, function_id = "poll/hello", {"name": "poll"}, "official-poll-hello"
        output = {"hello": "poll"}
    log = tmp_path / "engine.log"
    args = ["dev", "--port", str(engine_port), "--db", str(tmp_path / "db"), "-u", app_url]
    with spawned(engine_command(*args), log=log, env=clean_env()) as eng:
        wait_until_up(f"{engine}/health", eng)
        read_until(log, f"✗ {app_url} error")  # the app is not up yet
        read_until(log, "failed to sync; retrying in the background")
        time.sleep(2)  # the engine has tried for a while
        started = time.monotonic()
        with spawned(app_cmd, log=tmp_path / "app.log", env=app_env) as app:
            wait_until_up(app_url, app)
            text = read_until(log, f"✓ {app_url} synced", timeout=20)
            assert time.monotonic() - started < 20
            assert text.count("could not sync") <= 1  # quiet: one line per change of state
            sent = httpx.post(f"{engine}/e/k", json={"name": name, "data": data})
            assert sent.status_code == 200
            [run] = _completed(engine, function_id)
            assert run["output"] == output


def test_an_app_pointed_at_another_engine_is_not_reported_synced(tmp_path: Path) -> None:
    engine_port, other_port, app_port = free_port(), free_port(), free_port()
    engine = f"http://127.0.0.1:{engine_port}"
    other = f"http://127.0.0.1:{other_port}"
    app_url = f"http://127.0.0.1:{app_port}/api/inngest"
    app_cmd = _uvicorn("app:app", EXAMPLES / "asgi", app_port)
    log = tmp_path / "engine.log"
    other_args = ["dev", "--port", str(other_port), "--db", str(tmp_path / "other")]
    args = ["dev", "--port", str(engine_port), "--db", str(tmp_path / "db"), "-u", app_url]
    with (
        spawned(engine_command(*other_args), log=tmp_path / "other.log", env=clean_env()) as o,
        spawned(app_cmd, log=tmp_path / "app.log", env=clean_env(STEPLINE_DEV=other)) as app,
    ):
        wait_until_up(f"{other}/health", o)
        wait_until_up(app_url, app)
        with spawned(engine_command(*args), log=log, env=clean_env()) as eng:
            wait_until_up(f"{engine}/health", eng)
            text = read_until(log, "failed to sync")
            assert f"✓ {app_url} synced" not in text
            assert "pointed at another engine" in text
            assert f"STEPLINE_DEV=http://127.0.0.1:{engine_port}" in text
            assert httpx.get(f"{engine}/v1/apps").json()["data"] == []
            # the other engine did get it: the 200 was real, just not ours
            assert [a["app_id"] for a in httpx.get(f"{other}/v1/apps").json()["data"]] == [
                "asgi-example"
            ]
