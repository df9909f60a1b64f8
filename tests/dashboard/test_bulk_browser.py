"""Bulk actions and replays from the dashboard in headless Chromium.

A real engine over HTTP serves an app in-process: on the runs list, ticked runs are
cancelled or replayed, and "Cancel all matching the filter" runs a bulk action whose
progress shows until it completes; on a failed run's page, "Replay from here" on step 2
starts a run that reuses step 1's result (a counter proves it) and names the original.
"""

from __future__ import annotations

import collections
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import stepline
from tests._support.browser import Page, run_of
from tests._support.polling import wait_until
from tests.sdk.embedded_support import EngineServer

pytestmark = [pytest.mark.browser]

COUNTS: collections.Counter[str] = collections.Counter()
FAIL = {"on": True}


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def functions(client: stepline.Client) -> list[stepline.Function]:
    @client.function(id="naps", trigger=stepline.TriggerEvent(event="ui/nap"))
    async def naps(ctx: stepline.Context) -> None:
        await ctx.step.sleep("nap", dt.timedelta(hours=1))

    @client.function(id="others", trigger=stepline.TriggerEvent(event="ui/other"))
    async def others(ctx: stepline.Context) -> None:
        await ctx.step.sleep("nap", dt.timedelta(hours=1))

    @client.function(id="three", retries=0, trigger=stepline.TriggerEvent(event="ui/three"))
    def three(ctx: stepline.SyncContext) -> str:
        def step(name: str) -> str:
            COUNTS[name] += 1
            if name == "step-2" and FAIL["on"]:
                raise ValueError("step 2 broke")
            return name

        return "".join(ctx.step.run(name, step, name) for name in ("step-1", "step-2", "step-3"))

    return [naps, others, three]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[str, httpx.Client]]:
    server = EngineServer(
        str(tmp_path / "engine.db"),
        poll_interval=0.05,
        retry_scale=0.0,
        retry_jitter=0.0,
        bulk_batch_size=4,
        bulk_pause=0.1,
    )
    client = stepline.Client("ui", is_production=False, api_base_url=server.url)
    server.serve(client, functions(client))
    with server, httpx.Client(base_url=server.url, timeout=30) as http:
        yield server.url, http


def start(http: httpx.Client, name: str, count: int) -> list[str]:
    ids = []
    for n in range(count):
        answer = http.post("/e/key", json={"name": name, "data": {"n": n}})
        ids.append(run_of(http, answer.json()["ids"][0])["run_id"])
    return ids


def status(http: httpx.Client, run_id: str) -> str:
    return str(http.get(f"/v1/runs/{run_id}").json()["data"]["status"])


def asleep(http: httpx.Client, run_ids: list[str]) -> None:
    def sleeping() -> bool | None:
        return all(status(http, r) == "Running" for r in run_ids) or None

    wait_until(sleeping, message="the runs to sleep")


def test_runs_list_cancels_and_replays_selected_runs_and_all_matching(
    engine: tuple[str, httpx.Client], tab: Page
) -> None:
    url, http = engine
    naps = start(http, "ui/nap", 3)
    others = start(http, "ui/other", 2)
    asleep(http, naps + others)
    page = tab.page

    page.goto(f"{url}/#/runs?function_id=ui-naps")
    expect(page.locator("#runs-table input.pick")).to_have_count(3)
    expect(page.locator("#cancel-selected")).to_be_disabled()
    for run_id in naps[:2]:
        page.locator(f'input.pick[value="{run_id}"]').check()
    expect(page.locator("#bulk-count")).to_have_text("2 selected")
    page.locator("#cancel-selected").click()
    expect(page.locator("#bulk-status")).to_contain_text("Cancelled 2 of 2.")
    assert [status(http, r) for r in naps] == ["Cancelled", "Cancelled", "Running"]
    # the list re-renders once the action is done: tick the next runs on the new rows
    for run_id in naps[:2]:
        row = page.locator("#runs-table tr", has=page.locator(f'input.pick[value="{run_id}"]'))
        expect(row).to_contain_text("Cancelled")

    # a live run cannot be replayed: refused, and said so; an ended one is replayed
    page.locator(f'input.pick[value="{naps[0]}"]').check()
    page.locator(f'input.pick[value="{naps[2]}"]').check()
    expect(page.locator("#bulk-count")).to_have_text("2 selected")
    tab.expected.append("409")
    page.locator("#replay-selected").click()
    expect(page.locator("#bulk-status")).to_contain_text("Replayed 1 of 2.")
    expect(page.locator("#bulk-status")).to_contain_text("still Running")
    replays = http.get("/v1/runs", params={"function_id": "ui-naps"}).json()["data"]
    assert [r["replay_of"] for r in replays if r["replay_of"]] == [naps[0]]
    tab.screenshot("bulk-selected")

    more = start(http, "ui/nap", 9)
    asleep(http, more)
    page.goto(f"{url}/#/runs?function_id=ui-naps&status=Running")
    page.locator("#cancel-matching").click()
    page.locator("#confirm-cancel-matching").click()
    progress = page.locator("#bulk-progress")
    expect(progress).to_have_attribute("data-status", "completed", timeout=30_000)
    # naps[2], the nine more, and the replay of naps[0] (asleep by now, or queued)
    expect(progress).to_contain_text("cancelled")
    tab.screenshot("bulk-matching")
    assert {status(http, r) for r in [naps[2], *more]} == {"Cancelled"}
    assert {status(http, r) for r in others} == {"Running"}, "another function's runs stay"
    [action] = http.get("/v1/bulk").json()["data"]
    assert action["filter"]["function_id"] == "ui-naps"
    assert action["filter"]["status"] == ["Running"]
    assert action["applied"] >= 10


def test_run_page_replays_from_a_step(engine: tuple[str, httpx.Client], tab: Page) -> None:
    url, http = engine
    FAIL["on"] = True
    COUNTS.clear()
    [failed] = start(http, "ui/three", 1)
    wait_until(lambda: status(http, failed) == "Failed" or None, message="the run to fail")
    FAIL["on"] = False
    page = tab.page

    page.goto(f"{url}/#/runs/{failed}")
    step_2 = page.locator("details.step", has_text="step-2")
    step_2.locator("summary").click()
    step_2.locator("button.replay-from").click()
    page.wait_for_url(lambda at: failed not in at and "#/runs/" in at)
    expect(page.locator(".replay-of")).to_contain_text(f"of run {failed}")
    new = page.url.rsplit("/", 1)[-1]
    wait_until(lambda: status(http, new) == "Completed" or None, message="the replay to finish")
    assert dict(COUNTS) == {"step-1": 1, "step-2": 2, "step-3": 1}
    page.reload()
    expect(page.locator(".replay-of")).to_contain_text("from step")
    tab.screenshot("replay-from-step")
