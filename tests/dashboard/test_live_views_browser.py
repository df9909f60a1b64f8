"""The Stream, Crons and Queue pages in headless Chromium, on both stores.

A real engine over HTTP serves an app in-process. The stream shows an event sent after
the page opened, without a reload, with the run it started; a click shows that run beside
the stream; the engine's own events (a run's end) stay hidden until the toggle, which the
URL remembers. The crons page lists a cron trigger's next three ticks in UTC; the queue
page counts one call in flight and two waiting on a concurrency limit of 1, and two runs
held by a throttle. With ``STEPLINE_SCREENSHOTS=1`` the pictures docs/dashboard.md shows
are saved over the tracked ones in ``docs/img/dashboard/``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import threading
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

DOCS = Path(__file__).resolve().parents[2] / "docs" / "img" / "dashboard"
GATE = threading.Event()


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def functions(client: stepline.Client) -> list[stepline.Function]:
    @client.function(id="order", trigger=stepline.TriggerEvent(event="lb/order"))
    async def order(ctx: stepline.Context) -> int:
        return int(ctx.event.data.get("amount", 0))

    @client.function(id="nightly", trigger=stepline.TriggerCron(cron="30 2 * * *"))
    async def nightly(ctx: stepline.Context) -> str:
        return "done"

    @client.function(id="export", trigger=stepline.TriggerEvent(event="lb/export"), concurrency=1)
    async def export(ctx: stepline.Context) -> None:
        async def held() -> None:
            while not GATE.is_set():
                await asyncio.sleep(0.02)

        await ctx.step.run("held", held)

    @client.function(
        id="mail",
        trigger=stepline.TriggerEvent(event="lb/mail"),
        throttle=stepline.Throttle(limit=1, period=dt.timedelta(hours=1)),
    )
    async def mail(ctx: stepline.Context) -> str:
        return "sent"

    return [order, nightly, export, mail]


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, httpx.Client]]:
    if request.param == "sqlite":
        database = str(tmp_path / "engine.db")
    else:
        database = request.getfixturevalue("postgres_url")
    server = EngineServer(database, poll_interval=0.05, retry_scale=0.0, retry_jitter=0.0)
    client = stepline.Client("lb", is_production=False, api_base_url=server.url)
    server.serve(client, functions(client))
    GATE.clear()
    try:
        with server, httpx.Client(base_url=server.url, timeout=30) as http:
            yield server.url, http
    finally:
        GATE.set()  # a held call ends, so the engine stops at once


def picture(tab: Page, name: str, tmp_path: Path) -> None:
    """Save the page as a PNG: over the docs' copy with ``STEPLINE_SCREENSHOTS=1``."""
    folder = DOCS if os.environ.get("STEPLINE_SCREENSHOTS", "").strip() == "1" else tmp_path
    path = folder / f"{name}.png"
    tab.page.screenshot(path=str(path), full_page=True)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", name
    assert len(data) > 8_000, f"{name}.png is nearly empty"


def test_the_stream_shows_new_events_with_their_runs(
    engine: tuple[str, httpx.Client], tab: Page, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url, http = engine
    earlier = send(http, "lb/order", {"amount": 1})
    http.get(f"/v1/runs/{run_of(http, earlier)['run_id']}", params={"wait": 20})
    page = tab.page
    page.goto(f"{url}/#/events")
    page.locator("a[href='#/stream']", has_text="the event stream").click()
    expect(page.locator("h1")).to_have_text("Event stream")
    rows = page.locator("#stream-list li.stream-event")
    expect(rows.filter(has_text="lb/order")).to_have_count(1)
    # the run's end is an event of the engine's own: hidden by default
    expect(rows.filter(has_text="inngest/function.finished")).to_have_count(0)

    sent = send(http, "lb/order", {"amount": 42})  # after the page opened
    row = page.locator(f"#stream-list li[data-id='{sent}']")
    expect(row).to_be_visible()
    expect(rows.first).to_have_attribute("data-id", sent)  # newest on top
    expect(row.locator("code.preview")).to_have_text('{"amount":42}')
    run = run_of(http, sent)
    link = row.locator(f"a.stream-run[href='#/runs/{run['run_id']}']")
    expect(link).to_contain_text("lb-order")
    expect(link.locator(".badge")).to_have_text("Completed")
    assert page.url.endswith("#/stream")

    row.locator("strong.stream-name").click()
    side = page.locator("#stream-runs")
    expect(side.locator("h2")).to_have_text("lb/order")
    expect(side.locator(f"table.runs a[href='#/runs/{run['run_id']}']")).to_be_visible()
    expect(side.locator("table.runs")).to_contain_text("Completed")
    if request.node.callspec.params["engine"] == "sqlite":
        picture(tab, "stream", tmp_path)

    page.locator("#show-internal").check()
    page.wait_for_url(re.compile(r"#/stream\?internal=true$"))
    expect(rows.filter(has_text="inngest/function.finished").first).to_be_visible()
    page.reload()  # the URL keeps the choice
    expect(page.locator("#show-internal")).to_be_checked()
    expect(rows.filter(has_text="inngest/function.finished").first).to_be_visible()


def test_the_crons_page_shows_next_ticks(
    engine: tuple[str, httpx.Client], tab: Page, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url, _ = engine
    now = dt.datetime.now(dt.timezone.utc)
    tick = now.replace(hour=2, minute=30, second=0, microsecond=0)
    if tick <= now:
        tick += dt.timedelta(days=1)
    wanted = [(tick + dt.timedelta(days=n)).strftime("%Y-%m-%d %H:%M UTC") for n in range(3)]
    page = tab.page
    page.goto(f"{url}/#/crons")
    row = page.locator("table.crons tbody tr", has=page.locator("a[href='#/functions/lb-nightly']"))
    expect(row).to_have_count(1)
    expect(row.locator("code")).to_have_text("30 2 * * *")
    expect(row.locator("ul.ticks time.utc")).to_have_text(wanted)
    expect(row.locator("ul.ticks .local")).to_have_count(3)
    expect(row.locator(".missed-none")).to_have_text("none")
    expect(row).to_contain_text("no runs yet")
    if request.node.callspec.params["engine"] == "sqlite":
        picture(tab, "crons", tmp_path)


def test_the_queue_page_shows_in_flight_waiting_and_throttled(
    engine: tuple[str, httpx.Client], tab: Page, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url, http = engine
    for n in range(3):
        send(http, "lb/export", {"n": n})
        send(http, "lb/mail", {"n": n})
    page = tab.page
    page.goto(f"{url}/#/queue")
    export = page.locator(
        "table.queue tbody tr", has=page.locator("a[href='#/functions/lb-export']")
    )
    expect(export.locator(".count.in-flight")).to_have_text("1", timeout=20_000)
    expect(export.locator(".count.waiting")).to_have_text("2")
    expect(export.locator("ul.limits")).to_have_text("concurrency 1")
    mail = page.locator("table.queue tbody tr", has=page.locator("a[href='#/functions/lb-mail']"))
    expect(mail.locator(".count.throttled")).to_have_text("2")
    expect(mail.locator("ul.limits")).to_have_text("throttle 1 / 1 h")
    key = page.locator("table.queue-keys tbody tr", has_text="fn:lb-export:")
    expect(key.locator(".count.in-flight")).to_have_text("1 / 1")
    expect(key.locator(".count.waiting")).to_have_text("2")
    if request.node.callspec.params["engine"] == "sqlite":
        picture(tab, "queue", tmp_path)

    GATE.set()  # the calls end: the page follows without a reload
    expect(export.locator(".count.in-flight")).to_have_text("0", timeout=20_000)
    expect(export.locator(".count.waiting")).to_have_text("0")
    expect(page.locator("#queue-keys p.empty")).to_be_visible()
    wait_until(
        lambda: http.get("/v1/queue").json()["data"]["keys"] == [] or None,
        message="the keys to empty",
    )
