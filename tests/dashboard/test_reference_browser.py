"""The dashboard's API reference, in headless Chromium: rendered from ``/v1/openapi.json``,
one entry per operation of the document, each with its credentials, parameters and
answers; a shape's link opens that shape; every request the page makes is the engine's
own (no CDN: scripts, styles and fonts ship with the engine)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app
from tests._support.browser import Page
from tests._support.server_thread import ServerThread

pytestmark = [pytest.mark.browser]


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


@pytest.fixture
def engine_url(tmp_path: Path) -> Iterator[str]:
    server = ServerThread("engine")
    settings = EngineSettings(database_url=str(tmp_path / "engine.db"), poll_interval=0.05)
    server.start(build_app(Engine(settings)))
    try:
        yield server.url
    finally:
        server.stop()


def test_the_reference_lists_every_operation_of_the_document(engine_url: str, tab: Page) -> None:
    document = httpx.get(f"{engine_url}/v1/openapi.json").json()
    ids = sorted(op["operationId"] for item in document["paths"].values() for op in item.values())
    page = tab.page
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{engine_url}/#/reference")
    expect(page.locator("h1")).to_have_text("API reference")
    expect(page.locator(".reference-op")).to_have_count(len(ids))
    shown = sorted(page.locator(".reference-op").evaluate_all("els => els.map(e => e.dataset.op)"))
    assert shown == ids
    start = page.locator('[data-op="postFunctionsFunctionIdRuns"]')
    start.locator("summary").click()
    expect(start).to_contain_text("/v1/functions/{function_id}/runs")
    expect(start).to_contain_text("signing key (Bearer), or dashboard session")
    expect(start).to_contain_text("idempotency_key")
    start.get_by_role("link", name="Error").first.click()
    expect(page.locator("#shape-Error")).to_have_attribute("open", "")
    expect(page.locator("#shape-Error")).to_contain_text("what is wrong, for people")
    assert any(url.endswith("/v1/openapi.json") for url in requested), requested
    foreign = [url for url in requested if not url.startswith(f"{engine_url}/")]
    assert foreign == [], f"requests beyond the engine: {foreign}"
