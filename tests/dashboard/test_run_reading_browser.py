"""Reading a run on its page, in headless Chromium, on both stores.

A real engine over HTTP serves an app in-process. An order run reserves (its output holds
markup), charges (the charge fails once, then succeeds), checks a coupon (it fails for
good; the function goes on), packs and labels in parallel, sleeps three seconds and
ships; it is then replayed from the ship step. Its page shows:

- the step panel beside the trace, opened by a click on a step in the trace and by Enter
  on a step's Inspect button in the timeline: the step's input, output (markup shown as
  text, never as elements), error and attempts; Escape closes it and gives focus back;
  the URL names the open step, and that URL opens the panel;
- the raw history: every transition in order, and a Copy button that puts the same
  transitions, as valid JSON, on the clipboard;
- the sleep drawn as a compressed, labelled break: the steps on either side keep their
  width, where drawn to scale they would be squeezed against the left edge;
- the parallel steps drawn in one group;
- the replay naming its origin by step name, linked to that step in the original run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import stepline
from tests._support.browser import Page, run_of, send
from tests._support.polling import wait_until
from tests.sdk.embedded_support import ClosingEngineServer

pytestmark = [pytest.mark.browser]

MARKUP = "<img src=x onerror=window.pwned=1><b>bold</b>"


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def functions(client: stepline.Client) -> list[stepline.Function]:
    @client.function(id="order", trigger=stepline.TriggerEvent(event="read/order"), retries=2)
    async def order(ctx: stepline.Context) -> dict[str, Any]:
        await ctx.step.run("reserve", lambda: {"reserved": True, "note": MARKUP})

        def charge() -> dict[str, float]:
            if ctx.attempt < 1:
                raise ConnectionError("card declined")
            return {"charged": 42.5}

        await ctx.step.run("charge", charge)

        def coupon() -> None:
            raise stepline.NonRetriableError("coupon expired")

        with contextlib.suppress(stepline.StepError):  # the function goes on without it
            await ctx.step.run("coupon", coupon)

        def packed(value: str) -> Any:
            # a few milliseconds of work: the trace tells steps planned together by their
            # common start and an end after it, to the millisecond
            return lambda: time.sleep(0.005) or value

        await ctx.step.parallel(
            [
                lambda: ctx.step.run("pack", packed("packed")),
                lambda: ctx.step.run("label", packed("labelled")),
            ]
        )
        await ctx.step.sleep("cool-off", dt.timedelta(seconds=3))
        shipped = await ctx.step.run("ship", lambda: "shipped")
        return {"shipped": shipped}

    return [order]


@pytest.fixture(params=["sqlite", "postgres"])
def engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, httpx.Client, str]]:
    if request.param == "sqlite":
        database = str(tmp_path / "engine.db")
    else:
        database = request.getfixturevalue("postgres_url")
    server = ClosingEngineServer(database, poll_interval=0.05, retry_scale=0.0, retry_jitter=0.0)
    client = server.client = stepline.Client("read", is_production=False, api_base_url=server.url)
    server.serve(client, functions(client))
    with server, httpx.Client(base_url=server.url, timeout=30) as http:
        yield server.url, http, str(request.param)


def ended(http: httpx.Client, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = http.get(f"/v1/runs/{run_id}", params={"wait": 20}).json()["data"]
    assert run["status"] == "Completed", run
    return run


def box(locator: Any) -> dict[str, float]:
    found: dict[str, float] = locator.bounding_box()
    assert found is not None
    return found


def test_step_panel_history_breaks_groups_and_replay_origin(
    engine: tuple[str, httpx.Client, str], tab: Page
) -> None:
    url, http, store = engine
    run_id = run_of(http, send(http, "read/order"))["run_id"]
    ended(http, run_id)
    steps = {s["name"]: s for s in http.get(f"/v1/runs/{run_id}/steps").json()["data"]}
    page = tab.page
    tab.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(f"{url}/#/runs/{run_id}")
    trace = page.locator("#trace")
    expect(trace.locator(".trace-row[data-kind=sleep]")).to_have_count(1)

    # the parallel steps: one group of two
    group = trace.locator(".trace-group")
    expect(group).to_have_count(1)
    members = group.locator(".trace-row").evaluate_all("rows => rows.map(r => r.dataset.step)")
    assert sorted(members) == sorted([steps["pack"]["id"], steps["label"]["id"]])
    expect(group.locator(".trace-group-label")).to_have_text("parallel \u00d7 2")

    # the sleep: a labelled break, narrow; the steps around it keep the rest of the track
    label = trace.locator(".trace-axis .trace-break-label")
    expect(label).to_have_count(1)
    expect(label).to_contain_text("slept")
    band = box(trace.locator(".trace-axis .trace-break"))
    track = box(trace.locator(".trace-axis .trace-track"))
    assert band["width"] < 0.1 * track["width"], (band, track)
    sleep_ms = (
        dt.datetime.fromisoformat(steps["cool-off"]["ended_at"])
        - dt.datetime.fromisoformat(steps["cool-off"]["started_at"])
    ).total_seconds() * 1000
    assert sleep_ms >= 2900
    reserve = box(trace.locator(f".trace-row[data-step='{steps['reserve']['id']}'] .trace-bar"))
    ship = box(trace.locator(f".trace-row[data-step='{steps['ship']['id']}'] .trace-bar"))
    run_bar = box(trace.locator(".trace-row[data-kind=run] .trace-bar"))
    # before the break: the steps up to the sleep keep a share of the track by their own
    # time (to scale, the three-second sleep would leave them a sliver, a few percent, at
    # the left edge); their share of the active time moves with the load (22% seen in a suite run)
    assert band["x"] - track["x"] > 0.1 * track["width"], (band, track)
    assert reserve["x"] < band["x"] < ship["x"], (reserve, band, ship)
    assert run_bar["x"] + run_bar["width"] > band["x"] + band["width"]  # the run spans it

    # the panel, by a click in the trace: input, output, attempts with the error
    panel = page.locator("#step-panel")
    expect(panel).to_be_hidden()
    charge_row = trace.locator(f".trace-row[data-step='{steps['charge']['id']}']")
    charge_button = charge_row.locator("button.trace-name")
    charge_button.click()
    expect(panel).to_be_visible()
    expect(page.locator("#step-panel-title")).to_contain_text("charge")
    expect(page.locator("#step-panel-state")).to_have_text("Completed")
    expect(page.locator("#step-panel-output pre")).to_have_text(
        json.dumps({"charged": 42.5}, indent=2)
    )
    expect(page.locator("#step-panel-input")).to_contain_text("read/order")
    attempts = page.locator(f"#panel-attempts-{steps['charge']['id']} tbody tr")
    expect(attempts.locator("td:nth-child(2)")).to_have_text(["Failed", "Completed"])
    expect(attempts.nth(0).locator(".attempt-error")).to_contain_text(
        "ConnectionError: card declined"
    )
    assert f"?step={steps['charge']['id']}" in page.url
    # the trace stays beside the panel, not under it
    assert box(trace)["x"] + box(trace)["width"] <= box(panel)["x"] + 1
    if store == "sqlite":
        page.evaluate("window.scrollTo(0, 0)")
        tab.screenshot("run-step-panel")
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    assert "?step=" not in page.url
    expect(charge_button).to_be_focused()

    # by keyboard, from the timeline: the coupon's error; the reserve's markup as text
    coupon = page.locator(f"button.inspect-step[data-step='{steps['coupon']['id']}']")
    coupon.focus()
    page.keyboard.press("Enter")
    expect(panel).to_be_visible()
    expect(panel).to_be_focused()
    expect(page.locator("#step-panel-error")).to_contain_text("coupon expired")
    expect(page.locator("#step-panel-output")).to_have_count(0)
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(coupon).to_be_focused()
    reserve_button = page.locator(f"button.inspect-step[data-step='{steps['reserve']['id']}']")
    reserve_button.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#step-panel-output pre")).to_contain_text(MARKUP)
    expect(panel.locator("img")).to_have_count(0)
    expect(panel.locator("b")).to_have_count(0)
    assert page.evaluate("window.pwned") is None
    page.locator("#step-panel-close").click()
    expect(panel).to_be_hidden()

    # a link naming a step opens the run with that step's panel open
    page.goto("about:blank")
    page.goto(f"{url}/#/runs/{run_id}?step={steps['pack']['id']}")
    expect(panel).to_be_visible()
    expect(page.locator("#step-panel-output pre")).to_have_text('"packed"')

    # the history: every transition in order; Copy puts the same JSON on the clipboard
    page.locator("#step-panel-close").click()
    page.locator("#run-history > summary").click()
    rows = page.locator("#history-list tbody tr")
    expect(rows.last).to_have_attribute("data-type", "completed")
    types = rows.evaluate_all("rows => rows.map(r => r.dataset.type)")
    assert types[:2] == ["queued", "started"], types
    assert types.index("attempt_failed") < types.index("sleep_started") < types.index("slept")
    assert "step_failed" in types
    expect(page.locator("#history-list")).to_contain_text(MARKUP)  # the reserve's output
    expect(page.locator("#run-history img")).to_have_count(0)
    page.locator("#copy-history").click()
    expect(page.locator("#history-copied")).to_contain_text("Copied")
    copied = json.loads(page.evaluate("navigator.clipboard.readText()"))
    served = http.get(f"/v1/runs/{run_id}/history").json()["data"]
    assert copied == served
    assert [t["type"] for t in copied] == types
    assert [t["seq"] for t in copied] == list(range(len(copied)))
    if store == "sqlite":
        page.evaluate("window.scrollTo(0, 0)")
        tab.screenshot("run-history")

    # a replay from the ship step names its origin by the step's name, linked
    answer = http.post(
        f"/v1/runs/{run_id}/replay", json={"from_step": "ship"}, headers={"x-stepline-csrf": "1"}
    )
    assert answer.status_code == 201, answer.text
    replay = answer.json()["data"]["run_id"]
    ended(http, replay)
    page.goto(f"{url}/#/runs/{replay}")
    origin = page.locator(".replay-of")
    expect(origin).to_have_text(f"replayed from step ship of run {run_id}")
    step_link = origin.locator("a.replay-step")
    expect(step_link).to_have_attribute("href", f"#/runs/{run_id}?step={steps['ship']['id']}")
    step_link.click()
    expect(page.locator("#run-id")).to_have_text(run_id)
    expect(panel).to_be_visible()
    expect(page.locator("#step-panel-title")).to_contain_text("ship")
    wait_until(lambda: "?step=" in page.url or None, message="the URL to name the step")
    page.goto("about:blank")
