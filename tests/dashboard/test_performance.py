"""The dashboard's queries on 10,000 runs: the list and run pages must stay fast.

The store is seeded directly (no SDK calls); the API is called in-process, so the figures
are the engine's own time per request. The bounds asserted are deliberately generous (a
shared CI machine); the measured figures are printed and written to
``artifacts/dashboard-performance.txt`` (and quoted in docs/dashboard.md).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app
from stepline.engine._store import store_for
from tests._support.aio import arun
from tests._support.browser import Page
from tests._support.polling import wait_until
from tests._support.server_thread import ServerThread

from .seed import FUNCTIONS, seed

pytestmark = [pytest.mark.slow]

RUNS = 10_000
STEPS = 5
REPEAT = 25
#: Per request, 95th percentile; measured figures are ~100x below this.
BOUND_MS = 250.0
#: A page in the browser, from navigation until its table is drawn.
PAGE_BOUND_MS = 3000.0
ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "artifacts" / "dashboard-performance.txt"


def report(capsys: pytest.CaptureFixture[str], title: str, lines: list[str]) -> None:
    text = "\n".join([title, *lines, ""])
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    with REPORT.open("a") as out:
        out.write(text + "\n")
    with capsys.disabled():
        print("\n" + text)


async def measure(http: httpx.AsyncClient, paths: list[str]) -> list[float]:
    """Milliseconds per round of ``paths`` (a page's requests), ``REPEAT`` times."""
    times = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        for path in paths:
            answer = await http.get(path)
            assert answer.status_code == 200, (path, answer.text)
        times.append((time.perf_counter() - start) * 1000)
    return times


def analyze(url: str) -> None:
    """Postgres' planner statistics for the freshly seeded tables."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")


def p95(times: list[float]) -> float:
    return sorted(times)[int(len(times) * 0.95) - 1]


# seeding 10,000 runs with their steps takes most of it: about 30 s on Postgres on an idle
# 2-core machine, twice that beside the rest of the suite
@pytest.mark.timeout(180)
@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_list_and_run_pages_answer_fast_on_10k_runs(
    store: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = str(tmp_path / "e.db") if store == "sqlite" else request.getfixturevalue("postgres_url")

    async def scenario() -> dict[str, list[float]]:
        engine = Engine(EngineSettings(database_url=url))
        await engine.start(worker=False, sync=False)
        try:
            now = time.time()
            ids = await seed(engine.store, runs=RUNS, steps=STEPS, now=now, span=7 * 86_400)
            if store == "postgres":
                analyze(url)  # as autovacuum does soon after a bulk load
            transport = httpx.ASGITransport(app=build_app(engine))
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
                middle = ids[len(ids) // 2]
                run = (await http.get(f"/v1/runs/{middle}")).json()["data"]
                tries = (await http.get(f"/v1/runs/{middle}/attempts")).json()["data"]
                assert [a["status"] for a in tries] == ["Failed", "Failed", "Completed"]
                kids = await http.get("/v1/runs", params={"parent_run_id": middle})
                assert [k["parent_run_id"] for k in kids.json()["data"]] == [middle]
                cases: dict[str, list[str]] = {
                    "runs list, newest 50": ["/v1/runs?limit=50"],
                    "runs list, one function": [f"/v1/runs?limit=50&function_id={FUNCTIONS[3]}"],
                    "runs list, failed only": ["/v1/runs?limit=50&status=Failed"],
                    "runs list, last hour": [f"/v1/runs?limit=50&since={now - 3600}"],
                    "runs list, by event id": [f"/v1/runs?event_id={run['event_ids'][0]}"],
                    "runs list, oldest page": [f"/v1/runs?limit=50&cursor={ids[50]}"],
                    "run page (run + steps)": [f"/v1/runs/{middle}", f"/v1/runs/{middle}/steps"],
                    # the middle run retried a step and invoked a child (seed.py): the run
                    # page's requests for its trace and attempts
                    "run page, all requests": [
                        f"/v1/runs/{middle}",
                        f"/v1/runs/{middle}/steps",
                        f"/v1/runs/{middle}/attempts",
                        f"/v1/runs?parent_run_id={middle}&limit=100",
                    ],
                    "run page, attempts": [f"/v1/runs/{middle}/attempts"],
                    "run page, child runs": [f"/v1/runs?parent_run_id={middle}&limit=100"],
                    "events list, newest 50": ["/v1/events?limit=50"],
                    "function metrics, 24 h": [f"/v1/functions/{FUNCTIONS[3]}/metrics"],
                    "function metrics, 7 d": [f"/v1/functions/{FUNCTIONS[3]}/metrics?window=7d"],
                    # run id search, live runs' sub-states, event search by payload
                    "runs list, by run id": [f"/v1/runs?run_id={middle}"],
                    "runs list, id prefix": [f"/v1/runs?limit=50&run_id={middle[:7]}"],
                    "runs list, running only": ["/v1/runs?limit=50&status=Running"],
                    "events list, one name": [f"/v1/events?limit=50&name=load/{FUNCTIONS[3]}"],
                    "events, payload search": [
                        "/v1/events?limit=50&expression=event.data.order%20%3C%2010000"
                    ],
                }
                return {name: await measure(http, paths) for name, paths in cases.items()}
        finally:
            await engine.stop()

    figures = arun(scenario(), own_thread=True)
    lines = [
        f"  {name:26} median {statistics.median(t):6.1f} ms   p95 {p95(t):6.1f} ms"
        for name, t in figures.items()
    ]
    report(capsys, f"{store}: {RUNS} runs x {STEPS} steps, {REPEAT} rounds", lines)
    slow = {name: p95(t) for name, t in figures.items() if p95(t) > BOUND_MS}
    assert not slow, f"slower than {BOUND_MS} ms at p95: {slow}"


@pytest.mark.browser
def test_pages_load_fast_in_the_browser_on_10k_runs(
    tmp_path: Path, tab: Page, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = EngineSettings(database_url=str(tmp_path / "e.db"))

    async def fill() -> list[str]:
        store = store_for(settings)
        await store.open()
        try:
            return await seed(store, runs=RUNS, steps=STEPS, now=time.time(), span=86_400)
        finally:
            await store.close()

    ids = arun(fill(), own_thread=True)
    server = ServerThread("engine-10k")
    server.start(build_app(Engine(settings)))
    page = tab.page

    def timed(url: str, ready: Callable[[], Any]) -> float:
        start = time.perf_counter()
        page.goto(url)
        wait_until(ready, message=url, timeout=20)
        return (time.perf_counter() - start) * 1000

    try:
        rows = page.locator("table.runs tbody tr")
        steps = page.locator("#timeline details.step")
        first_list = timed(f"{server.url}/#/runs", lambda: rows.count() == 50 or None)
        lists = [
            timed(f"{server.url}/?r={i}#/runs", lambda: rows.count() == 50 or None)
            for i in range(5)
        ]
        tab.screenshot("runs-list-10k")
        run_pages = [
            timed(
                f"{server.url}/?r={i}#/runs/{ids[i * 997]}", lambda: steps.count() == STEPS or None
            )
            for i in range(5)
        ]
    finally:
        server.stop()
    lines = [
        f"  runs list page (cold)      {first_list:6.0f} ms",
        f"  runs list page             median {statistics.median(lists):6.0f} ms",
        f"  run page                   median {statistics.median(run_pages):6.0f} ms",
    ]
    report(capsys, f"browser (headless Chromium, sqlite): {RUNS} runs, navigation to drawn", lines)
    assert max(lists + run_pages) < PAGE_BOUND_MS
