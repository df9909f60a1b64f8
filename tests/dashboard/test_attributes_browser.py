"""Run attributes in the dashboard, in headless Chromium: the runs list filters
by them, the run page shows them as links to the runs that share them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import stepline
import stepline.asgi
from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app
from tests._support.browser import Page
from tests._support.clients import closing_client
from tests._support.polling import wait_until
from tests._support.server_thread import ServerThread

pytestmark = [pytest.mark.browser]


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[str, stepline.Client]]:
    engine_server, app_server = ServerThread("engine"), ServerThread("attrs-app")
    client = stepline.Client(
        app_id="attrs",
        is_production=False,
        api_base_url=engine_server.url,
        event_api_base_url=engine_server.url,
    )

    @client.function(id="order", trigger=stepline.TriggerEvent(event="attrs/order"))
    async def order(ctx: stepline.Context) -> str:
        await ctx.set_attributes({"stage": "done"})
        return "ok"

    app_url = f"{app_server.url}/api/inngest"
    settings = EngineSettings(
        database_url=str(tmp_path / "engine.db"), poll_interval=0.05, app_urls=(app_url,)
    )
    with contextlib.ExitStack() as stop:
        stop.callback(engine_server.stop)
        stop.callback(client.close)  # the test's own calls' connections
        app_server.start(closing_client(stepline.asgi.serve(client, [order]), client))
        stop.callback(app_server.stop)
        engine_server.start(build_app(Engine(settings)))
        with httpx.Client(base_url=engine_server.url) as http:
            wait_until(
                lambda: http.get("/v1/apps").json()["data"] or None, message="the app's sync"
            )
        yield engine_server.url, client


def test_filter_by_attribute_and_follow_one_from_the_run_page(
    engine: tuple[str, stepline.Client], tab: Page
) -> None:
    url, client = engine
    gold = client.start_sync("order", {}, attributes={"customer": "c1", "tier": "gold"})
    other = client.start_sync("order", {}, attributes={"customer": "c2", "tier": "gold"})
    for handle in (gold, other):
        assert handle.result(timeout=20) == "ok"
    page = tab.page
    page.goto(f"{url}/#/runs")
    page.locator('input[name="attribute"]').fill("customer:c1")
    page.locator("#run-filters button[type=submit]").click()
    rows = page.locator("table.runs tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(gold.run_id)
    page.locator('input[name="attribute"]').fill("tier:gold stage:done")
    page.locator("#run-filters button[type=submit]").click()
    expect(rows).to_have_count(2)
    tab.screenshot("runs-by-attribute")

    page.goto(f"{url}/#/runs/{gold.run_id}")
    chips = page.locator("#run-attributes a")
    expect(chips).to_have_text(["customer=c1", "stage=done", "tier=gold"])
    tab.screenshot("run-attributes")
    chips.filter(has_text="customer=c1").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(gold.run_id)
