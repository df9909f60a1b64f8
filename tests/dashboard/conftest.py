"""Dashboard fixtures: engines and SDK apps over real HTTP, and headless Chromium.

The browser is Debian's ``chromium`` (``apt-get install chromium``) driven by Playwright
with ``executable_path``; browsers Playwright downloads itself are never used. Without
Chromium or Playwright the browser tests skip, except under CI (``CI=true``), where they
fail. Screenshots go to ``artifacts/screenshots/`` at the repository root.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests._support.ci import under_ci
from tests._support.polling import wait_until
from tests._support.server_thread import ServerThread  # noqa: F401
from tests.engine.servers import closing_client, postgres_schema  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = os.environ.get("STEPLINE_CHROMIUM", "/usr/bin/chromium")
T = TypeVar("T")


def missing(what: str) -> None:
    """Fail under CI, skip elsewhere: a reviewer must never get a silently empty run."""
    if under_ci():
        pytest.fail(f"{what} is required under CI", pytrace=False)
    pytest.skip(what)


def run_async(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on a thread of its own (see ``browser``)."""

    async def main() -> T:
        return await make()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


def wait_for(check: Callable[[], T | None], *, what: str, timeout: float = 15.0) -> T:
    """Call ``check`` until it returns something other than None."""
    return wait_until(check, message=what, timeout=timeout, interval=0.05)


def run_of(http: httpx.Client, event_id: str, timeout: float = 15.0) -> dict[str, Any]:
    """The run an event started, once the engine has linked it."""

    def check() -> dict[str, Any] | None:
        runs: list[dict[str, Any]] = http.get(f"/v1/events/{event_id}/runs").json()["data"]
        return runs[0] if runs else None

    return wait_for(check, what=f"a run of event {event_id}", timeout=timeout)


def send(http: httpx.Client, name: str, data: dict[str, Any] | None = None, **extra: Any) -> str:
    """Send one event through ``/e/{key}``; returns its internal id."""
    answer = http.post("/e/test-key", json={"name": name, "data": data or {}, **extra})
    assert answer.status_code == 200, answer.text
    event_id: str = answer.json()["ids"][0]
    return event_id


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A Postgres URL whose ``search_path`` is a fresh schema (dropped afterwards)."""
    with postgres_schema("dash") as url:
        yield url


# -- the browser ------------------------------------------------------------------------------


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium under Playwright, shared by this package's tests.

    Not by the session: while it is open, Playwright's event loop runs on the main
    thread, and ``asyncio.run`` there fails (use ``run_async``).
    """
    if not Path(CHROMIUM).exists():
        missing(f"Chromium at {CHROMIUM} (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("Playwright (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            launched.close()


class Page:
    """A fresh browser context and page; JavaScript errors fail the test at teardown."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 860})
        self.context.set_default_timeout(15_000)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        #: console errors containing one of these are expected (a refused request, say)
        self.expected: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("console", self._console)

    def _console(self, message: Any) -> None:
        text = str(message.text)
        if message.type == "error" and not any(x in text for x in self.expected):
            self.errors.append(text)

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser: Any) -> Iterator[Page]:
    """A page in its own context (no cookies shared between tests)."""
    opened = Page(browser)
    yield opened
    errors = list(opened.errors)
    opened.close()
    assert not errors, f"the page logged errors: {errors}"
