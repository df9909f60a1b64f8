"""The function page's metrics charts in headless Chromium, on both stores.

Runs are stored at known times relative to now (straight through ``Tx``), an engine
serves the dashboard over HTTP, and the page's SVG is read back: every bar and point
carries its bucket's start and value, which must be the REST answer's; the captions sum
the charts up in words; the window selector redraws the charts for another window.
Without a window in the URL, the page shows the smallest that holds the function's
history, and says so.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app
from stepline.engine._model import AppRecord, FunctionRecord, Job, JobKind, Run, RunStatus
from stepline.engine._store import Tx, store_for
from tests._support.aio import arun
from tests._support.browser import Page
from tests._support.polling import wait_until
from tests._support.server_thread import ServerThread

pytestmark = [pytest.mark.browser]

FN = "shop-checkout"
#: (minutes ago created, seconds to first call, seconds to end, status) of each run
RUNS = [
    (12, 1, 30, RunStatus.COMPLETED),
    (14, 2, 45, RunStatus.COMPLETED),
    (15, 1, 20, RunStatus.FAILED),
    (25, 40, 90, RunStatus.COMPLETED),
    (26, 1, 10, RunStatus.CANCELLED),
    (38, 3, 60, RunStatus.FAILED),
    (180, 1, 5, RunStatus.COMPLETED),  # in the last 24 hours, not the last hour
    (2 * 1440, 1, 5, RunStatus.COMPLETED),  # in the last 7 days only
]
#: runs parked behind a concurrency limit (their recheck an hour away: no lease meanwhile)
PARKED = 3


def _seed(now: float) -> Any:
    def write(tx: Tx) -> None:
        config = {"id": FN, "name": "checkout", "triggers": [{"event": "shop/order"}]}
        app = AppRecord("shop", "http://127.0.0.1:9/api", "py:stepline", None, now, "x")
        tx.apps.put_app(app, [FunctionRecord(FN, "shop", "checkout", config, now)])
        for i, (ago, start, end, status) in enumerate(RUNS):
            created = now - ago * 60
            tx.insert_run(
                Run(f"R{i}", FN, "shop", status, [], [], created, created + start, created + end)
            )
        for i in range(PARKED):
            run_id = f"P{i}"
            waiting = {"reason": "concurrency", "key": f"fn:{FN}:", "since": now - 60}
            tx.insert_run(
                Run(run_id, FN, "shop", RunStatus.QUEUED, [], [], now - 300 + i, waiting=waiting)
            )
            tx.queue.enqueue(Job(f"J{i}", JobKind.EXECUTE, now + 3600, run_id=run_id))
            tx.queue.park_job(f"J{i}", f"fn:{FN}:", now + 3600)

    return write


@pytest.fixture(params=["sqlite", "postgres"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An engine over HTTP whose store holds ``RUNS`` and the parked runs; its URL."""
    if request.param == "sqlite":
        url = str(tmp_path / "e.db")
    else:
        url = request.getfixturevalue("postgres_url")
    settings = EngineSettings(database_url=url)

    async def fill() -> None:
        store = store_for(settings)
        await store.open()
        try:
            await store.atomic(_seed(time.time()))
        finally:
            await store.close()

    arun(fill(), own_thread=True)
    server = ServerThread("engine-metrics")
    server.start(build_app(Engine(settings)))
    try:
        yield server.url
    finally:
        server.stop()


#: every bar and point drawn, per chart: [chart, series, bucket start, value]
_DRAWN = """() => [...document.querySelectorAll('svg[data-chart] [data-series]')].map((m) => [
  m.closest('svg').dataset.chart, m.dataset.series, m.dataset.start, Number(m.dataset.value),
  m.querySelector('title').textContent])"""


def _expected(data: dict[str, Any]) -> set[tuple[str, str, str, float]]:
    """What the charts must draw for the API's answer: a mark per non-empty value."""
    charts = {
        "started": ["started"],
        "ended": ["completed", "failed", "cancelled"],
        "failure-rate": ["failure_rate"],
        "duration": ["duration_p50_ms", "duration_p95_ms"],
        "queued": ["queued"],
        "delay": ["delay_p50_ms", "delay_p95_ms"],
    }
    bars = {"started", "ended", "queued"}
    out = set()
    for bucket in data["buckets"]:
        for chart, keys in charts.items():
            for key in keys:
                value = bucket[key]
                if value is None or (chart in bars and value == 0):
                    continue
                out.add((chart, key, bucket["start"], float(value)))
    return out


def _drawn(tab: Page) -> tuple[set[tuple[str, str, str, float]], list[list[Any]]]:
    marks = tab.page.evaluate(_DRAWN)
    return {(c, s, start, float(v)) for c, s, start, v, _ in marks}, marks


def test_the_function_page_draws_the_apis_figures_and_switches_windows(
    served: str, tab: Page
) -> None:
    page = tab.page
    page.goto(f"{served}/#/functions/{FN}?window=24h")
    page.locator('figure[data-chart="started"] svg rect.bar').first.wait_for()
    with httpx.Client(base_url=served, timeout=30) as http:

        def metrics(window: str) -> dict[str, Any]:
            answer = http.get(f"/v1/functions/{FN}/metrics", params={"window": window})
            assert answer.status_code == 200, answer.text
            return dict(answer.json()["data"])

        day = metrics("24h")
        assert day["totals"]["started"] == len(RUNS) - 1 + PARKED
        drawn, marks = wait_until(
            lambda: d if (d := _drawn(tab))[0] == _expected(day) else None,
            message="the 24 h charts to match the API",
        )
        assert sum(m[3] for m in drawn if m[0] == "started") == day["totals"]["started"]
        # hover titles name the bucket's time span and the value
        for chart, series, _start, value, title in marks:
            if chart == "started":
                assert title.endswith(f": {value} started"), title
            if series == "failed":
                assert title.endswith(f": {value} failed"), title
        # the queue now, in words
        assert page.locator('[data-figure="queued_runs"]').inner_text() == str(PARKED)
        held = page.locator('[data-figure="held"] [data-reason="concurrency"]')
        assert held.inner_text() == f"concurrency: {PARKED}"
        jobs = page.locator('[data-figure="jobs"]').inner_text()
        assert f"{PARKED} parked" in jobs
        # each chart is an image named by its caption, which sums it up
        started = page.locator('figure[data-chart="started"]')
        caption_id = started.locator("svg").get_attribute("aria-labelledby")
        assert started.locator("svg").get_attribute("role") == "img"
        caption = page.locator(f"#{caption_id}").inner_text()
        assert f"{day['totals']['started']} in all" in caption
        rate = page.locator('figure[data-chart="failure-rate"] figcaption').inner_text()
        assert "Failure rate" in rate
        tab.screenshot("function-metrics")

        shown = page.locator("#metrics-shown").inner_text()
        assert shown.startswith("Showing the last 24 hours in 48 bars of 30 minutes"), shown
        assert "as chosen" in shown

        # the window selector: the last hour leaves the older runs out, 7 days takes them in
        page.locator('.metrics-window input[value="1h"]').check()
        hour = metrics("1h")
        assert hour["totals"]["started"] == len(RUNS) - 2 + PARKED
        wait_until(
            lambda: _drawn(tab)[0] == _expected(hour) or None, message="the 1 h charts to match"
        )
        assert "window=1h" in page.evaluate("location.hash")
        page.locator('.metrics-window input[value="7d"]').check()
        week = metrics("7d")
        assert week["totals"]["started"] == len(RUNS) + PARKED
        wait_until(
            lambda: _drawn(tab)[0] == _expected(week) or None, message="the 7 d charts to match"
        )
        # a reload keeps the window chosen
        page.reload()
        page.locator('figure[data-chart="started"] svg rect.bar').first.wait_for()
        assert page.locator('.metrics-window input[value="7d"]').is_checked()
        # so does pausing the function from its page (which reloads the page)
        page.locator(f'button.pause-fn[data-function="{FN}"]').click()
        page.locator(f'button.confirm-pause[data-function="{FN}"]').click()
        page.locator(f'[data-state="{FN}"] .badge.s-paused').wait_for()
        page.locator('figure[data-chart="started"] svg rect.bar').first.wait_for()
        assert page.locator('.metrics-window input[value="7d"]').is_checked()


def test_a_young_functions_page_shows_the_hour_its_runs_fill(tmp_path: Path, tab: Page) -> None:
    """Runs from the last 20 minutes: the page picks the hour, in minute bars, not a day."""
    settings = EngineSettings(database_url=str(tmp_path / "e.db"))
    minutes = (2, 5, 9, 13, 17, 20)

    def write(tx: Tx) -> None:
        now = time.time()
        config = {"id": FN, "name": "checkout", "triggers": [{"event": "shop/order"}]}
        app = AppRecord("shop", "http://127.0.0.1:9/api", "py:stepline", None, now, "x")
        tx.apps.put_app(app, [FunctionRecord(FN, "shop", "checkout", config, now - 1500)])
        for i, ago in enumerate(minutes):
            created = now - ago * 60
            tx.insert_run(
                Run(
                    f"Y{i}",
                    FN,
                    "shop",
                    RunStatus.COMPLETED,
                    [],
                    [],
                    created,
                    created + 1,
                    created + 3,
                )
            )

    async def fill() -> None:
        store = store_for(settings)
        await store.open()
        try:
            await store.atomic(write)
        finally:
            await store.close()

    arun(fill(), own_thread=True)
    server = ServerThread("engine-young")
    server.start(build_app(Engine(settings)))
    try:
        page = tab.page
        page.goto(f"{server.url}/#/functions/{FN}")
        page.locator('figure[data-chart="started"] svg rect.bar').first.wait_for()
        shown = page.locator("#metrics-shown").inner_text()
        assert shown.startswith("Showing the last hour in 60 bars of 1 minute"), shown
        assert "holds all of this function's runs" in shown
        assert page.locator('.metrics-window input[value="1h"]').is_checked()
        # one bar per run's minute, spread over the chart rather than piled at its edge
        xs = page.eval_on_selector_all(
            'figure[data-chart="started"] svg rect.bar',
            "bars => bars.map((b) => Number(b.getAttribute('x')))",
        )
        assert len(xs) == len(minutes), xs
        assert max(xs) - min(xs) > 100, xs  # of 574 units: 18 minutes of 60
        assert "window=" not in page.evaluate("location.hash")  # the pick is not a choice
        # a choice goes in the URL and the line says it was chosen
        page.locator('.metrics-window input[value="6h"]').check()
        expect(page.locator("#metrics-shown")).to_contain_text("6 hours")
        assert "as chosen" in page.locator("#metrics-shown").inner_text()
        assert "window=6h" in page.evaluate("location.hash")
    finally:
        server.stop()
