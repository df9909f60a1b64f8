"""The run page's depth in headless Chromium, on both stores.

A real engine over HTTP serves an app in-process. An order run reserves, charges (the
charge fails twice, then succeeds), sleeps, publishes to its stream, invokes a child run
and waits for a signal. Its run page shows:

- the trace: one row per step on a time axis, the charge's three attempts as bars (two
  failed), the sleep and the signal wait as waits, and the invoked child run nested under
  the step that invoked it, linking to the child's page (which links back);
- the charge's attempts in its step: number, result, error, and when each was retried;
- the run's stream (the message it published) and its signals: the one it waits for,
  sent from the page through the step's form, then shown as received with its data.
"""

from __future__ import annotations

import datetime as dt
import json
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


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def functions(client: stepline.Client) -> list[stepline.Function]:
    @client.function(id="ship", trigger=stepline.TriggerEvent(event="trace/ship"))
    async def ship(ctx: stepline.Context) -> dict[str, Any]:
        label = await ctx.step.run("label", lambda: f"label-{ctx.event.data['order']}")
        return {"label": label}

    @client.function(id="order", trigger=stepline.TriggerEvent(event="trace/order"), retries=3)
    async def order(ctx: stepline.Context) -> dict[str, Any]:
        await ctx.step.run("reserve", lambda: {"reserved": True})

        def charge() -> dict[str, float]:
            if ctx.attempt < 2:
                raise ConnectionError(f"card declined ({ctx.attempt + 1})")
            return {"charged": 42.5}

        await ctx.step.run("charge", charge)
        await ctx.step.sleep("cool-off", dt.timedelta(milliseconds=300))
        await ctx.step.publish("progress", topic="progress", data={"stage": "shipping"})
        shipped = await ctx.step.invoke("ship", function=ship, data={"order": 7})
        approval = await ctx.step.wait_for_signal("approve", signal="approved", timeout="1h")
        return {"shipped": shipped, "approval": approval}

    return [ship, order]


@pytest.fixture(params=["sqlite", "postgres"])
def engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, httpx.Client, str]]:
    if request.param == "sqlite":
        database = str(tmp_path / "engine.db")
    else:
        database = request.getfixturevalue("postgres_url")
    server = ClosingEngineServer(database, poll_interval=0.05, retry_scale=0.0, retry_jitter=0.0)
    client = server.client = stepline.Client("trace", is_production=False, api_base_url=server.url)
    server.serve(client, functions(client))
    with server, httpx.Client(base_url=server.url, timeout=30) as http:
        yield server.url, http, str(request.param)


def waiting_for_signal(http: httpx.Client, run_id: str) -> bool | None:
    steps = http.get(f"/v1/runs/{run_id}/steps").json()["data"]
    return any(s["status"] == "Waiting" and (s["wait"] or {}).get("signal") for s in steps) or None


def test_trace_attempts_stream_and_signals(
    engine: tuple[str, httpx.Client, str], tab: Page
) -> None:
    url, http, store = engine
    run_id = run_of(http, send(http, "trace/order"))["run_id"]
    wait_until(lambda: waiting_for_signal(http, run_id), message="the order to wait for its signal")
    steps = {s["name"]: s for s in http.get(f"/v1/runs/{run_id}/steps").json()["data"]}
    [child] = http.get("/v1/runs", params={"parent_run_id": run_id}).json()["data"]
    assert child["parent_step_id"] == steps["ship"]["id"]
    http.get(f"/v1/runs/{child['run_id']}", params={"wait": 20})  # the child has ended

    page = tab.page
    page.goto(f"{url}/#/runs/{run_id}")
    trace = page.locator("#trace")
    expect(trace.locator(".trace-row[data-kind=child]")).to_have_count(1)
    rows = trace.locator(".trace-row:not(.trace-axis)")
    kinds = rows.evaluate_all("rows => rows.map(r => r.dataset.kind)")
    assert kinds == ["run", "step", "step", "sleep", "step", "invoke", "child", "signal"], kinds
    charge = trace.locator(f".trace-row[data-step='{steps['charge']['id']}']")
    expect(charge.locator(".trace-attempt")).to_have_count(3)
    expect(charge.locator(".trace-attempt.s-failed")).to_have_count(2)
    expect(charge.locator(".trace-attempt.s-completed")).to_have_count(1)
    expect(trace.locator(".trace-row[data-kind=sleep] .trace-bar.trace-wait")).to_have_count(1)
    expect(trace.locator(".trace-row[data-kind=signal] .trace-bar.trace-wait")).to_have_count(1)
    # the child run sits right under the step that invoked it, and links to its page
    invoke = trace.locator(".trace-row[data-kind=invoke]")
    expect(invoke).to_have_attribute("data-step", steps["ship"]["id"])
    nested = trace.locator(".trace-row[data-kind=invoke] + .trace-row[data-kind=child]")
    expect(nested.locator("a.trace-child")).to_have_attribute("href", f"#/runs/{child['run_id']}")
    expect(nested.locator(".badge")).to_have_text("Completed")

    # the charge's attempts, in its step of the timeline
    page.locator(f"#timeline details.step[data-step='{steps['charge']['id']}'] > summary").click()
    attempts = page.locator(f"#attempts-{steps['charge']['id']} tbody tr")
    expect(attempts).to_have_count(3)
    expect(attempts.locator("td:nth-child(2)")).to_have_text(["Failed", "Failed", "Completed"])
    expect(attempts.nth(0).locator(".attempt-error")).to_contain_text(
        "ConnectionError: card declined (1)"
    )
    expect(attempts.nth(1).locator(".attempt-error")).to_contain_text("card declined (2)")
    stack = attempts.nth(0).locator("pre.stack")
    expect(stack).to_be_hidden()
    attempts.nth(0).locator("button.stack-toggle").click()
    expect(stack).to_contain_text("card declined (1)")  # the traceback
    expect(attempts.nth(0).locator("td:nth-child(6) time")).to_have_count(1)  # retried at
    expect(attempts.nth(2).locator("td:nth-child(5)")).to_have_text("—")
    # the stream it published and the signal it waits for
    expect(page.locator("#stream-rows tr td:nth-child(2)")).to_have_text(["progress"])
    signal = page.locator("#signals tr[data-signal=approved]")
    expect(signal).to_have_attribute("data-state", "Waiting")
    if store == "sqlite":
        page.evaluate("window.scrollTo(0, 0)")
        tab.screenshot("run-trace")

    signal.locator("button.send-signal-link").click()
    form = page.locator(f"details.step[data-step='{steps['approve']['id']}'] form.send-signal")
    expect(form.locator("textarea")).to_be_focused()
    form.locator("textarea").fill(json.dumps({"by": "ana"}))
    form.locator("button[type=submit]").click()
    expect(page.locator("h1 .badge")).to_have_text("Completed", timeout=20_000)
    expect(signal).to_have_attribute("data-state", "Received")
    expect(signal.locator(".signal-data")).to_have_text('{"by":"ana"}')
    expect(page.locator("#stream-state")).to_have_text("The run has ended: its stream is complete.")
    if store == "sqlite":
        page.evaluate("window.scrollTo(0, 0)")
        tab.screenshot("run-trace-signals")

    # the child's page links back to its parent
    page.locator("#trace a.trace-child").click()
    expect(page.locator("#run-id")).to_have_text(child["run_id"])
    page.locator("dl.facts a", has_text=run_id).click()
    expect(page.locator("#run-id")).to_have_text(run_id)
    expect(page.locator("#stream-state")).to_have_text(  # its stream read to the end
        "The run has ended: its stream is complete."
    )
    page.goto("about:blank")  # no stream left open while the engine stops
