"""``examples/streams`` in headless Chromium: the page shows a report's stream live, and a
forced reconnect mid-stream leaves no gap and no duplicate.

The example runs as its README says (one command, embedded engine on SQLite in
``tmp_path``). The page keeps the seq of every message it showed in
``window.reportStream.seqs``; the test closes the page's ``EventSource`` mid-stream and
opens a new one (``window.reconnectStream()``, the page's Reconnect button), then checks
the page showed messages 1..N exactly once, N being what the run says it published.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._support.browser import Page
from tests._support.polling import wait_until
from tests._support.processes import clean_env, free_port, spawned

pytestmark = [pytest.mark.process, pytest.mark.browser]

APP = Path(__file__).resolve().parents[2] / "examples" / "streams" / "app.py"


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = clean_env(PORT=str(port), STEPLINE_DATABASE_URL=str(tmp_path / "embedded.db"))
    url = f"http://127.0.0.1:{port}"
    with spawned(
        [sys.executable, str(APP)], log=tmp_path / "app.log", env=env, cwd=tmp_path, up=url + "/"
    ):
        yield url


def state(tab: Page) -> dict[str, Any]:
    found: dict[str, Any] = tab.page.evaluate(
        "() => ({seqs: [...window.reportStream.seqs], connections: window.reportStream.connections,"
        " received: window.reportStream.received, result: window.reportStream.result})"
    )
    return found


@pytest.mark.timeout(120)
def test_the_page_shows_the_stream_and_a_reconnect_loses_nothing(tab: Page, site: str) -> None:
    files = 6
    tab.page.goto(f"{site}/?files={files}&pause=0.5")
    expect(tab.page.locator("#status")).to_have_text("idle")
    tab.page.click("#start")

    # live: the first files' progress is on the page while the run still works
    wait_until(lambda: len(state(tab)["seqs"]) >= 4 or None, message="the first messages")
    expect(tab.page.locator("#parts li").first).to_contain_text("file-01.csv")
    before = state(tab)
    assert before["result"] is None, "the run should still be going: slow it down"
    tab.page.evaluate("() => window.reconnectStream()")  # drop the connection, open another

    wait_until(lambda: state(tab)["result"], message="the run's result on the page", timeout=60)
    after = state(tab)
    total = after["result"]["output"]["messages"]
    assert after["connections"] >= 2, "the page reconnected"
    assert after["seqs"] == list(range(1, total + 1)), "no gap"
    assert after["received"] == total, "no duplicate: the route resent nothing"
    assert after["result"]["status"] == "Completed"
    expect(tab.page.locator("#label")).to_have_text(f"{files} of {files}")
    expect(tab.page.locator("#parts li")).to_have_count(files)
    expect(tab.page.locator("#tokens span")).to_have_count(after["result"]["output"]["tokens"])
    # each message on the page once: the DOM holds every seq exactly once
    shown = tab.page.evaluate(
        "() => [...document.querySelectorAll('[data-seq]')].map(e => +e.dataset.seq)"
    )
    assert sorted(shown) == list(range(1, total + 1))
    expect(tab.page.locator("#status")).to_contain_text(f"Completed ({total} messages)")
    tab.screenshot("streams-example")
