"""The runs list in headless Chromium, on both stores.

A real engine over HTTP serves an app in-process. The list names each run's trigger
event (linking to it), says what a live run waits in (sleeping, waiting for an event),
shows relative times that move on with the live view (the exact time in the tooltip),
finds runs by their id (a whole id opens the run, its beginning filters the list), and
on a 375 px wide phone shows its rows as cards without scrolling the page sideways,
where ticking runs and cancelling them still works.
"""

from __future__ import annotations

import datetime as dt
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


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def functions(client: stepline.Client) -> list[stepline.Function]:
    @client.function(id="nap", trigger=stepline.TriggerEvent(event="list/nap"))
    async def nap(ctx: stepline.Context) -> None:
        await ctx.step.sleep("snooze", dt.timedelta(hours=1))

    @client.function(id="wait", trigger=stepline.TriggerEvent(event="list/wait"))
    async def wait(ctx: stepline.Context) -> None:
        await ctx.step.wait_for_event("payment", event="list/paid", timeout="1h")

    @client.function(id="done", trigger=stepline.TriggerEvent(event="list/done"))
    async def done(ctx: stepline.Context) -> str:
        return "ok"

    return [nap, wait, done]


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, httpx.Client]]:
    if request.param == "sqlite":
        database = str(tmp_path / "engine.db")
    else:
        database = request.getfixturevalue("postgres_url")
    server = EngineServer(database, poll_interval=0.05, retry_scale=0.0, retry_jitter=0.0)
    client = stepline.Client("list", is_production=False, api_base_url=server.url)
    server.serve(client, functions(client))
    with server, httpx.Client(base_url=server.url, timeout=30) as http:
        yield server.url, http


def waiting_reason(http: httpx.Client, run_id: str) -> str | None:
    [run] = http.get("/v1/runs", params={"run_id": run_id}).json()["data"]
    return (run["waiting"] or {}).get("reason")


def started(http: httpx.Client, name: str, reason: str | None) -> tuple[str, str]:
    """An event sent and its run, once that run is in the state ``reason`` names."""
    event_id = send(http, name)
    run_id = str(run_of(http, event_id)["run_id"])
    if reason is None:
        http.get(f"/v1/runs/{run_id}", params={"wait": 20})
    else:
        wait_until(lambda: waiting_reason(http, run_id) == reason or None, message=reason)
    return event_id, run_id


#: what sticks out of the screen, for the failure message
WIDER = """[...document.querySelectorAll("body *")]
  .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 0.5)
  .slice(0, 8)
  .map((el) => `${el.tagName}.${el.className}#${el.id}: ${el.getBoundingClientRect().right}`)"""


def row(page: Any, run_id: str) -> Any:
    return page.locator("table.runs tbody tr", has=page.locator(f"a[href='#/runs/{run_id}']"))


def test_names_trigger_events_waiting_states_and_relative_times(
    engine: tuple[str, httpx.Client], tab: Page
) -> None:
    url, http = engine
    nap_event, nap = started(http, "list/nap", "sleeping")
    _, waiting = started(http, "list/wait", "waiting_for_event")
    _, done = started(http, "list/done", None)
    page = tab.page
    page.goto(f"{url}/#/runs")

    napping = row(page, nap)
    trigger = napping.locator("a.event-name")
    expect(trigger).to_have_text("list/nap")
    expect(trigger).to_have_attribute("href", f"#/events/{nap_event}")
    expect(trigger).to_have_attribute("title", nap_event)
    chip = napping.locator(".chip.waiting")
    expect(chip).to_have_text("Sleeping")
    expect(chip).to_have_attribute("title", re.compile(r"step snooze · until "))
    expect(row(page, waiting).locator(".chip.waiting")).to_have_text("Waiting for event")
    expect(row(page, waiting).locator(".chip.waiting")).to_have_attribute(
        "title", re.compile("event list/paid")
    )
    expect(row(page, done).locator(".chip.waiting")).to_have_count(0)
    expect(row(page, done).locator("a.event-name")).to_have_text("list/done")

    # relative times, the exact one in the tooltip
    created = napping.locator("time.ago")
    expect(created).to_have_text(re.compile(r"^(just now|\d+ s ago)$"))
    iso = http.get(f"/v1/runs/{nap}").json()["data"]["created_at"]
    expect(created).to_have_attribute("title", re.compile(re.escape(f"({iso})")))
    tab.screenshot("runs-list-states")
    # the live view moves them on, even on a page of ended runs it does not redraw
    page.goto(f"{url}/#/runs?function_id=list-done")
    created = row(page, done).locator("time.ago")
    expect(created).to_have_text(re.compile(r"^(just now|\d+ s ago)$"))
    earlier = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=3, seconds=5)).isoformat()
    created.evaluate("(el, iso) => el.setAttribute('datetime', iso)", earlier)
    expect(created).to_have_text("3 min ago")  # the next live refresh, no reload


def test_search_by_run_id_opens_a_run_or_filters_by_its_beginning(
    engine: tuple[str, httpx.Client], tab: Page
) -> None:
    url, http = engine
    ids = [started(http, "list/done", None)[1] for _ in range(3)]
    page = tab.page
    page.goto(f"{url}/#/runs")
    search = page.locator('#run-filters input[name="run_id"]')

    search.fill(ids[1].lower())  # any case: ids are upper case
    page.locator("#run-filters button[type=submit]").click()
    page.wait_for_url(re.compile(f"#/runs/{ids[1]}$"))
    expect(page.locator("h1")).to_contain_text("list-done")  # the run page

    page.goto(f"{url}/#/runs")
    prefix = ids[0][:8]
    search.fill(prefix)
    page.locator("#run-filters button[type=submit]").click()
    page.wait_for_url(re.compile(f"run_id={prefix}"))
    # the three may straddle a second (the prefix's last character): only those sharing it
    sharing = [i for i in ids if i.startswith(prefix)]
    for run_id in sharing:
        expect(row(page, run_id)).to_have_count(1)
    shown = page.locator("table.runs tbody tr a[href^='#/runs/']").evaluate_all(
        "links => links.map((a) => a.getAttribute('href').slice('#/runs/'.length))"
    )
    assert shown, "no runs listed"
    assert all(run_id.startswith(prefix) for run_id in shown), (prefix, shown)

    search.fill("7ZZZZZZZZZ")
    page.locator("#run-filters button[type=submit]").click()
    expect(page.locator("p.empty")).to_have_text("No runs match these filters.")
    search.fill("not-an-id")  # refused in the form: nothing navigates
    page.locator("#run-filters button[type=submit]").click()
    assert search.evaluate("el => el.validity.customError") is True
    assert "run_id=7ZZZZZZZZZ" in page.url


def test_on_a_phone_rows_are_cards_without_sideways_scroll_and_bulk_selection_works(
    engine: tuple[str, httpx.Client], tab: Page
) -> None:
    url, http = engine
    naps = [started(http, "list/nap", "sleeping")[1] for _ in range(2)]
    started(http, "list/wait", "waiting_for_event")
    page = tab.page
    page.set_viewport_size({"width": 375, "height": 800})
    page.goto(f"{url}/#/runs")
    expect(page.locator("table.runs tbody tr")).to_have_count(3)
    expect(page.locator("table.runs thead")).to_be_hidden()
    fits = "document.documentElement.scrollWidth <= window.innerWidth"
    assert page.evaluate(fits), page.evaluate(WIDER)
    # the filter form wraps onto several lines within the screen
    form = page.locator("#run-filters").bounding_box()
    assert form is not None
    assert form["x"] >= 0
    assert form["x"] + form["width"] <= 375
    assert form["height"] > 80
    # each card labels its values
    label = row(page, naps[0]).locator("td").nth(3)
    assert label.evaluate("el => getComputedStyle(el, '::before').content") == '"Trigger"'
    tab.screenshot("runs-list-phone")

    for run_id in naps:
        page.locator(f'input.pick[value="{run_id}"]').check()
    expect(page.locator("#bulk-count")).to_have_text("2 selected")
    page.locator("#cancel-selected").click()
    expect(page.locator("#bulk-status")).to_contain_text("Cancelled 2 of 2.")
    for run_id in naps:
        assert http.get(f"/v1/runs/{run_id}").json()["data"]["status"] == "Cancelled"
    assert page.evaluate(fits), page.evaluate(WIDER)

    page.goto(f"{url}/#/events")
    expect(page.locator("table.events tbody tr").first).to_be_visible()
    assert page.evaluate(fits), page.evaluate(WIDER)
