"""``stepline runs cancel|replay`` by filters (bulk actions) and ``runs replay RUN_ID
--from-step``, against an engine process and an app process (``tests/apps/replay.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests._support.cli import Ran, run_stepline
from tests._support.polling import wait_until

from . import deploys

pytestmark = [pytest.mark.process]


def cli(url: str, *args: str) -> Ran:
    return run_stepline("runs", *args, "--url", url)


def start(url: str, name: str, n: int) -> str:
    sent = httpx.post(f"{url}/v1/events", json={"name": name, "data": {"n": n}})
    (event_id,) = sent.json()["data"]["ids"]
    runs = wait_until(lambda: deploys.get(url, f"events/{event_id}/runs") or None, timeout=20)
    return str(runs[0]["run_id"])


def status(url: str, run_id: str) -> str:
    return str(deploys.get(url, f"runs/{run_id}")["status"])


def test_bulk_cancel_and_replays_from_the_cli(tmp_path: Path) -> None:
    where = tmp_path / "app"
    where.mkdir()
    (where / "fail").touch()
    with (
        deploys.engine(str(tmp_path / "engine.db"), tmp_path / "engine.log") as url,
        deploys.app("replay", url, tmp_path / "app.log", REPLAY_DIR=str(where)) as app_url,
    ):
        deploys.sync(url, app_url)
        sleeping = [start(url, "replay/sleep", n) for n in range(4)]
        deploys.sleeping(url, sleeping)
        failed = [start(url, "replay/five", n) for n in range(2)]
        wait_until(lambda: all(status(url, r) == "Failed" for r in failed), timeout=30)

        assert cli(url, "cancel").returncode == 2  # neither a run nor filters
        both = cli(url, "cancel", sleeping[0], "--function", "sleeps")
        assert both.returncode == 2
        assert "not both" in both.stderr
        bad = cli(url, "cancel", "--function", "sleeps", "--if", "event.data.n <")
        assert bad.returncode == 1
        assert "filter.if" in bad.stderr
        assert "column" in bad.stderr

        done = cli(url, "cancel", "-f", "sleeps", "--if", "event.data.n < 3", "--since", "1h")
        assert done.returncode == 0, done.stderr
        line = done.stdout.strip().splitlines()[-1]
        assert line.startswith("bulk cancel ")
        assert line.endswith("completed: matched 3 · cancelled 3 · skipped 0"), line
        assert [status(url, r) for r in sleeping] == ["Cancelled"] * 3 + ["Running"]

        (where / "fail").unlink()
        one = cli(url, "replay", failed[0], "--from-step", "step-3")
        assert one.returncode == 0, one.stderr
        new = one.stdout.strip()
        wait_until(lambda: status(url, new) == "Completed", timeout=30)
        assert deploys.get(url, f"runs/{new}")["replay_of"] == failed[0]

        bulk = cli(url, "replay", "--function", "replayed-five", "--status", "failed", "--json")
        assert bulk.returncode == 0, bulk.stderr
        info: dict[str, Any] = json.loads(bulk.stdout)
        assert (info["status"], info["matched"], info["applied"]) == ("completed", 2, 2)
        assert info["filter"]["status"] == ["Failed"]

        def ran() -> list[int]:
            names = (where / "ran").read_text().split()
            return [names.count(f"step-{n}") for n in range(1, 6)]

        # 2 failed runs (1-3), the step-3 replay (3-5), two whole replays (1-5 each)
        wait_until(lambda: ran() == [4, 4, 5, 3, 3], timeout=30, message=lambda: str(ran()))
