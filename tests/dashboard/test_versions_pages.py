"""The dashboard's apps page lists each app's versions with the runs still live on each,
and the runs list shows and filters by the app version a run started on.

Two scripted SDKs (real HTTP servers) register v1 and v2 of one app with a real engine
over HTTP; v1's run sleeps, v2's completes. Headless Chromium drives the pages.
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
from tests._support.stub_server import StubServer
from tests.engine.test_versions import body, serving

pytestmark = [pytest.mark.browser]


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


@pytest.fixture
def engine_url(tmp_path: Path) -> Iterator[tuple[str, StubServer, StubServer]]:
    one, two = serving("v1"), serving("v2")
    server = ServerThread("engine")
    settings = EngineSettings(
        database_url=str(tmp_path / "engine.db"),
        retry_scale=0.0,
        retry_jitter=0.0,
        poll_interval=0.05,
    )
    server.start(build_app(Engine(settings)))
    try:
        yield server.url, one, two
    finally:
        server.stop()
        one.stop()
        two.stop()


def test_apps_page_lists_versions_and_the_runs_list_filters_by_version(
    engine_url: tuple[str, StubServer, StubServer], tab: Page
) -> None:
    url, one, two = engine_url
    with httpx.Client(base_url=url, headers={"x-stepline-csrf": "1"}, timeout=30) as http:
        assert http.post("/fn/register", json=body(one, "v1")).status_code == 200
        started = http.post("/v1/functions/shop-checkout/runs", json={}).json()["data"]
        old = started["run_id"]

        def asleep() -> bool | None:
            steps = http.get(f"/v1/runs/{old}/steps").json()["data"]
            return True if any(s["status"] == "Sleeping" for s in steps) else None

        wait_until(asleep, message="the v1 run to sleep")
        assert http.post("/fn/register", json=body(two, "v2")).status_code == 200
        new = http.post("/v1/functions/shop-checkout/runs", json={}).json()["data"]["run_id"]
    page = tab.page

    page.goto(f"{url}/#/apps")
    section = page.locator("section.versions[data-app=shop]")
    rows = section.locator("table.app-versions tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("v2")
    expect(rows.nth(0).locator(".badge")).to_have_text("latest")
    expect(rows.nth(1)).to_contain_text("v1")
    expect(rows.nth(1)).to_contain_text(f"{one.url}/api/inngest")
    expect(rows.nth(1).locator(".live-runs")).to_have_text("1")
    expect(rows.nth(1).locator(".badge")).to_have_text("draining")
    tab.screenshot("apps-versions")

    page.goto(f"{url}/#/runs")
    link = page.locator(f"table.runs tbody tr:has(a[href='#/runs/{old}']) a.version")
    expect(link).to_have_text("v1")
    page.fill("input[name=version]", "v2")
    page.click("#run-filters button[type=submit]")
    expect(page.locator(f"a[href='#/runs/{new}']")).to_be_visible()
    expect(page.locator(f"a[href='#/runs/{old}']")).to_have_count(0)
    assert "version=v2" in page.url
    page.goto(f"{url}/#/runs")
    page.locator(f"table.runs tbody tr:has(a[href='#/runs/{old}']) a.version").click()
    expect(page.locator(f"a[href='#/runs/{new}']")).to_have_count(0)
    expect(page.locator(f"a[href='#/runs/{old}']")).to_be_visible()
    tab.screenshot("runs-by-version")
