"""Dashboard fixtures: a fresh Postgres schema, headless Chromium and a page in it.

The browser is Debian's ``chromium`` driven by Playwright (see ``tests/_support/browser``).
Without Chromium or Playwright the browser tests skip, except under CI (``CI=true``), where
they fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._support.browser import CHROMIUM, Page
from tests._support.ci import unavailable
from tests._support.databases import postgres_schema


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A Postgres URL whose ``search_path`` is a fresh schema (dropped afterwards)."""
    with postgres_schema("dash") as url:
        yield url


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium under Playwright, shared by this package's tests.

    Not by the session: while it is open, Playwright's event loop runs on the main
    thread, and ``asyncio.run`` there fails (use ``arun(..., own_thread=True)``).
    """
    if not Path(CHROMIUM).exists():
        unavailable(f"Chromium at {CHROMIUM} (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def tab(browser: Any) -> Iterator[Page]:
    """A page in its own context (no cookies shared between tests)."""
    opened = Page(browser)
    yield opened
    errors = list(opened.errors)
    opened.close()
    assert not errors, f"the page logged errors: {errors}"
