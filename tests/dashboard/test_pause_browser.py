"""Pausing and resuming a function from the dashboard, in headless Chromium.

A real engine over HTTP and a real app process (``tests/apps/paused.py``). The
functions page pauses the function (a confirm, with a reason): it shows Paused and the
reason, a run sent meanwhile waits (the app's log stays empty); Resume (a confirm) lets
it run. The function's own page shows the state and pauses and resumes it too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app
from tests._support.browser import Page
from tests._support.polling import wait_until
from tests._support.server_thread import ServerThread
from tests.engine.deploys import app as app_process
from tests.engine.deploys import sync

pytestmark = [pytest.mark.process, pytest.mark.browser]

FN = "paused-steps"


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An engine over HTTP with the app process synced; its URL and the app's step log."""
    server = ServerThread("engine")
    settings = EngineSettings(
        database_url=str(tmp_path / "engine.db"), retry_scale=0.0, poll_interval=0.05
    )
    server.start(build_app(Engine(settings)))
    log = tmp_path / "steps.log"
    try:
        with app_process("paused", server.url, tmp_path / "app.log", PAUSED_LOG=str(log)) as url:
            sync(server.url, url)
            yield server.url, log
    finally:
        server.stop()


def test_pause_and_resume_from_the_functions_pages(served: tuple[str, Path], tab: Page) -> None:
    url, log = served
    page = tab.page
    page.goto(f"{url}/#/functions")
    state = page.locator(f'[data-state="{FN}"]')
    expect(state).to_have_text("Active")
    page.locator(f'button.pause-fn[data-function="{FN}"]').click()
    page.locator(f'input.reason[data-function="{FN}"]').fill("warehouse API down")
    page.locator(f'button.confirm-pause[data-function="{FN}"]').click()
    expect(state.locator(".badge")).to_have_text("Paused")
    expect(state.locator(".pause-reason")).to_have_text("warehouse API down")
    tab.screenshot("functions-paused")

    with httpx.Client(base_url=url, timeout=30) as http:
        listed = http.get("/v1/functions").json()["data"]
        assert [f["paused"]["reason"] for f in listed] == ["warehouse API down"]
        sent = http.post("/v1/events", json={"name": "paused/go", "data": {"who": "D"}})
        (event_id,) = sent.json()["data"]["ids"]

        def run_id() -> str | None:
            runs = http.get(f"/v1/events/{event_id}/runs").json()["data"]
            return str(runs[0]["run_id"]) if runs else None

        run = wait_until(run_id, message="the event's run")
        page.wait_for_timeout(1000)
        assert not log.exists() or log.read_text() == ""  # nothing ran while paused
        assert http.get(f"/v1/runs/{run}").json()["data"]["status"] == "Queued"

        # the function's own page shows it paused, and resumes it
        page.goto(f"{url}/#/functions/{FN}")
        expect(page.locator(f'[data-state="{FN}"] .badge')).to_have_text("Paused")
        page.locator(f'button.resume-fn[data-function="{FN}"]').click()
        page.locator(f'button.confirm-resume[data-function="{FN}"]').click()
        expect(page.locator(f'[data-state="{FN}"]')).to_have_text("Active")

        def ended() -> str | None:
            status = str(http.get(f"/v1/runs/{run}").json()["data"]["status"])
            return status if status in ("Completed", "Failed") else None

        assert wait_until(ended, message="the run to end", timeout=30) == "Completed"
        assert log.read_text().split() == ["D:a", "D:b", "D:c"]
        assert http.get("/v1/functions").json()["data"][0]["paused"] is None

    # back on the list: a confirm that is dismissed pauses nothing
    page.goto(f"{url}/#/functions")
    page.locator(f'button.pause-fn[data-function="{FN}"]').click()
    page.get_by_role("button", name="Keep running").click()
    expect(page.locator(f'button.pause-fn[data-function="{FN}"]')).to_be_visible()
    expect(state).to_have_text("Active")
