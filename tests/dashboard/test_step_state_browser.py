"""A step's state in words on the run page, in headless Chromium.

A ``charge`` step that failed its first attempt and waits to be retried shows
``Retrying at HH:MM:SS (attempt 2 of 4)`` (not ``Planned``); a step that failed for good
shows its kind ``StepRun`` and ``Failed`` (not its ``StepFailed`` op).
"""

from __future__ import annotations

import datetime as dt
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
    @client.function(id="pay", trigger=stepline.TriggerEvent(event="state/pay"), retries=3)
    async def pay(ctx: stepline.Context) -> None:
        def charge() -> None:
            raise ConnectionError("card declined")

        await ctx.step.run("charge", charge)

    @client.function(id="ship", trigger=stepline.TriggerEvent(event="state/ship"), retries=0)
    async def ship(ctx: stepline.Context) -> None:
        def label() -> None:
            raise ValueError("no address")

        await ctx.step.run("label", label)

    return [pay, ship]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[str, httpx.Client]]:
    # retries 10x later than the Go table (150 s): the first retry never comes in the test
    server = EngineServer(
        str(tmp_path / "engine.db"), poll_interval=0.05, retry_scale=10.0, retry_jitter=0.0
    )
    client = stepline.Client("state", is_production=False, api_base_url=server.url)
    server.serve(client, functions(client))
    with server, httpx.Client(base_url=server.url, timeout=30) as http:
        yield server.url, http


def steps(http: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = http.get(f"/v1/runs/{run_id}/steps").json()["data"]
    return data


def test_retrying_and_failed_steps_in_words(engine: tuple[str, httpx.Client], tab: Page) -> None:
    url, http = engine
    paying = run_of(http, send(http, "state/pay"))["run_id"]
    [charge] = wait_until(
        lambda: [s for s in steps(http, paying) if s["attempts"] == 1] or None,
        message="the charge's first attempt to fail",
    )
    due = dt.datetime.fromisoformat(charge["next_retry_at"].replace("Z", "+00:00"))
    shipping = run_of(http, send(http, "state/ship"))["run_id"]
    http.get(f"/v1/runs/{shipping}", params={"wait": 20})  # it has failed

    page = tab.page
    local = page.evaluate(
        "iso => new Date(iso).toTimeString().slice(0, 8)", charge["next_retry_at"]
    )
    assert local[-2:] == f"{due.second:02d}"
    page.goto(f"{url}/#/runs/{paying}")
    row = page.locator(f"details.step[data-step='{charge['id']}'] summary")
    expect(row.locator(".step-state")).to_have_text(f"Retrying at {local} (attempt 2 of 4)")
    expect(row.locator(".step-kind")).to_have_text("StepRun")

    page.goto(f"{url}/#/runs/{shipping}")
    expect(page.locator("h1 .badge")).to_have_text("Failed")
    [label] = steps(http, shipping)
    row = page.locator(f"details.step[data-step='{label['id']}'] summary")
    expect(row.locator(".step-state")).to_have_text("Failed")
    expect(row.locator(".step-kind")).to_have_text("StepRun")


def test_a_replay_from_a_step_names_the_step(engine: tuple[str, httpx.Client], tab: Page) -> None:
    url, http = engine
    shipping = run_of(http, send(http, "state/ship"))["run_id"]
    http.get(f"/v1/runs/{shipping}", params={"wait": 20})  # it has failed
    [label] = steps(http, shipping)
    answer = http.post(
        f"/v1/runs/{shipping}/replay",
        json={"from_step": "label"},
        headers={"x-stepline-csrf": "1"},
    )
    assert answer.status_code == 201, answer.text
    replay = answer.json()["data"]["run_id"]

    page = tab.page
    page.goto(f"{url}/#/runs/{replay}")
    origin = page.locator(".replay-of")
    expect(origin).to_contain_text(f"replayed from step label of run {shipping}")
    expect(origin.locator("code")).to_have_text("label")
    expect(origin.locator("code")).to_have_attribute("title", label["id"])
