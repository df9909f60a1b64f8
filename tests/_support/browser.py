"""The dashboard tests' pages in headless Chromium, and the engine calls they make around them.

The browser is Debian's ``chromium`` (``apt-get install chromium``; ``STEPLINE_CHROMIUM``
names another) driven by Playwright with ``executable_path``; browsers Playwright downloads
itself are never used. Screenshots go to ``artifacts/screenshots/`` at the repository root.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from tests._support.polling import wait_until

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = os.environ.get("STEPLINE_CHROMIUM", "/usr/bin/chromium")


class Page:
    """A fresh browser context and page; JavaScript errors fail the test at teardown.

    ``options`` go to Playwright's ``new_context`` (``bypass_csp=True`` lets a test inject
    a script the dashboard's Content-Security-Policy would refuse, such as axe-core).
    """

    def __init__(self, browser: Any, **options: Any) -> None:
        options.setdefault("viewport", {"width": 1280, "height": 860})
        self.context = browser.new_context(**options)
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


def send(http: httpx.Client, name: str, data: dict[str, Any] | None = None, **extra: Any) -> str:
    """Send one event through ``/e/{key}``; returns its internal id."""
    answer = http.post("/e/test-key", json={"name": name, "data": data or {}, **extra})
    assert answer.status_code == 200, answer.text
    event_id: str = answer.json()["ids"][0]
    return event_id


def run_of(http: httpx.Client, event_id: str, timeout: float = 15.0) -> dict[str, Any]:
    """The run an event started, once the engine has linked it."""

    def check() -> dict[str, Any] | None:
        runs: list[dict[str, Any]] = http.get(f"/v1/events/{event_id}/runs").json()["data"]
        return runs[0] if runs else None

    return wait_until(check, message=f"a run of event {event_id}", timeout=timeout)
