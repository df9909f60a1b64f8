"""The Apps page shows the Connect workers of each app served over Connect.

A real engine (``tests.connect.harness.node``) with Stepline's worker connected as a
process; headless Chromium reads the Apps page, and the worker, drained mid-call, is shown
draining with its call in flight, then gone.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from tests._support.browser import Page
from tests._support.polling import wait_until
from tests.connect.harness import APP_ID, STEPLINE, node, workers

pytestmark = [pytest.mark.process, pytest.mark.browser, pytest.mark.timeout(120)]


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def test_the_apps_page_lists_connected_workers(tmp_path: Path, tab: Page) -> None:
    with (
        node(str(tmp_path / "e.db")) as engine,
        workers(tmp_path, "tests.apps.connect_stepline_worker") as ours,
    ):
        ours.start(engine, "s1")
        page = tab.page
        page.goto(f"{engine.url}/#/apps")
        section = page.locator(f"section.connect-workers[data-app={APP_ID}]")
        rows = section.locator("table.workers tbody tr")
        expect(rows).to_have_count(1)
        expect(rows.nth(0)).to_contain_text("s1")
        expect(rows.nth(0)).to_contain_text(STEPLINE.sdk)
        expect(rows.nth(0).locator(".worker-functions")).to_have_text("11")
        expect(rows.nth(0).locator(".worker-status")).to_have_text("ready")
        expect(rows.nth(0)).to_contain_text(engine.engine.connect.node)
        apps = page.locator("#apps-table tbody tr", has_text=APP_ID)
        expect(apps).to_contain_text("Connect workers")

        # a call held in flight, then SIGTERM: the worker drains and is shown so
        gate = tmp_path / "gate"
        run_id = engine.run_of(engine.send("slow", {"seconds": 60, "gate": str(gate)}))
        wait_until(lambda: ours.ran("slow.work.start") or None, message="the slow step to start")
        expect(rows.nth(0).locator(".in-flight")).to_have_text("1")
        ours.signal("s1", signal.SIGTERM)
        expect(rows.nth(0).locator(".worker-status")).to_have_text("draining")
        tab.screenshot("apps-connect-workers")
        gate.touch()  # the call ends: the drained worker stops
        assert engine.finished(run_id)["status"] == "Completed"
        expect(rows).to_have_count(0)
        expect(section).to_contain_text("No worker connected")
