"""Step timeouts with real processes, on both stores.

An engine process and the app ``tests/apps/timeouts.py`` under uvicorn. A step over its timeout
fails its attempt, is retried (retries=1: two attempts), and then fails the run with
``StepTimeoutError``: async code cancelled at its timeout, sync code abandoned (its late
result ignored: the run still fails). A function whose code outside steps outlasts its
``Timeouts(call=)`` is cut off by the engine, retried, and fails the run likewise.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests._support.databases import database
from tests._support.polling import wait_until

from .deploys import app, ended, engine, get, sync

pytestmark = [pytest.mark.process]


def _start(url: str, event: str) -> str:
    sent = httpx.post(f"{url}/v1/events", json={"name": event, "data": {}})
    assert sent.status_code in (200, 201), sent.text
    (event_id,) = sent.json()["data"]["ids"]

    def started() -> list[dict[str, Any]] | None:
        return get(url, f"events/{event_id}/runs") or None

    return str(wait_until(started, timeout=10, message="the run")[0]["run_id"])


def _log(app_url: str, run_id: str) -> list[tuple[int, str]]:
    origin = app_url.removesuffix("/api/inngest")
    entries = httpx.get(f"{origin}/log", params={"run": run_id}).json()
    return [(e["attempt"], e["event"]) for e in entries]


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_steps_over_their_timeout_are_retried_then_fail_the_run(store: str, tmp_path: Path) -> None:
    with (
        database(store, tmp_path) as db,
        engine(db, tmp_path / "engine.log") as url,
        app("timeouts", url, tmp_path / "app.log") as app_url,
    ):
        sync(url, app_url)
        sync_run = _start(url, "timeouts/sync")
        async_run = _start(url, "timeouts/async")
        hang_run = _start(url, "timeouts/hang")
        runs = {r["run_id"]: r for r in ended(url, [sync_run, async_run, hang_run])}

        for run_id in (sync_run, async_run):
            run = runs[run_id]
            assert run["status"] == "Failed", run
            assert run["output"]["name"] == "StepTimeoutError", run["output"]
            steps = get(url, f"runs/{run_id}/steps")
            [slow] = [s for s in steps if s["name"] == "slow"]
            assert slow["status"] == "Failed"
            assert slow["error"]["name"] == "StepTimeoutError"

        # async: each attempt's code was cancelled at its timeout (Timeouts(step="1s"))
        assert _log(app_url, async_run) == [
            (0, "start"),
            (0, "cancelled"),
            (1, "start"),
            (1, "cancelled"),
        ]
        assert "timeout of 1s" in runs[async_run]["output"]["message"]

        # sync: each attempt was abandoned; the late results came and were ignored
        def both_late() -> list[tuple[int, str]] | None:
            log = _log(app_url, sync_run)
            return log if log.count((0, "late")) + log.count((1, "late")) == 2 else None

        log = wait_until(both_late, timeout=10, message="the abandoned steps to finish")
        assert sorted(log) == [(0, "late"), (0, "start"), (1, "late"), (1, "start")]
        time.sleep(0.5)  # the late results leave no trace when ignored: a moment to show one
        assert get(url, f"runs/{sync_run}")["status"] == "Failed"  # still: late results ignored

        # the engine's call timeout: the call was cut off and retried once
        hang = runs[hang_run]
        assert hang["status"] == "Failed", hang
        assert _log(app_url, hang_run) == [(0, "call"), (1, "call")]
        assert "1s" in str(hang["output"]), hang["output"]
