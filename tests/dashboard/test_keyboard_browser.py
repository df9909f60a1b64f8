"""Walking the dashboard's lists with the keyboard, in headless Chromium on SQLite.

An engine serves an app with two functions and a few finished runs. On the runs,
functions, events and apps lists, j / ArrowDown and k / ArrowUp move a focused row (the
browser's focus, outlined), Enter opens the row's link, "/" goes to the page's search
box and Escape leaves it, after which the keys move rows again. The focused run stays
focused when the live view redraws the list with a new run above it, and is focused again
when the person comes back to the list from the run it opened.
"""

from __future__ import annotations

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

#: the focused row: its first link and whether it has the browser's focus and outline
_FOCUSED = """() => {
  const rows = [...document.querySelectorAll("#view tr.key-focus")];
  return rows.map((row) => ({
    href: row.querySelector("a[href]").getAttribute("href"),
    active: document.activeElement === row,
    outline: getComputedStyle(row).outlineStyle,
  }));
}"""
#: the first link of each row a person can move between, in page order
_ROWS = """() => [...document.querySelectorAll("#view table tbody tr")]
  .map((row) => row.querySelector("a[href]")).filter(Boolean).map((a) => a.getAttribute("href"))"""


def functions(client: stepline.Client) -> list[stepline.Function]:
    @client.function(id="greet", trigger=stepline.TriggerEvent(event="keys/greet"))
    async def greet(ctx: stepline.Context) -> str:
        return "hello"

    @client.function(id="wave", trigger=stepline.TriggerEvent(event="keys/wave"))
    async def wave(ctx: stepline.Context) -> str:
        return "bye"

    return [greet, wave]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """An engine with four finished runs; its URL."""
    server = EngineServer(str(tmp_path / "engine.db"), poll_interval=0.05)
    client = stepline.Client("keys", is_production=False, api_base_url=server.url)
    server.serve(client, functions(client))
    with server, httpx.Client(base_url=server.url, timeout=30) as http:
        for name in ("keys/greet", "keys/wave", "keys/greet", "keys/wave"):
            run_id = run_of(http, send(http, name))["run_id"]
            http.get(f"/v1/runs/{run_id}", params={"wait": 20})
        yield server.url


def focused(tab: Page) -> dict[str, Any]:
    [row] = tab.page.evaluate(_FOCUSED)
    return dict(row)


def press(tab: Page, key: str) -> None:
    tab.page.keyboard.press(key)


def test_the_runs_list_is_walked_and_opened_from_the_keyboard(served: str, tab: Page) -> None:
    page = tab.page
    page.goto(f"{served}/#/runs")
    page.wait_for_selector("table.runs tbody tr")
    rows: list[str] = page.evaluate(_ROWS)
    assert len(rows) == 4, rows
    assert page.evaluate(_FOCUSED) == []  # nothing until a key is pressed

    press(tab, "j")
    assert focused(tab) == {"href": rows[0], "active": True, "outline": "solid"}
    press(tab, "j")
    press(tab, "ArrowDown")
    assert focused(tab)["href"] == rows[2]
    press(tab, "k")
    assert focused(tab)["href"] == rows[1]
    press(tab, "ArrowUp")
    press(tab, "ArrowUp")  # stays on the first row
    assert focused(tab)["href"] == rows[0]
    press(tab, "j")

    # a new run redraws the live list with a row above: the same run keeps the focus
    with httpx.Client(base_url=served, timeout=30) as http:
        send(http, "keys/greet")
    wait_until(lambda: len(page.evaluate(_ROWS)) == 5 or None, message="the new run's row")
    assert focused(tab) == {"href": rows[1], "active": True, "outline": "solid"}

    # "/" goes to the search box, where keys type; Escape leaves it and j moves again
    press(tab, "/")
    box = page.evaluate(
        "document.activeElement.closest('#view form') && document.activeElement.tagName"
    )
    assert box == "INPUT"
    press(tab, "j")
    assert page.evaluate("document.activeElement.value") == "j"
    press(tab, "Escape")
    assert page.evaluate("document.activeElement === document.body")
    press(tab, "k")
    assert focused(tab)["href"] == rows[0]

    press(tab, "Enter")
    wait_until(lambda: page.evaluate("location.hash") == rows[0], message="the run to open")
    page.wait_for_selector("#view h1")
    # back on the list, the run opened is the focused row again
    page.go_back()
    page.wait_for_selector("#view tr.key-focus")
    assert focused(tab) == {"href": rows[0], "active": True, "outline": "solid"}
    press(tab, "j")
    assert focused(tab)["href"] == rows[1]


@pytest.mark.parametrize(
    ("path", "opened", "box"),
    [
        ("#/functions", "#/functions/keys-", None),
        ("#/events", "#/events/", "name"),
        ("#/apps", None, None),  # its URL box adds an app: not a search
    ],
)
def test_the_other_lists_take_the_same_keys(
    served: str, tab: Page, path: str, opened: str | None, box: str | None
) -> None:
    page = tab.page
    page.goto(f"{served}/{path}")
    page.wait_for_selector("#view table tbody tr a[href]")
    rows: list[str] = page.evaluate(_ROWS)
    assert rows, path
    press(tab, "ArrowDown")
    assert focused(tab) == {"href": rows[0], "active": True, "outline": "solid"}
    if len(rows) > 1:
        press(tab, "j")
        assert focused(tab)["href"] == rows[1]
        press(tab, "k")
    press(tab, "/")
    assert page.evaluate("document.activeElement.getAttribute('name')") == box
    press(tab, "Escape")
    if opened is None:
        return
    press(tab, "Enter")
    wait_until(lambda: page.evaluate("location.hash") == rows[0], message="the run to open")
    assert rows[0].startswith(opened), rows[0]
    page.wait_for_selector("#view h1")
