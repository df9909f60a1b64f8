"""The dashboard mounted under a web app's prefix by ``EmbeddedEngine``.

Every URL the pages use must be relative: a request that escapes ``/stepline/`` fails
the test. In production the session cookie must be scoped to the prefix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import stepline
from stepline.embedded import EmbeddedEngine
from stepline.engine._http.dashboard import COOKIE
from tests._support.browser import Page
from tests._support.server_thread import ServerThread

pytestmark = [pytest.mark.browser]

PREFIX = "/stepline"
SIGNING_KEY = "signkey-prod-" + "c0de" * 16


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


@dataclasses.dataclass
class Site:
    url: str
    seen: list[str]
    production: bool


def site(embedded: EmbeddedEngine, seen: list[str]) -> Any:
    """A web app with the engine's API and dashboard under ``PREFIX``, and nothing else."""
    mounted = embedded.asgi_app()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["path"]
        seen.append(path)
        if path == PREFIX or path.startswith(PREFIX + "/"):
            await mounted(dict(scope, root_path=PREFIX), receive, send)
            return
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"not the dashboard"})

    return app


def greeter(client: stepline.Client) -> stepline.Function:
    @client.function(id="greet", trigger=stepline.TriggerEvent(event="web/greet"))
    async def greet(ctx: stepline.Context) -> str:
        name = await ctx.step.run("name", lambda: str(ctx.event.data.get("name", "world")))
        return f"hello {name}"

    return greet


@pytest.fixture(params=["dev", "production"])
def mounted(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    production = request.param == "production"
    client = stepline.Client(
        app_id="web",
        is_production=production,
        signing_key=SIGNING_KEY if production else None,
        event_key="ev-key" if production else None,
    )
    embedded = EmbeddedEngine(
        client,
        [greeter(client)],
        database=str(tmp_path / "embedded.db"),
        expose_api=True,
        poll_interval=0.05,
        retry_scale=0.0,
    )
    seen: list[str] = []
    server = ServerThread("web-app")
    try:
        server.start(site(embedded, seen))
        yield Site(server.url, seen, production)
    finally:
        server.stop()
        embedded.stop()


def test_dashboard_works_under_a_prefix(mounted: Site, tab: Page) -> None:
    page = tab.page
    # no trailing slash: the page moves itself to /stepline/ so relative URLs resolve
    page.goto(f"{mounted.url}{PREFIX}")
    page.wait_for_url(f"{mounted.url}{PREFIX}/**")
    if mounted.production:
        tab.screenshot("embedded-login")
        page.fill("input[name=key]", SIGNING_KEY)
        page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Runs")
    if mounted.production:
        [session] = [c for c in tab.context.cookies() if c["name"] == COOKIE]
        assert session["path"] == PREFIX  # not sent to the rest of the site

    page.click("a[data-nav=functions]")
    page.click("a:has-text('greet')")
    page.locator("form.send-event textarea").fill('{"name": "mounted"}')
    page.click("form.send-event button[type=submit]")
    result = page.locator("#test-results li", has_text="Sent event")
    expect(result.locator(".badge")).to_have_text("Completed", timeout=20_000)
    result.locator("a[href^='#/runs/']").click()
    expect(page.locator("#run-output")).to_contain_text("hello mounted")
    expect(page.locator("#timeline .step-name")).to_have_text(["name"])
    page.click("a[data-nav=apps]")
    expect(page.locator("table.apps")).to_contain_text("in-process")
    tab.screenshot(f"embedded-apps-{'production' if mounted.production else 'dev'}")

    escaped = [path for path in mounted.seen if not path.startswith(PREFIX)]
    assert not escaped, f"requests outside {PREFIX}: {escaped}"
    assert f"{PREFIX}/v1/runs" in mounted.seen


def test_the_api_under_the_prefix_needs_the_session_in_production(mounted: Site) -> None:
    with httpx.Client(base_url=f"{mounted.url}{PREFIX}", timeout=30) as http:
        assert http.get("/v1/runs").status_code == (401 if mounted.production else 200)
        if mounted.production:
            signed = http.post("/login", data={"key": SIGNING_KEY}, follow_redirects=False)
            assert signed.status_code == 303
            # the cookie has the prefix as its default path: the jar sends it back there
            assert http.get("/v1/runs").status_code == 200
            assert 'src="dashboard/app.js"' in http.get("/").text
