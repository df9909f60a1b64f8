"""The screenshots in docs/dashboard.md, taken by this run so they never go stale.

A small shop app runs a realistic mix against a real engine over HTTP (a completed order
with a retried step and a child run, a run waiting for an event, a sleeping run, a failed
run, a rate-limited event), then each page the docs show is opened in headless Chromium,
checked for what the picture is meant to show, and checked as a picture (a PNG as wide
as the page, not nearly empty). Only with ``STEPLINE_SCREENSHOTS=1`` are they saved over
the tracked ones in ``docs/img/dashboard/`` (commit them with the change that moved them);
otherwise they go to the test's temporary directory and the checkout stays as it was.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import stepline
import stepline.asgi
from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app
from tests._support.browser import Page, run_of, send
from tests._support.clients import closing_client
from tests._support.polling import wait_until
from tests._support.server_thread import ServerThread

pytestmark = [pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "img" / "dashboard"
#: set to 1 to save the pictures over the tracked ones in ``DOCS``
WRITE = "STEPLINE_SCREENSHOTS"
WIDE = {"width": 1280, "height": 860}
NARROW = {"width": 375, "height": 760}
#: every picture this module takes (docs/dashboard.md may show only these)
PICTURES = frozenset(
    {"runs", "runs-narrow", "run-completed", "run-failed", "run-waiting"}
    | {"run-step-panel", "run-history"}
    | {"functions", "function", "events", "event", "apps"}
    | {"stream", "crons", "queue"}  # taken by test_live_views_browser.py
)


def tour(client: stepline.Client) -> list[stepline.Function]:
    """The app the pictures show."""
    tries: dict[str, int] = {}

    @client.function(id="receipt", trigger=stepline.TriggerEvent(event="shop/receipt"))
    async def receipt(ctx: stepline.Context) -> dict[str, str]:
        return await ctx.step.run("render", lambda: {"pdf": f"receipt-{ctx.event.data['order']}"})

    @client.function(id="checkout", trigger=stepline.TriggerEvent(event="shop/order"), retries=2)
    async def checkout(ctx: stepline.Context) -> dict[str, Any]:
        order = ctx.event.data["order"]
        await ctx.step.run("reserve", lambda: {"reserved": order})

        def charge() -> dict[str, Any]:
            tries[order] = tries.get(order, 0) + 1
            if tries[order] == 1:
                raise ConnectionError("the payment provider timed out")
            return {"charged": 42.5}

        paid = await ctx.step.run("charge", charge)
        made = await ctx.step.invoke(
            "receipt", function=receipt, data={"order": order}, timeout=dt.timedelta(minutes=1)
        )
        await ctx.step.sleep("settle", dt.timedelta(milliseconds=300))
        return {"order": order, **paid, **made}

    @client.function(id="ship", trigger=stepline.TriggerEvent(event="shop/paid"))
    async def ship(ctx: stepline.Context) -> dict[str, Any]:
        await ctx.step.run("label", lambda: {"carrier": "post"})
        picked = await ctx.step.wait_for_event(
            "picked-up", event="shop/picked", timeout=dt.timedelta(hours=2)
        )
        return {"picked": picked is not None}

    @client.function(id="remind", trigger=stepline.TriggerEvent(event="shop/cart"))
    async def remind(ctx: stepline.Context) -> str:
        await ctx.step.sleep("wait-a-day", dt.timedelta(days=1))
        return "reminded"

    @client.function(id="refund", trigger=stepline.TriggerEvent(event="shop/refund"), retries=0)
    async def refund(ctx: stepline.Context) -> None:
        def fail() -> None:
            raise ValueError(f"order {ctx.event.data['order']} was never charged")

        await ctx.step.run("reverse", fail)

    @client.function(
        id="digest",
        trigger=stepline.TriggerEvent(event="shop/digest"),
        rate_limit=stepline.RateLimit(limit=1, period=dt.timedelta(minutes=1)),
    )
    async def digest(ctx: stepline.Context) -> str:
        return "sent"

    return [receipt, checkout, ship, remind, refund, digest]


@dataclasses.dataclass
class Shop:
    url: str
    http: httpx.Client
    completed: str
    failed: str
    waiting: str
    event: str


def _ended(http: httpx.Client, run_id: str) -> None:
    found = http.get(f"/v1/runs/{run_id}", params={"wait": "30"}).json()["data"]
    assert found["status"] in ("Completed", "Failed"), found


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    engine_server, app_server = ServerThread("engine"), ServerThread("tour-app")
    client = stepline.Client(
        app_id="shop",
        is_production=False,
        api_base_url=engine_server.url,
        event_api_base_url=engine_server.url,
    )
    settings = EngineSettings(
        database_url=str(tmp_path_factory.mktemp("screenshots") / "engine.db"),
        retry_scale=0.002,
        retry_jitter=0.0,
        poll_interval=0.05,
        app_urls=(f"{app_server.url}/api/inngest",),
    )
    with contextlib.ExitStack() as stop:
        stop.callback(engine_server.stop)
        app_server.start(closing_client(stepline.asgi.serve(client, tour(client)), client))
        stop.callback(app_server.stop)
        engine_server.start(build_app(Engine(settings)))
        http = stop.enter_context(httpx.Client(base_url=engine_server.url, timeout=40))
        wait_until(lambda: http.get("/v1/apps").json()["data"] or None, message="the app to sync")
        orders = [run_of(http, send(http, "shop/order", {"order": f"A-{n}"})) for n in range(3)]
        failed = run_of(http, send(http, "shop/refund", {"order": "A-9"}))
        waiting = run_of(http, send(http, "shop/paid", {"order": "A-1"}))
        run_of(http, send(http, "shop/cart", {"cart": "c-7"}))
        send(http, "shop/digest")
        limited = send(http, "shop/digest")
        for run in [*orders, failed]:
            _ended(http, run["run_id"])
        yield Shop(
            engine_server.url,
            http,
            orders[0]["run_id"],
            failed["run_id"],
            waiting["run_id"],
            limited,
        )


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the pictures go: ``DOCS`` when asked (``STEPLINE_SCREENSHOTS=1``), else a temp dir."""
    if os.environ.get(WRITE, "").strip() == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        return DOCS
    return tmp_path_factory.mktemp("dashboard-pictures")


def picture(tab: Page, name: str, folder: Path) -> Path:
    """Save the page as ``{folder}/{name}.png``; check it is a real picture."""
    assert name in PICTURES, name
    path = folder / f"{name}.png"
    tab.page.screenshot(path=str(path), full_page=True)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", name
    width, height = struct.unpack(">II", data[16:24])
    viewport = tab.page.viewport_size
    assert width == viewport["width"], (name, width)
    assert height >= 200, (name, height)
    assert len(data) > 8_000, f"{name}.png is nearly empty ({len(data)} bytes)"
    return path


def _sized(tab: Page, size: dict[str, int]) -> None:
    tab.page.set_viewport_size(size)


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def test_runs_list(shop: Shop, tab: Page, pictures: Path) -> None:
    tab.page.goto(f"{shop.url}/#/runs")
    expect(tab.page.locator(f"a[href='#/runs/{shop.completed}']")).to_be_visible()
    expect(tab.page.locator(f"a[href='#/runs/{shop.failed}']")).to_be_visible()
    picture(tab, "runs", pictures)


def test_runs_list_on_a_phone(shop: Shop, tab: Page, pictures: Path) -> None:
    _sized(tab, NARROW)
    tab.page.goto(f"{shop.url}/#/runs")
    expect(tab.page.locator(f"a[href='#/runs/{shop.completed}']")).to_be_visible()
    wide = tab.page.evaluate("document.documentElement.scrollWidth")
    assert wide <= NARROW["width"], f"the page scrolls sideways ({wide} px)"
    picture(tab, "runs-narrow", pictures)


def test_run_page_completed(shop: Shop, tab: Page, pictures: Path) -> None:
    tab.page.goto(f"{shop.url}/#/runs/{shop.completed}")
    expect(tab.page.locator("#run-output")).to_contain_text('"charged": 42.5')
    expect(tab.page.locator("#timeline")).to_contain_text("charge")
    picture(tab, "run-completed", pictures)


def test_run_page_failed(shop: Shop, tab: Page, pictures: Path) -> None:
    tab.page.goto(f"{shop.url}/#/runs/{shop.failed}")
    tab.page.locator("#timeline .step-name").first.click()
    expect(tab.page.locator("#timeline .error-box")).to_contain_text("was never charged")
    picture(tab, "run-failed", pictures)


def test_run_page_waiting(shop: Shop, tab: Page, pictures: Path) -> None:
    def waits() -> bool | None:
        steps = shop.http.get(f"/v1/runs/{shop.waiting}/steps").json()["data"]
        return True if any(s["status"] == "Waiting" for s in steps) else None

    wait_until(waits, message="the shipping run to wait")
    tab.page.goto(f"{shop.url}/#/runs/{shop.waiting}")
    expect(tab.page.locator("#timeline details.step", has_text="picked-up")).to_be_visible()
    picture(tab, "run-waiting", pictures)


def test_run_page_step_panel_and_history(shop: Shop, tab: Page, pictures: Path) -> None:
    page = tab.page
    page.goto(f"{shop.url}/#/runs/{shop.completed}")
    page.locator("#trace button.trace-name", has_text="charge").click()
    expect(page.locator("#step-panel-output")).to_contain_text('"charged": 42.5')
    expect(page.locator("#step-panel-attempts tbody tr")).to_have_count(2)
    picture(tab, "run-step-panel", pictures)
    page.keyboard.press("Escape")
    page.locator("#run-history > summary").click()
    expect(page.locator("#history-list tbody tr").last).to_have_attribute("data-type", "completed")
    picture(tab, "run-history", pictures)


def test_functions_and_function_page(shop: Shop, tab: Page, pictures: Path) -> None:
    tab.page.goto(f"{shop.url}/#/functions")
    expect(tab.page.locator("a[href='#/functions/shop-checkout']").first).to_be_visible()
    picture(tab, "functions", pictures)
    tab.page.goto(f"{shop.url}/#/functions/shop-checkout")
    expect(tab.page.locator("h1")).to_contain_text("checkout")
    tab.page.check("input[name=metrics-window][value='1h']")
    expect(tab.page.locator("svg").first).to_be_visible()
    picture(tab, "function", pictures)


def test_events_and_event_page(shop: Shop, tab: Page, pictures: Path) -> None:
    tab.page.goto(f"{shop.url}/#/events")
    expect(tab.page.locator("main")).to_contain_text("shop/order")
    picture(tab, "events", pictures)
    tab.page.goto(f"{shop.url}/#/events/{shop.event}")
    expect(tab.page.locator("main")).to_contain_text("shop/digest")
    expect(tab.page.locator("main")).to_contain_text("Rate limited")
    picture(tab, "event", pictures)


def test_apps(shop: Shop, tab: Page, pictures: Path) -> None:
    tab.page.goto(f"{shop.url}/#/apps")
    expect(tab.page.locator("main")).to_contain_text("shop")
    picture(tab, "apps", pictures)


def test_every_picture_in_the_docs_is_taken_here() -> None:
    """docs/dashboard.md shows only pictures this module takes (so none can go stale)."""
    text = (ROOT / "docs" / "dashboard.md").read_text("utf-8")
    shown = set(re.findall(r"img/dashboard/([\w-]+)\.png", text))
    assert not shown - PICTURES, f"shown, but no test takes them: {sorted(shown - PICTURES)}"
    assert not PICTURES - shown, f"taken, but not shown: {sorted(PICTURES - shown)}"
    for name in sorted(PICTURES):  # the tracked copies the docs show are pictures too
        assert (DOCS / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
