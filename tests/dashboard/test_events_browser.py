"""The events list and page in headless Chromium, on both stores.

A real engine over HTTP serves an app in-process. The list searches by name and by a CEL
expression over the payload (a bad expression shows the parser's message on the page,
not a broken page), with relative times; an event's page replays the event: a confirm,
then the new event opens, names the original, and has started the function again.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import stepline
from tests._support.browser import Page, run_of, send
from tests._support.polling import wait_until
from tests.sdk.embedded_support import EngineServer

pytestmark = [pytest.mark.browser]

CALLS: collections.Counter[str] = collections.Counter()


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def functions(client: stepline.Client) -> list[stepline.Function]:
    @client.function(id="order", trigger=stepline.TriggerEvent(event="ev/order"))
    async def order(ctx: stepline.Context) -> int:
        CALLS[str(ctx.event.data.get("ref"))] += 1
        return int(ctx.event.data.get("amount", 0))

    return [order]


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, httpx.Client]]:
    if request.param == "sqlite":
        database = str(tmp_path / "engine.db")
    else:
        database = request.getfixturevalue("postgres_url")
    server = EngineServer(database, poll_interval=0.05, retry_scale=0.0, retry_jitter=0.0)
    client = stepline.Client("ev", is_production=False, api_base_url=server.url)
    server.serve(client, functions(client))
    with server, httpx.Client(base_url=server.url, timeout=30) as http:
        yield server.url, http


def test_search_events_by_name_and_payload_expression(
    engine: tuple[str, httpx.Client], tab: Page
) -> None:
    url, http = engine
    sent = {n: send(http, "ev/order", {"ref": f"o{n}", "amount": n}) for n in (5, 150, 90, 300)}
    send(http, "ev/other", {"amount": 999})
    page = tab.page
    page.goto(f"{url}/#/events")
    rows = page.locator("table.events tbody tr")
    named = page.locator("strong", has_text=re.compile("^ev/order$"))
    expect(rows.filter(has=named)).to_have_count(4)  # and the engine's run-ended events
    received = rows.filter(has_text="ev/other").locator("time.ago")
    expect(received).to_have_text(re.compile(r"^(just now|\d+ s ago)$"))
    expect(received).to_have_attribute("title", re.compile(r"\(\d{4}-\d\d-\d\dT.*Z\)$"))

    page.fill("#event-filter input[name=name]", "ev/order")
    page.fill("#event-filter input[name=expression]", "event.data.amount > 100")
    page.click("#event-filter button[type=submit]")
    expect(rows).to_have_count(2)
    links = rows.locator("a[href^='#/events/']")
    expect(links).to_have_count(2)
    hrefs = [links.nth(i).get_attribute("href") for i in range(2)]
    assert hrefs == [f"#/events/{sent[300]}", f"#/events/{sent[150]}"]
    expect(page.locator("#event-scan")).to_have_text("Searched 4 events.")
    tab.screenshot("events-search")

    page.fill("#event-filter input[name=name]", "")  # every name
    page.fill("#event-filter input[name=expression]", "event.data.amount >= 300")
    page.click("#event-filter button[type=submit]")
    expect(rows).to_have_count(2)
    expect(page.locator("table.events")).to_contain_text("ev/other")

    page.fill("#event-filter input[name=expression]", "event.data.amount > 100000")
    page.click("#event-filter button[type=submit]")
    expect(page.locator("p.empty")).to_contain_text("match event.data.amount > 100000")

    tab.expected.append("400")
    page.fill("#event-filter input[name=expression]", "event.data.amount >")
    page.click("#event-filter button[type=submit]")
    error = page.locator("#event-search-error")
    expect(error).to_contain_text("expression: ")
    expect(error).to_contain_text("event.data.amount >")
    expect(page.locator("#event-filter input[name=expression]")).to_have_value(
        "event.data.amount >"
    )


def test_replay_an_event_from_its_page(engine: tuple[str, httpx.Client], tab: Page) -> None:
    url, http = engine
    CALLS.clear()
    original = send(http, "ev/order", {"ref": "again", "amount": 7})
    first = run_of(http, original)
    http.get(f"/v1/runs/{first['run_id']}", params={"wait": 20})
    page = tab.page
    page.goto(f"{url}/#/events/{original}")
    expect(page.locator("#event-runs table.runs tbody tr")).to_have_count(1)
    page.locator("#replay-event").click()
    expect(page.locator("#confirm-replay")).to_be_visible()
    page.locator("#confirm-replay-event").click()
    page.wait_for_url(lambda at: "#/events/" in at and original not in at)
    new = page.url.rsplit("/", 1)[-1]
    expect(page.locator("#replay-of a")).to_have_attribute("href", f"#/events/{original}")
    expect(page.locator("h1")).to_contain_text("ev/order")
    # the replay triggered the function as a fresh event: its own run, on its page
    expect(page.locator("#event-runs table.runs tbody tr")).to_have_count(1, timeout=15_000)
    again = run_of(http, new)
    assert again["run_id"] != first["run_id"]
    wait_until(lambda: CALLS["again"] == 2 or None, message="the function to run again")
    shown = http.get(f"/v1/events/{new}").json()["data"]
    assert shown["replay_of"] == original
    assert shown["data"] == {"ref": "again", "amount": 7}
    tab.screenshot("event-replayed")

    page.goto(f"{url}/#/events/{original}")  # the original lists its replay
    expect(page.locator("#replays a")).to_have_attribute("href", f"#/events/{new}")
    page.goto(f"{url}/#/events")
    replayed = page.locator("table.events tbody tr", has=page.locator(".chip.replay"))
    expect(replayed).to_have_count(1)
    expect(replayed.locator("a[href^='#/events/']")).to_have_attribute("href", f"#/events/{new}")
