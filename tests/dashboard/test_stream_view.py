"""The run page shows the run's stream live, in headless Chromium.

An engine over real HTTP; a running run publishes through ``POST /v1/runs/{id}/stream``
while the page is open: each message appears as a row (seq, topic, time, data) as it
is published, without a reload, and the run's end marks the stream complete.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stepline._status import RunStatus
from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app
from tests._support.aio import arun
from tests._support.browser import Page
from tests._support.server_thread import ServerThread
from tests.engine.test_store_contract import opened, run_record

pytestmark = [pytest.mark.browser]

RUN = "01RUNDASHSTREAM00000000001"


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[httpx.Client]:
    db = str(tmp_path / "engine.db")

    async def seed() -> None:  # on a thread: Playwright's loop holds this one
        store = await opened(db)
        record = run_record(RUN, status=RunStatus.RUNNING, created_at=time.time())
        await store.atomic(lambda tx: tx.insert_run(record))
        await store.close()

    arun(seed(), own_thread=True)
    server = ServerThread("engine")
    settings = EngineSettings(database_url=db, poll_interval=5.0)  # live, not polled
    server.start(build_app(Engine(settings)))
    try:
        headers = {"x-stepline-csrf": "1"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
            yield http
    finally:
        server.stop()


def publish(http: httpx.Client, topic: str, data: Any) -> None:
    body = {"messages": [{"topic": topic, "data": data, "id": None}]}
    assert http.post(f"/v1/runs/{RUN}/stream", json=body).status_code == 200


def test_the_run_page_shows_messages_as_they_are_published(engine: httpx.Client, tab: Page) -> None:
    publish(engine, "progress", {"done": 1, "of": 3})
    page = tab.page
    page.goto(f"{engine.base_url}/#/runs/{RUN}")
    rows = page.locator("#stream-rows tr")
    expect(rows).to_have_count(1)
    expect(rows.nth(0).locator("td")).to_have_text(
        ["1", "progress", rows.nth(0).locator("time").inner_text(), '{"done":1,"of":3}']
    )
    # published while the page is open: new rows, no reload
    publish(engine, "tokens", "hello")
    publish(engine, "progress", {"done": 2, "of": 3})
    expect(rows).to_have_count(3)
    expect(page.locator("#stream-rows tr td:nth-child(2)")).to_have_text(
        ["progress", "tokens", "progress"]
    )
    expect(rows.nth(1).locator(".stream-data")).to_have_text('"hello"')
    expect(page.locator("#stream-state")).to_be_hidden()
    tab.screenshot("run-stream")

    assert engine.post(f"/v1/runs/{RUN}/cancel").status_code == 200
    expect(page.locator("#stream-state")).to_have_text("The run has ended: its stream is complete.")
    expect(rows).to_have_count(3)  # the end after everything, nothing twice
