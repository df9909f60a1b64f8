"""Export as a test and deploy checks in the dashboard, in headless Chromium: the run
page's "Export as test" downloads the run's journal, which parses; the apps page shows the
last deploy check reported for an app (its verdict, and folded, each function's runs),
and nothing for an app no check covered."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import stepline
import stepline.asgi
from stepline._replay.journal import Journal
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
    engine_server, app_server = ServerThread("engine"), ServerThread("export-app")
    client = stepline.Client(
        app_id="shop",
        is_production=False,
        api_base_url=engine_server.url,
        event_api_base_url=engine_server.url,
    )

    @client.function(id="checkout", trigger=stepline.TriggerEvent(event="shop/checkout"))
    async def checkout(ctx: stepline.Context) -> dict[str, Any]:
        cart = await ctx.step.run("cart", lambda: {"items": 2})
        paid = await ctx.step.run("pay", lambda: "paid")
        return {"cart": cart, "paid": paid}

    app_url = f"{app_server.url}/api/inngest"
    settings = EngineSettings(
        database_url=str(tmp_path / "engine.db"), poll_interval=0.05, app_urls=(app_url,)
    )
    with contextlib.ExitStack() as stop:
        stop.callback(engine_server.stop)
        stop.callback(client.close)
        app_server.start(closing_client(stepline.asgi.serve(client, [checkout]), client))
        stop.callback(app_server.stop)
        engine_server.start(build_app(Engine(settings)))
        with httpx.Client(base_url=engine_server.url) as http:
            wait_until(
                lambda: http.get("/v1/apps").json()["data"] or None, message="the app's sync"
            )
        yield engine_server.url, client


def test_the_run_page_exports_the_run_as_a_journal(
    engine: tuple[str, stepline.Client], tab: Page, tmp_path: Path
) -> None:
    url, client = engine
    handle = client.start_sync("checkout", {"order": 7})
    assert handle.result(timeout=20) == {"cart": {"items": 2}, "paid": "paid"}
    page = tab.page
    page.goto(f"{url}/#/runs/{handle.run_id}")
    button = page.locator("#export-run")
    expect(button).to_have_text("Export as test")
    with page.expect_download() as downloading:
        button.click()
    download = downloading.value
    assert download.suggested_filename == f"run-{handle.run_id}.json"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    doc = Journal.from_json(json.loads(saved.read_text("utf-8")))
    assert (doc.run_id, doc.function_id, doc.status) == (
        handle.run_id,
        "shop-checkout",
        "Completed",
    )
    assert [s.name for s in doc.steps] == ["cart", "pay"]
    assert [s.memo for s in doc.steps] == [{"data": {"items": 2}}, {"data": "paid"}]
    assert doc.output == {"cart": {"items": 2}, "paid": "paid"}
    assert doc.events[0]["data"]["order"] == 7


def _report(app_id: str, *, diverged: int) -> dict[str, Any]:
    counts = {"runs": 3, "ok": 3 - diverged, "diverged": diverged, "failed": 0, "inconclusive": 0}
    results = [
        {"run_id": f"01RUN{n}", "verdict": "diverged" if n < diverged else "ok"} for n in range(3)
    ]
    if diverged:
        results[0].update(summary="step 'pay' is no longer reached", fix="keep 'pay' first")
    return {
        "format": "stepline.deploy-check/1",
        "checked_at": "2026-11-27T06:00:00Z",
        "target": "shop.functions:client",
        "ok": not diverged,
        "counts": counts,
        "functions": [
            {
                "function_id": f"{app_id}-checkout",
                "app_id": app_id,
                "counts": counts,
                "results": results,
            }
        ],
    }


def test_the_apps_page_shows_the_last_deploy_check_of_each_app(
    engine: tuple[str, stepline.Client], tab: Page
) -> None:
    url, _client = engine
    page = tab.page
    page.goto(f"{url}/#/apps")
    expect(page.locator("table.apps tbody tr")).to_have_count(1)
    expect(page.locator("details.deploy-check")).to_have_count(0)  # none reported yet

    with httpx.Client(base_url=url) as http:
        for body in (_report("shop", diverged=0), _report("shop", diverged=1)):
            stored = http.post("/v1/deploy-checks", json=body)
            assert stored.status_code == 201, stored.text
        other = http.post("/v1/deploy-checks", json=_report("elsewhere", diverged=2))
        assert other.status_code == 201, other.text

    page.reload()
    check = page.locator('details.deploy-check[data-app="shop"]')
    expect(check).to_have_count(1)
    expect(page.locator("details.deploy-check")).to_have_count(1)
    summary = check.locator("summary")
    expect(summary).to_contain_text("1 of 3 runs would diverge")  # the newest report
    expect(check.locator(".deploy-check-function")).not_to_be_visible()
    summary.click()
    function = check.locator('.deploy-check-function[data-function="shop-checkout"]')
    expect(function).to_be_visible()
    expect(function.locator("li")).to_have_count(3)
    expect(function.locator("li.verdict-diverged")).to_contain_text("no longer reached")
    expect(function.locator("li.verdict-diverged")).to_contain_text("Fix: keep 'pay' first")
    tab.screenshot("apps-deploy-check")
