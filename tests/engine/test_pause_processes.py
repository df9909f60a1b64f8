"""Pausing and resuming with real processes: an engine process and an app process.

A run is mid-way (asleep after its first step) when the function is paused from the CLI;
its sleep ends while paused and its next step does not run; two more runs are created
and wait. ``functions list`` shows the pause; the client (async face) changes its
reason, and (sync face) resumes it: the waiting calls run oldest first. The app's log
file proves which steps ran, in which order. Both stores.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

import stepline
from tests._support.cli import Ran, run_stepline
from tests._support.databases import database
from tests._support.polling import wait_until

from . import deploys
from .deploys import app, ended, engine, sleeping, sync

pytestmark = [pytest.mark.process]

FN = "paused-steps"
T = TypeVar("T")


def cli(engine_url: str, *args: str) -> Ran:
    return run_stepline(*args, "--url", engine_url)


def start(engine_url: str, who: str) -> str:
    """Send ``paused/go`` for ``who``; the id of the run it started."""
    sent = httpx.post(f"{engine_url}/v1/events", json={"name": "paused/go", "data": {"who": who}})
    assert sent.status_code == 200, sent.text
    (event_id,) = sent.json()["data"]["ids"]

    def started() -> list[dict[str, Any]] | None:
        found: list[dict[str, Any]] = deploys.get(engine_url, f"events/{event_id}/runs")
        return found or None

    return str(wait_until(started, timeout=10, message="the event's run")[0]["run_id"])


def on_async_face(url: str, call: Callable[[stepline.Client], Awaitable[T]]) -> T:
    """``call`` with a fresh client on an event loop of its own, closed afterwards."""

    async def main() -> T:
        client = stepline.Client("paused", is_production=False, api_base_url=url)
        try:
            return await call(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def ran(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_pause_holds_runs_across_processes_and_resume_releases_them_in_order(
    store: str, tmp_path: Path
) -> None:
    log = tmp_path / "steps.log"
    with (
        contextlib.ExitStack() as stack,
        database(store, tmp_path) as db,
        engine(db, tmp_path / "engine.log") as url,
        app("paused", url, tmp_path / "app.log", PAUSED_LOG=str(log)) as app_url,
    ):
        sync(url, app_url)
        client = stepline.Client("paused", is_production=False, api_base_url=url)
        stack.callback(client.close)

        a = start(url, "A")
        sleeping(url, [a])
        paused = cli(url, "functions", "pause", "steps", "--reason", "db maintenance")
        assert paused.returncode == 0, paused.stderr
        assert paused.stdout.strip() == f"paused {FN} (cron ticks: queued)"

        def parked(run_id: str, name: str) -> None:  # the run says why it waits
            wait_until(
                lambda: (
                    (deploys.get(url, f"runs/{run_id}").get("waiting") or {}).get("reason")
                    == "paused"
                ),
                timeout=20,
                message=f"{name}'s next call to park",
            )

        # A's sleep ends while paused: its next call parks
        parked(a, "A")
        b = start(url, "B")
        parked(b, "B")  # a worker leased B's call (and parked it): due before C's
        c = start(url, "C")
        parked(c, "C")
        assert ran(log) == ["A:a"]
        statuses = [deploys.get(url, f"runs/{r}")["status"] for r in (a, b, c)]
        assert statuses == ["Running", "Queued", "Queued"]

        listed = cli(url, "functions", "list")
        assert listed.returncode == 0, listed.stderr
        header, row = listed.stdout.splitlines()[:2]
        assert header.split() == ["FUNCTION", "APP", "TRIGGERS", "PAUSED"]
        assert row.split()[:4] == [FN, "paused", "paused/go", "since"]
        assert row.endswith("(cron ticks: queued): db maintenance")

        again = on_async_face(
            url, lambda c: c.get_function("steps").pause(crons="skip", reason="still down")
        )
        assert (again.function_id, again.crons, again.reason) == (FN, "skip", "still down")
        with pytest.raises(stepline.FunctionNotFoundError):
            client.get_function_sync("nope").pause()
        assert ran(log) == ["A:a"]

        assert client.get_function_sync("steps").resume() is True
        outputs = [r["output"] for r in ended(url, [a, b, c])]
        assert outputs == [[f"{w}:a", f"{w}:b", f"{w}:c"] for w in "ABC"]
        order = ran(log)
        assert sorted(order) == sorted(f"{w}:{s}" for w in "ABC" for s in "abc")  # once each
        # oldest first: A's parked step b, then B's and C's first steps
        assert order.index("A:b") < order.index("B:a") < order.index("C:a")
        assert on_async_face(url, lambda c: c.get_function("steps").resume()) is False
        not_paused = cli(url, "functions", "resume", FN)
        assert not_paused.returncode == 3, (not_paused.stdout, not_paused.stderr)
        unknown = cli(url, "functions", "pause", "nope")
        assert unknown.returncode == 1
        assert "not found" in unknown.stderr
