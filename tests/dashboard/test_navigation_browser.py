"""Moving between dashboard pages while a page's reads are still in flight.

Each page draws after its first reads answer. A person who moves on before they do must
keep the page they moved to: the runs list answering late once drew itself over the page
opened after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

import stepline
from tests._support.browser import Page
from tests._support.polling import wait_until
from tests.sdk.embedded_support import EngineServer

pytestmark = [pytest.mark.browser]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    server = EngineServer(str(tmp_path / "engine.db"), poll_interval=0.05)
    client = stepline.Client("nav", is_production=False, api_base_url=server.url)

    @client.function(id="greet", trigger=stepline.TriggerEvent(event="nav/greet"))
    async def greet(ctx: stepline.Context) -> str:
        return "hello"

    server.serve(client, [greet])
    with server:
        yield server.url


def test_a_list_answering_after_the_person_moved_on_leaves_the_next_page_alone(
    served: str, tab: Page
) -> None:
    page = tab.page
    held: list[Any] = []
    released = False

    def hold(route: Any) -> None:  # the runs list's reads wait until the next page drew
        if released:
            route.continue_()
        else:
            held.append(route)

    page.route("**/v1/runs?*", hold)
    page.goto(f"{served}/#/runs")
    wait_until(lambda: held, message="the runs list to ask for its runs")
    page.evaluate("location.hash = '#/functions'")
    expect(page.locator("#view h1")).to_have_text("Functions", timeout=15_000)
    released = True
    for route in held:
        route.continue_()
    # the runs page's answer has arrived and its code has run: it drew nothing here
    page.wait_for_load_state("networkidle")
    page.evaluate("new Promise((done) => requestAnimationFrame(() => setTimeout(done, 100)))")
    expect(page.locator("#view h1")).to_have_text("Functions")
    assert page.locator("#view table.functions").count() == 1
