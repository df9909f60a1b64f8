"""The runs page's query box in headless Chromium, on both stores.

Typing in the box offers the fields that complete what was typed (Tab takes one); a query
that does not parse, or names no field, shows its error under the column it points at; a
query lists the runs it matches (an event's data checked beside the columns), with the
columns the page asks for; a view saved under a name lists among the saved views, and its
URL opens the same query and columns in a fresh page.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

import stepline
from tests._support.browser import Page, run_of, send
from tests.sdk.embedded_support import EngineServer

pytestmark = [pytest.mark.browser]


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def functions(client: stepline.Client) -> list[stepline.Function]:
    @client.function(id="order", trigger=stepline.TriggerEvent(event="shop/order"))
    async def order(ctx: stepline.Context) -> dict[str, int]:
        data: Any = ctx.event.data
        if data.get("fail"):
            raise stepline.NonRetriableError("card declined")
        return {"total": int(data.get("total", 0))}

    return [order]


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, httpx.Client]]:
    if request.param == "sqlite":
        database = str(tmp_path / "engine.db")
    else:
        database = request.getfixturevalue("postgres_url")
    server = EngineServer(database, poll_interval=0.05, retry_scale=0.0, retry_jitter=0.0)
    client = stepline.Client("query", is_production=False, api_base_url=server.url)
    server.serve(client, functions(client))
    with server, httpx.Client(base_url=server.url, timeout=30) as http:
        yield server.url, http


def ended(http: httpx.Client, data: dict[str, Any]) -> str:
    run_id = str(run_of(http, send(http, "shop/order", data))["run_id"])
    http.get(f"/v1/runs/{run_id}", params={"wait": 20})
    return run_id


def listed(page: Any) -> list[str]:
    links = page.locator("table.runs tbody tr a[href^='#/runs/']")
    return sorted(
        str(href).removeprefix("#/runs/")
        for href in links.evaluate_all("(els) => els.map((el) => el.getAttribute('href'))")
    )


def test_query_box_completes_locates_errors_lists_and_saves_views(
    engine: tuple[str, httpx.Client], tab: Page
) -> None:
    url, http = engine
    failed_pro = ended(http, {"plan": "pro", "fail": True})
    ended(http, {"plan": "free", "fail": True})
    ended(http, {"plan": "pro", "total": 120})
    page = tab.page
    tab.expected.append("400")  # the bad query's refused request, logged by the browser
    page.goto(f"{url}/#/runs")
    box = page.locator("#run-query")

    # completion: the fields that begin with what was typed; Tab takes the first
    box.click()
    box.press_sequentially("sta")
    options = page.locator("#query-completions li")
    expect(options.first).to_have_attribute("data-value", "status")
    expect(page.locator("#query-completions")).to_be_visible()
    box.press("Tab")
    expect(box).to_have_value("status")
    expect(page.locator("#query-completions")).to_be_hidden()
    box.press_sequentially(' == "Failed" && event.')
    expect(options.first).to_have_attribute("data-value", "name")
    expect(page.locator("#query-completions li[data-value='data']")).to_have_count(1)

    # a field that does not exist: the error points at its column
    box.fill('status == "Failed" && plan == "pro"')
    box.press("Enter")
    error = page.locator("#query-error")
    expect(error).to_be_visible()
    expect(error).to_have_attribute("data-column", "23")
    expect(error).to_contain_text("Column 23: unknown field 'plan'")
    caret = error.locator("pre.query-caret")
    expect(caret).to_have_text(re.compile(r"\n {22}\^$"))
    expect(box).to_have_attribute("aria-invalid", "true")
    # the live view does not ask again for a query it was refused (nor move the caret)
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url) if "query=" in r.url else None)
    page.wait_for_timeout(2500)  # past a live tick (2 s)
    assert requested == []

    # a good query: the runs it matches, an event's data checked beside the status column
    box.fill('status == "Failed" && event.data.plan == "pro"')
    box.press("Enter")
    page.wait_for_url(re.compile(r"query="))
    expect(page.locator("table.runs tbody tr")).to_have_count(1)
    assert listed(page) == [failed_pro]
    expect(page.locator("#query-error")).to_be_hidden()

    # columns: the error column in, the version out
    picker = page.locator("#column-picker")
    picker.locator("summary").click()
    picker.locator("input[value='error']").check()
    page.wait_for_url(re.compile(r"columns="))
    page.locator("#column-picker summary").click()
    page.locator("#column-picker input[value='version']").uncheck()
    page.wait_for_url(re.compile(r"columns=(?!.*version)"))
    headers = page.locator("table.runs thead th")
    expect(headers).to_contain_text(
        ["Status", "Run", "Function", "Trigger", "Created", "Duration", "Error"]
    )
    expect(page.locator("table.runs thead th", has_text="Version")).to_have_count(0)
    expect(page.locator("table.runs tbody tr td", has_text="NonRetriableError")).to_have_count(1)
    tab.screenshot("runs-query")

    # save it as a view; it lists among the saved views, by the API too
    page.locator("#view-name").fill("failed pro orders")
    page.locator("#save-view").click()
    expect(page.locator("#view-status")).to_have_text("Saved “failed pro orders”")
    expect(page.locator("#saved-views option[value='failed pro orders']")).to_have_count(1)
    [saved] = http.get("/v1/views").json()["data"]
    assert saved["query"] == 'status == "Failed" && event.data.plan == "pro"'
    assert "error" in saved["columns"]
    assert "version" not in saved["columns"]

    # reopened from the list of saved views on a plain runs page
    page.goto(f"{url}/#/runs")
    expect(page.locator("table.runs tbody tr")).to_have_count(3)
    page.locator("#saved-views").select_option("failed pro orders")
    page.wait_for_url(re.compile(r"query="))
    expect(page.locator("table.runs tbody tr")).to_have_count(1)

    # and shared by its URL: a fresh page opens the same query and columns
    share = str(page.locator("#share-view").get_attribute("href"))
    asked = parse_qs(urlsplit(share.removeprefix("#")).query)
    assert asked["query"] == [saved["query"]]
    assert asked["columns"] == [",".join(saved["columns"])]
    other = Page(page.context.browser)
    try:
        other.page.goto(f"{url}/{share}")
        expect(other.page.locator("#run-query")).to_have_value(saved["query"])
        expect(other.page.locator("table.runs tbody tr")).to_have_count(1)
        assert listed(other.page) == [failed_pro]
        expect(other.page.locator("table.runs thead th", has_text="Error")).to_have_count(1)
        assert not other.errors
    finally:
        other.close()
