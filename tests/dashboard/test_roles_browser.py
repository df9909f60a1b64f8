"""Roles in the dashboard, in headless Chromium: what a viewer and an operator see and do.

A production embedded engine with a viewer and an operator (``STEPLINE_DASHBOARD_KEYS``'s
users, given as settings) and runs whose event data, step output and run output hold
secrets. The viewer signs in: the header names them and their role, the run page shows
markers where the payloads were and no secret anywhere, and the actions (cancel, rerun,
replay, the runs list's selection, pausing, the audit log) are hidden. The operator signs
in: cancelling a run works; pausing is hidden, and the engine refuses it when the page asks
anyway (403). The admin reads both in the audit page.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import stepline
from stepline._serving.access import Role
from stepline.embedded import EmbeddedEngine
from stepline.engine._users import DashboardUser
from tests._support.browser import Page
from tests._support.databases import STORES, database
from tests._support.server_thread import serving

pytestmark = [pytest.mark.browser]

SIGNING_KEY = "signkey-prod-" + "b0a7" * 16
USERS = tuple(DashboardUser(f"dana-{r.value}", r, f"{r.value}-browser-key-01") for r in Role)
KEYS = {user.role: user.key for user in USERS}
SECRETS = ("s3cr3t-event-in-browser", "s3cr3t-step-in-browser", "s3cr3t-output-in-browser")


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def _functions(client: stepline.Client) -> list[stepline.Function]:
    @client.function(id="leaky", trigger=stepline.TriggerEvent(event="roles/leaky"))
    async def leaky(ctx: stepline.Context) -> str:
        await ctx.step.run("out", lambda: {"value": SECRETS[1]})
        return SECRETS[2]

    @client.function(id="hold", trigger=stepline.TriggerEvent(event="roles/hold"))
    async def hold(ctx: stepline.Context) -> None:
        await ctx.step.sleep("hold", dt.timedelta(hours=1))

    return [leaky, hold]


@pytest.fixture(params=STORES)
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """The engine's URL, a completed run with secrets and a run sleeping for an hour."""
    with database(request.param, tmp_path) as db:
        yield from _site(db)


def _site(db: str) -> Iterator[tuple[str, str, str]]:
    client = stepline.Client(
        "roles", is_production=True, signing_key=SIGNING_KEY, event_key="ev-key", environ={}
    )
    functions = _functions(client)
    embedded = EmbeddedEngine(
        client,
        functions,
        database=db,
        expose_api=True,
        poll_interval=0.05,
        dashboard_users=USERS,
    )
    try:
        done = client.start_sync(functions[0], {"token": SECRETS[0]})
        assert done.result(timeout=20) == SECRETS[2]
        held = client.start_sync(functions[1], {})
        deadline = time.monotonic() + 20
        while not any(s.status == "Sleeping" for s in held.steps()):
            assert time.monotonic() < deadline, "the run did not sleep"
            time.sleep(0.05)
        with serving(embedded.asgi_app(), lifespan="off") as url:
            yield url, done.run_id, held.run_id
    finally:
        embedded.stop()


def _sign_in(tab: Page, url: str, role: Role) -> Any:
    page = tab.page
    page.goto(f"{url}/")
    page.fill("input[name=key]", KEYS[role])
    page.click("button[type=submit]")
    expect(page.locator("#who")).to_have_text(f"dana-{role.value} · {role.value}", timeout=15_000)
    return page


def test_a_viewer_sees_no_payload_and_no_action(site: tuple[str, str, str], tab: Page) -> None:
    url, done, held = site
    tab.expected.append("403")  # the run's stream is refused to a viewer
    page = _sign_in(tab, url, Role.VIEWER)
    page.goto(f"{url}/#/runs/{done}")
    expect(page.locator("#timeline .step-name")).to_have_text(["out"], timeout=15_000)
    expect(page.locator("#run-output")).to_contain_text("redacted", timeout=15_000)
    page.wait_for_load_state("networkidle")
    content = page.content()
    assert not [s for s in SECRETS if s in content]
    for action in ("#rerun", "#export-run", "[data-nav=audit]"):
        expect(page.locator(action)).to_be_hidden()
    page.goto(f"{url}/#/runs/{held}")
    expect(page.locator("#run-id")).to_have_text(held)
    expect(page.locator("#cancel")).to_be_hidden()
    page.goto(f"{url}/#/runs")
    expect(page.locator(f'a[href="#/runs/{done}"]').first).to_be_visible()
    expect(page.locator("input.pick").first).to_be_hidden()
    expect(page.locator("#bulk-bar")).to_be_hidden()
    page.goto(f"{url}/#/functions")
    expect(page.locator("button.pause-fn").first).to_be_hidden()
    page.goto(f"{url}/#/events")
    expect(page.locator("#events-table")).to_contain_text('{"redacted":"viewer"}', timeout=15_000)
    assert not [s for s in SECRETS if s in page.content()]
    tab.screenshot("roles-viewer-run")


def test_an_operator_cancels_a_run_and_may_not_pause(site: tuple[str, str, str], tab: Page) -> None:
    url, done, held = site
    tab.expected.append("403")  # the pause the page asks for anyway
    page = _sign_in(tab, url, Role.OPERATOR)
    page.goto(f"{url}/#/runs/{done}")
    # an operator reads it
    expect(page.locator("#run-output")).to_contain_text(SECRETS[2], timeout=15_000)
    page.goto(f"{url}/#/runs/{held}")
    page.click("#cancel")
    page.click("#confirm-cancel")
    expect(page.locator(".badge").first).to_have_text("Cancelled", timeout=15_000)
    page.goto(f"{url}/#/functions")
    expect(page.locator("button.pause-fn").first).to_be_hidden()
    refused = page.evaluate(
        """async () => {
            const answer = await fetch("v1/functions/roles-leaky/pause", {
                method: "POST",
                headers: {"content-type": "application/json", "x-stepline-csrf": "1"},
                body: "{}",
            });
            return [answer.status, (await answer.json()).error];
        }"""
    )
    assert refused[0] == 403
    assert "needs the admin role; dana-operator has the operator role" in refused[1]
    # the admin reads both in the audit log
    tab.context.clear_cookies()
    page = _sign_in(tab, url, Role.ADMIN)
    page.click("a[data-nav=audit]")
    expect(page.locator("h1")).to_have_text("Audit log")
    rows = page.locator("table.audit tbody tr")
    expect(rows.filter(has_text="dana-operator").filter(has_text="cancel")).to_have_count(1)
    refusal = rows.filter(has_text="pause").filter(has_text="refused")
    expect(refusal).to_have_count(1)
    tab.screenshot("roles-audit")
