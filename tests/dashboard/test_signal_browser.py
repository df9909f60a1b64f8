"""Sending a signal from the run page in headless Chromium.

An engine and an SDK app over real HTTP: a run waits in ``step.wait_for_signal``; its
run page shows the step as waiting for the signal with a form; sending it completes the
step and the run, and the page then shows the run completed with the signal's data. A
second signal, through the REST API, is refused with 409.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
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


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def approvals(client: stepline.Client) -> list[stepline.Function]:
    @client.function(id="approve", trigger=stepline.TriggerEvent(event="docs/submitted"))
    async def approve(ctx: stepline.Context) -> dict[str, Any]:
        await ctx.step.run("notify", lambda: "emailed")
        verdict = await ctx.step.wait_for_signal("review", signal="reviewed", timeout="1h")
        return {"verdict": verdict}

    return [approve]


@pytest.fixture
def stack(tmp_path: Any) -> Iterator[tuple[str, httpx.Client]]:
    engine_server, app_server = ServerThread("engine"), ServerThread("approvals-app")
    client = stepline.Client(
        app_id="approvals",
        is_production=False,
        api_base_url=engine_server.url,
        event_api_base_url=engine_server.url,
    )
    settings = EngineSettings(
        database_url=str(tmp_path / "engine.db"),
        retry_scale=0.0,
        poll_interval=0.05,
        app_urls=(f"{app_server.url}/api/inngest",),
    )
    with contextlib.ExitStack() as stop:
        stop.callback(engine_server.stop)
        app_server.start(closing_client(stepline.asgi.serve(client, approvals(client)), client))
        stop.callback(app_server.stop)
        engine_server.start(build_app(Engine(settings)))
        http = stop.enter_context(httpx.Client(base_url=engine_server.url, timeout=30))
        wait_until(lambda: http.get("/v1/apps").json()["data"] or None, message="the app to sync")
        yield engine_server.url, http


def test_send_a_signal_from_the_run_page(stack: tuple[str, httpx.Client], tab: Page) -> None:
    url, http = stack
    run_id = run_of(http, send(http, "docs/submitted", {"doc": 7}))["run_id"]

    def waiting() -> bool | None:
        steps = http.get(f"/v1/runs/{run_id}/steps").json()["data"]
        return True if any(s["status"] == "Waiting" for s in steps) else None

    wait_until(waiting, message="the run to wait for its signal")
    page = tab.page
    page.goto(f"{url}/#/runs/{run_id}")
    review = page.locator("#timeline details.step", has_text="review")
    expect(review.locator(".badge")).to_have_text("Waiting")
    review.locator("summary").click()
    expect(review).to_contain_text("Waits for signal reviewed")
    form = review.locator("form.send-signal")
    form.locator("textarea").fill(json.dumps({"approved": True, "by": "ana"}))
    tab.screenshot("run-waiting-signal")
    form.locator("button[type=submit]").click()
    expect(page.locator("h1 .badge")).to_have_text("Completed", timeout=20_000)
    expect(page.locator("#run-output")).to_contain_text('"by": "ana"')
    # the form went with the wait: a completed step offers no second signal
    expect(page.locator("form.send-signal")).to_have_count(0)
    again = http.post(f"/v1/runs/{run_id}/signals/reviewed", json={"data": {}})
    assert again.status_code == 409, again.text
    found = http.get(f"/v1/runs/{run_id}").json()["data"]
    assert found["output"] == {"verdict": {"approved": True, "by": "ana"}}
