"""Non-determinism detection with real processes.

An engine process and an app (``tests/apps/diverging.py``) at one URL: v1 starts runs (a sync
and an async function) that go to sleep; v1 is stopped and v2, whose code renamed a
step, is started in its place on the same port and re-synced; the runs then wake on v2.

- stepline SDK, ``nondeterminism="warn"``: each run records one notice naming the step
  v1 recorded (``reserve``) and the one v2 found instead (``reserve stock``), and ends;
- ``"fail"``: each run fails with ``NonDeterminismError`` naming the step, and the notice;
- official ``inngest`` SDK (reports nothing itself): the call targeting the step v1
  planned (``charge``) reaches v2, which no longer has it; the engine records a notice
  (source ``engine``) and the run fails with the SDK's error, as on Inngest's server.

Both stores.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stepline._protocol.hashing import hash_step_id
from tests._support.polling import wait_until
from tests._support.processes import free_port

from . import deploys
from .deploys import app, ended, engine, sync

pytestmark = [pytest.mark.process]


@contextlib.contextmanager
def deployed(engine_url: str, port: int, log: Path, **env: str) -> Iterator[str]:
    """One deploy of ``tests/apps/diverging.py`` on ``port``, synced with the engine."""
    with app("diverging", engine_url, log, port=port, **env) as url:
        sync(engine_url, url)
        yield url


def start(engine_url: str, nap: float) -> list[str]:
    """One run of each function (sync, async); their ids."""
    return deploys.start(engine_url, "diverging", {"nap": nap})


def steps_reach(engine_url: str, run_ids: list[str], wanted: dict[str, str]) -> None:
    """Wait until every run's steps named in ``wanted`` have those statuses."""

    def reached(run_id: str) -> bool:
        steps = httpx.get(f"{engine_url}/v1/runs/{run_id}/steps").json()["data"]
        have = {s["name"]: s["status"] for s in steps}
        return all(have.get(name) == status for name, status in wanted.items())

    wait_until(lambda: all(map(reached, run_ids)), timeout=30, message=f"steps {wanted}")


def named(entries: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(e["id"], e["name"]) for e in entries]


def test_stepline_warn_records_the_notice_and_the_runs_end(db: str, tmp_path: Path) -> None:
    port = free_port()
    with engine(db, tmp_path / "engine.log") as url:
        env = {"DIVERGING_SDK": "stepline", "DIVERGING_POLICY": "warn"}
        with deployed(url, port, tmp_path / "v1.log", DIVERGING_CODE="v1", **env):
            runs = start(url, nap=0)
            steps_reach(url, runs, {"reserve": "Completed", "nap": "Waiting"})
        with deployed(url, port, tmp_path / "v2.log", DIVERGING_CODE="v2", **env):
            httpx.post(f"{url}/v1/events", json={"name": "diverging/resume"})
            finished = ended(url, runs)

    for found in finished:
        assert found["status"] == "Completed", found
        assert found["output"] == {"reserved": "v2", "shipped": "v2"}
        [notice] = found["notices"]
        assert (notice["kind"], notice["source"], notice["policy"]) == (
            "nondeterminism",
            "sdk",
            "warn",
        )
        assert named(notice["missing"]) == [(hash_step_id("reserve"), "reserve")]
        # the replays after the deploy each reported it; the later one's new step merged in
        assert named(notice["new"]) == [
            (hash_step_id("reserve stock"), "reserve stock"),
            (hash_step_id("ship"), "ship"),
        ]
        assert "'reserve'" in notice["message"]


def test_stepline_fail_fails_the_runs_with_a_clear_error(db: str, tmp_path: Path) -> None:
    port = free_port()
    with engine(db, tmp_path / "engine.log") as url:
        env = {"DIVERGING_SDK": "stepline", "DIVERGING_POLICY": "fail"}
        with deployed(url, port, tmp_path / "v1.log", DIVERGING_CODE="v1", **env):
            runs = start(url, nap=0)
            steps_reach(url, runs, {"reserve": "Completed", "nap": "Waiting"})
        with deployed(url, port, tmp_path / "v2.log", DIVERGING_CODE="v2", **env):
            httpx.post(f"{url}/v1/events", json={"name": "diverging/resume"})
            finished = ended(url, runs)

    for found in finished:
        assert found["status"] == "Failed", found
        assert found["output"]["name"] == "NonDeterminismError"
        assert "reserve" in found["output"]["message"]
        [notice] = found["notices"]
        assert (notice["source"], notice["policy"]) == ("sdk", "fail")
        # the first replay on v2 failed where it found "reserve stock": nothing recorded
        # had been reached yet
        assert named(notice["missing"]) == [
            (hash_step_id("reserve"), "reserve"),
            (hash_step_id("nap"), "nap"),
        ]
        # no op of the failed answer names the new step (the header carries hashed ids
        # only); the error's message does
        assert named(notice["new"]) == [(hash_step_id("reserve stock"), None)]


def test_official_sdk_planned_step_gone_is_noticed_by_the_engine(db: str, tmp_path: Path) -> None:
    port = free_port()
    with engine(db, tmp_path / "engine.log") as url:
        env = {"DIVERGING_SDK": "official"}
        with deployed(url, port, tmp_path / "v1.log", DIVERGING_CODE="v1", **env):
            # charge asks to be retried in 10 s: its planned call waits across the deploy
            runs = start(url, nap=10)
            steps_reach(url, runs, {"charge": "Planned", "ship": "Completed"})
        with deployed(url, port, tmp_path / "v2.log", DIVERGING_CODE="v2", **env):
            finished = ended(url, runs)

    for found in finished:
        assert found["status"] == "Failed", found
        assert found["output"] == {
            "code": "step_unexpected",
            "message": 'found step "receipt" when targeting a different step',
            "name": "StepUnexpectedError",
            "stack": None,
        }
        [notice] = found["notices"]
        assert (notice["source"], notice["policy"]) == ("engine", "fail")
        assert named(notice["missing"]) == [(hash_step_id("charge"), "charge")]
        assert named(notice["new"]) == [(hash_step_id("receipt"), "receipt")]
