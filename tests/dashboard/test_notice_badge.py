"""The run page shows a run's notices in headless Chromium.

A scripted SDK (real HTTP) reports a non-deterministic replay; the engine records the
notice and the run page shows a "non-deterministic" badge, the notice's message and the
step names. Kinds the engine records elsewhere (a version move) or does not know yet are
rendered from the run view as well: they are added to the engine's real answer in flight.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app
from tests._support.browser import Page, run_of, send
from tests._support.server_thread import ServerThread
from tests._support.stub_server import StubServer
from tests.engine.test_protocol_stub import SDK, register_body

pytestmark = [pytest.mark.browser]

HEADER = "X-Stepline-Nondeterminism"


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def renamed_step(req: dict[str, Any]) -> tuple[Any, ...]:
    """v1 ran step ``charge``; the code now calls it ``charge card`` (a new id)."""
    memos = set(req["body"]["steps"])
    report = json.dumps({"policy": "warn", "missing": ["h-charge"], "new": ["h-card"]})
    if not memos:
        return 206, [{"op": "StepRun", "id": "h-charge", "displayName": "charge", "data": 1}], SDK
    if memos == {"h-charge"}:
        op = {"op": "StepRun", "id": "h-card", "displayName": "charge card", "data": 2}
        return 206, [op], {**SDK, HEADER: report}
    return 200, "done", {**SDK, HEADER: report}


@pytest.fixture
def engine_url(tmp_path: Path, stub_server: StubServer) -> Iterator[str]:
    stub_server.answer = renamed_step
    server = ServerThread("engine")
    settings = EngineSettings(
        database_url=str(tmp_path / "engine.db"),
        retry_scale=0.0,
        retry_jitter=0.0,
        poll_interval=0.05,
    )
    server.start(build_app(Engine(settings)))
    try:
        with httpx.Client(base_url=server.url, headers={"x-stepline-csrf": "1"}) as http:
            assert http.post("/fn/register", json=register_body(stub_server)).status_code == 200
        yield server.url
    finally:
        server.stop()


def test_run_page_shows_the_non_determinism_badge_with_step_names(
    engine_url: str, tab: Page
) -> None:
    with httpx.Client(base_url=engine_url, timeout=30) as http:
        run = run_of(http, send(http, "s/go"))
        done = http.get(f"/v1/runs/{run['run_id']}", params={"wait": "20"}).json()["data"]
    assert done["status"] == "Completed"
    [notice] = done["notices"]
    page = tab.page

    page.goto(f"{engine_url}/#/runs/{run['run_id']}")
    expect(page.locator("h1 .badge.notice-badge")).to_have_text("non-deterministic")
    item = page.locator("#notices .run-notice")
    expect(item).to_have_count(1)
    expect(item).to_contain_text(notice["message"])
    expect(item.locator(".notice-steps.missing code")).to_have_text(["charge"])
    expect(item.locator(".notice-steps.new code")).to_have_text(["charge card"])
    expect(item.locator(".notice-steps.new code")).to_have_attribute("title", "h-card")
    tab.screenshot("run-nondeterministic")

    # a version move and a kind this page does not know, plus the run's app version
    extra = [
        {"kind": "version_moved", "at": notice["at"], "from": "v1", "to": "v2",
         "reason": "unregistered", "message": "v1 was unregistered; the run moved to v2"},
        {"kind": "future_kind", "at": notice["at"], "message": "something new happened"},
    ]  # fmt: skip

    def add_notices(route: Any) -> None:
        answer = route.fetch()
        body = answer.json()
        body["data"]["notices"] += extra
        body["data"]["app_version"] = "v2"
        route.fulfill(response=answer, json=body)

    page.route(f"**/v1/runs/{run['run_id']}", add_notices)
    page.reload()
    badges = page.locator("h1 .badge.notice-badge")
    expect(badges).to_have_text(["non-deterministic", "moved to v2", "future_kind"])
    items = page.locator("#notices .run-notice")
    expect(items).to_have_count(3)
    expect(items.nth(1)).to_contain_text("v1 was unregistered; the run moved to v2")
    expect(items.nth(2)).to_contain_text("something new happened")
    expect(page.locator("#app-version")).to_have_text("v2")
