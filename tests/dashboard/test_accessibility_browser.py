"""Every dashboard page passes axe-core's checks in headless Chromium, light and dark.

axe-core comes from npm, installed into ``tests/dashboard/axe/node_modules`` from the
committed lock (``tests/_support/npm``). An engine on SQLite serves an app whose runs
completed, failed, sleep and carry a conversation, so the lists and the run page have
rows. The pages are every link of the dashboard's navigation (read from the page, so a
page added there is checked too), a run (also with a step open in its side panel), a
function, an event and a conversation page, and the production sign-in form. A page
fails on any violation of impact "serious" or "critical"; no rule is disabled.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import stepline
from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app
from tests._support import npm
from tests._support.browser import Page, run_of, send
from tests._support.server_thread import ServerThread
from tests.sdk.embedded_support import EngineServer

pytestmark = [pytest.mark.browser, pytest.mark.process]

AXE = Path(__file__).resolve().parent / "axe"
SCHEMES = ("light", "dark")
BLOCKING = ("serious", "critical")
#: what each page has drawn once it is ready to check
READY = "#view h1"


@pytest.fixture
def tab(browser: Any) -> Iterator[Page]:
    """A page whose context ignores the dashboard's CSP: axe-core adds inline styles."""
    opened = Page(browser, bypass_csp=True)
    yield opened
    errors = list(opened.errors)
    opened.close()
    assert not errors, f"the page logged errors: {errors}"


@pytest.fixture(scope="module")
def axe_source() -> str:
    return (npm.installed(AXE) / "axe-core" / "axe.min.js").read_text("utf-8")


def functions(client: stepline.Client) -> list[stepline.Function]:
    @client.function(id="ship", trigger=stepline.TriggerEvent(event="a11y/ship"))
    async def ship(ctx: stepline.Context) -> dict[str, Any]:
        box = await ctx.step.run("pack", lambda: {"box": "small"})
        return {"shipped": box}

    @client.function(id="doomed", trigger=stepline.TriggerEvent(event="a11y/doomed"), retries=0)
    async def doomed(ctx: stepline.Context) -> None:
        raise stepline.NonRetriableError("out of stock")

    @client.function(id="nap", trigger=stepline.TriggerEvent(event="a11y/nap"))
    async def nap(ctx: stepline.Context) -> None:
        await ctx.step.sleep("snooze", dt.timedelta(hours=1))

    return [ship, doomed, nap]


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """An engine with a few runs; its URL and the ids of a run, a function and an event."""
    database = str(tmp_path / "engine.db")
    server = EngineServer(database, poll_interval=0.05, retry_scale=0.0, retry_jitter=0.0)
    client = stepline.Client("a11y", is_production=False, api_base_url=server.url)
    server.serve(client, functions(client))
    with server, httpx.Client(base_url=server.url, timeout=30) as http:
        ids: dict[str, str] = {}
        for name in ("a11y/ship", "a11y/doomed", "a11y/nap", "a11y/ship"):
            event_id = send(http, name, {"order": 7})
            run_id = str(run_of(http, event_id)["run_id"])
            if name != "a11y/nap":
                http.get(f"/v1/runs/{run_id}", params={"wait": 20})
            if name == "a11y/ship":  # a durable agent's runs carry their conversation's id
                marked = {"attributes": {"conversation": "chat-1"}}
                answer = http.post(f"/v1/runs/{run_id}/attributes", json=marked)
                assert answer.status_code == 200, answer.text
            ids.setdefault(name, run_id)
            ids["event"] = event_id
        yield server.url, ids


def violations(page: Any, axe_source: str) -> list[str]:
    """axe's blocking violations on the page as it is, one line per rule and node."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(axe_source)
    found = page.evaluate("""async () => {
      const result = await axe.run(document, { resultTypes: ["violations"] });
      return result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
        nodes: v.nodes.map((n) => `${n.target.join(" ")} ${n.html.slice(0, 160)}: `
          + n.failureSummary) }));
    }""")
    return [
        f"{v['id']} ({v['impact']}, {v['help']}): {node}"
        for v in found
        if v["impact"] in BLOCKING
        for node in v["nodes"]
    ]


def check(
    tab: Page, axe_source: str, url: str, ready: str = READY, opened: tuple[str, str] | None = None
) -> dict[str, list[str]]:
    """The blocking violations of the page at ``url`` in each colour scheme; with
    ``opened`` (what to click, what it shows), of the page in that state."""
    out: dict[str, list[str]] = {}
    for scheme in SCHEMES:
        tab.page.emulate_media(color_scheme=scheme)
        tab.page.goto(url)
        tab.page.wait_for_selector(ready)
        tab.page.wait_for_load_state("networkidle")
        if opened is not None:
            tab.page.locator(opened[0]).first.click()
            tab.page.wait_for_selector(opened[1])
        found = violations(tab.page, axe_source)
        if found:
            out[scheme] = found
    return out


def test_every_dashboard_page_passes_axe(
    seeded: tuple[str, dict[str, str]], tab: Page, axe_source: str
) -> None:
    url, ids = seeded
    tab.page.goto(f"{url}/#/runs")
    tab.page.wait_for_selector("table.runs")
    navigation: list[str] = tab.page.eval_on_selector_all(
        "header [data-nav]", "links => links.map((a) => a.getAttribute('href'))"
    )
    assert {"#/runs", "#/functions", "#/events", "#/apps"} <= set(navigation), navigation
    pages = [
        *navigation,
        f"#/runs/{ids['a11y/ship']}",
        f"#/runs/{ids['a11y/doomed']}",
        "#/functions/a11y-ship",
        f"#/events/{ids['event']}",
        "#/conversations/chat-1",
    ]
    failures = {page: found for page in pages if (found := check(tab, axe_source, f"{url}/{page}"))}
    # the run page with a step open in its side panel
    run = f"#/runs/{ids['a11y/ship']}"
    panel = ("button.inspect-step", "#step-panel:not([hidden])")
    if found := check(tab, axe_source, f"{url}/{run}", opened=panel):
        failures[f"{run} (step panel)"] = found
    assert not failures, "\n".join(
        f"{page} [{scheme}]: {line}"
        for page, schemes in failures.items()
        for scheme, lines in schemes.items()
        for line in lines
    )


def test_the_sign_in_page_passes_axe(tmp_path: Path, tab: Page, axe_source: str) -> None:
    settings = EngineSettings(
        mode="start",
        database_url=str(tmp_path / "e.db"),
        signing_keys=("signkey-prod-" + "5eed" * 16,),
        event_keys=("ev-key",),
        dashboard_keys=("correct horse battery staple",),
    )
    server = ServerThread("engine-a11y-login")
    server.start(build_app(Engine(settings)))
    try:
        found = check(tab, axe_source, f"{server.url}/", ready="form.login")
        assert not found, found
        # a refused key's message is part of the page too
        tab.page.fill("input[name=key]", "wrong")
        tab.page.click("button[type=submit]")
        tab.page.wait_for_selector("text=That key was not accepted.")
        assert not violations(tab.page, axe_source)
    finally:
        server.stop()
