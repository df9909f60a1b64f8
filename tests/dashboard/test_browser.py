"""The dashboard end to end in headless Chromium: an engine and an SDK app over real HTTP.

Each test drives the pages a developer would and checks what the engine did through the
REST API; screenshots of the main pages land in ``artifacts/screenshots/``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import stepline
import stepline.asgi
from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app
from tests._support import refusing
from tests._support.browser import Page, run_of, send
from tests._support.clients import closing_client
from tests._support.polling import wait_until
from tests._support.server_thread import ServerThread

pytestmark = [pytest.mark.browser]


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def shop(client: stepline.Client) -> list[stepline.Function]:
    """The app under test: a run that completes, one that waits, one that fails, a limit."""

    @client.function(id="greet", trigger=stepline.TriggerEvent(event="shop/greet"))
    async def greet(ctx: stepline.Context) -> dict[str, str]:
        who = await ctx.step.run("lookup", lambda: {"name": ctx.event.data.get("name", "world")})
        await ctx.step.sleep("pause", dt.timedelta(seconds=1))
        return {"greeting": f"hello {who['name']}"}

    @client.function(id="checkout", trigger=stepline.TriggerEvent(event="shop/order"))
    async def checkout(ctx: stepline.Context) -> dict[str, Any]:
        await ctx.step.run("reserve", lambda: {"reserved": ctx.event.data["order"]})
        paid = await ctx.step.wait_for_event(
            "payment",
            event="shop/paid",
            timeout=dt.timedelta(hours=1),
            if_exp="event.data.order == async.data.order",
        )
        return {"paid": paid is not None}

    @client.function(id="explode", trigger=stepline.TriggerEvent(event="shop/explode"), retries=0)
    async def explode(ctx: stepline.Context) -> None:
        def fail() -> None:
            raise ValueError("the warehouse is on fire")

        await ctx.step.run("burn", fail)

    @client.function(
        id="limited",
        trigger=stepline.TriggerEvent(event="shop/limited"),
        rate_limit=stepline.RateLimit(limit=1, period=dt.timedelta(minutes=1)),
    )
    async def limited(ctx: stepline.Context) -> str:
        return "ok"

    return [greet, checkout, explode, limited]


@dataclasses.dataclass
class Stack:
    url: str
    http: httpx.Client
    app_url: str

    def finished(self, run_id: str) -> dict[str, Any]:
        found = self.http.get(f"/v1/runs/{run_id}", params={"wait": "20"}).json()["data"]
        assert found["status"] in ("Completed", "Failed", "Cancelled"), found
        return dict(found)

    def waiting(self, run_id: str) -> None:
        def check() -> bool | None:
            steps = self.http.get(f"/v1/runs/{run_id}/steps").json()["data"]
            return True if any(s["status"] == "Waiting" for s in steps) else None

        wait_until(check, message=f"run {run_id} to wait for an event")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    engine_server, app_server = ServerThread("engine"), ServerThread("shop-app")
    client = stepline.Client(
        app_id="shop",
        is_production=False,
        api_base_url=engine_server.url,
        event_api_base_url=engine_server.url,
    )
    app_url = f"{app_server.url}/api/inngest"
    settings = EngineSettings(
        database_url=str(tmp_path_factory.mktemp("dashboard") / "engine.db"),
        retry_scale=0.0,
        retry_jitter=0.0,
        poll_interval=0.05,
        app_urls=(app_url,),
    )
    with contextlib.ExitStack() as stop:
        stop.callback(engine_server.stop)  # LIFO: the app stops first
        app_server.start(closing_client(stepline.asgi.serve(client, shop(client)), client))
        stop.callback(app_server.stop)
        engine_server.start(build_app(Engine(settings)))
        http = stop.enter_context(httpx.Client(base_url=engine_server.url, timeout=30))
        wait_until(lambda: http.get("/v1/apps").json()["data"] or None, message="the app to sync")
        yield Stack(engine_server.url, http, app_url)


def cells(tab: Page, column: int) -> list[str]:
    texts: list[str] = tab.page.locator(
        f"table.runs tbody td:nth-child({column})"
    ).all_inner_texts()
    return texts


def test_runs_list_filters_and_run_page(stack: Stack, tab: Page) -> None:
    greeted = run_of(stack.http, send(stack.http, "shop/greet", {"name": "ada"}))
    greet_event = greeted["event_ids"][0]
    failed = run_of(stack.http, send(stack.http, "shop/explode"))
    stack.finished(greeted["run_id"])
    stack.finished(failed["run_id"])
    page = tab.page

    page.goto(f"{stack.url}/")
    expect(page.locator(f"a[href='#/runs/{greeted['run_id']}']")).to_be_visible()
    expect(page.locator(f"a[href='#/runs/{failed['run_id']}']")).to_be_visible()
    tab.screenshot("runs-list")

    def reset() -> None:
        # the list re-renders once the filters are gone: fill the new form, not the old one
        page.click("a.button:has-text('Reset')")
        expect(page.locator(f"a[href='#/runs/{greeted['run_id']}']")).to_be_visible()
        expect(page.locator(f"a[href='#/runs/{failed['run_id']}']")).to_be_visible()

    # by function
    page.select_option("select[name=function_id]", "shop-explode")
    page.click("#run-filters button[type=submit]")
    wait_until(lambda: set(cells(tab, 3)) == {"shop-explode"} or None, message="function filter")
    assert "function_id=shop-explode" in page.url

    # by status, on top of the function
    page.check("input[name=status][value=Completed]")
    page.click("#run-filters button[type=submit]")
    expect(page.locator("p.empty")).to_have_text("No runs match these filters.")
    reset()
    page.check("input[name=status][value=Failed]")
    page.click("#run-filters button[type=submit]")
    wait_until(lambda: set(cells(tab, 1)) == {"Failed"} or None, message="status filter")

    # by time range: the last hour has them, a custom range in the past has none
    reset()
    page.select_option("select[name=range]", "1h")
    page.click("#run-filters button[type=submit]")
    expect(page.locator(f"a[href='#/runs/{greeted['run_id']}']")).to_be_visible()
    page.select_option("select[name=range]", "custom")
    page.fill("input[name=since]", "2001-01-01T00:00")
    page.fill("input[name=until]", "2001-01-02T00:00")
    page.click("#run-filters button[type=submit]")
    expect(page.locator("p.empty")).to_be_visible()

    # by event id
    reset()
    page.fill("input[name=event_id]", greet_event)
    page.click("#run-filters button[type=submit]")
    wait_until(lambda: cells(tab, 2) == [greeted["run_id"]] or None, message="event filter")

    # the run page: status, steps in order, a step's output, trigger event, final output
    page.click(f"a[href='#/runs/{greeted['run_id']}']")
    expect(page.locator("h1 .badge")).to_have_text("Completed")
    names = page.locator("#timeline .step-name")
    expect(names).to_have_text(["lookup", "pause"])
    expect(page.locator("#timeline details.step").nth(1)).to_contain_text("Sleep")
    names.first.click()
    expect(page.locator("#timeline details.step").first).to_contain_text('"name": "ada"')
    expect(page.locator("details.event")).to_contain_text("shop/greet")
    expect(page.locator("#run-output")).to_contain_text('"greeting": "hello ada"')
    tab.screenshot("run-completed")

    # a failed run shows the error with its stack
    page.goto(f"{stack.url}/#/runs/{failed['run_id']}")
    expect(page.locator("h1 .badge")).to_have_text("Failed")
    page.locator("#timeline .step-name").first.click()
    body = page.locator("#timeline .error-box")
    expect(body).to_contain_text("ValueError")
    expect(body).to_contain_text("the warehouse is on fire")
    expect(body.locator("pre.stack")).to_contain_text("Traceback")
    tab.screenshot("run-failed")


def test_cancel_a_waiting_run(stack: Stack, tab: Page) -> None:
    run = run_of(stack.http, send(stack.http, "shop/order", {"order": 1}))
    stack.waiting(run["run_id"])
    page = tab.page
    page.goto(f"{stack.url}/#/runs/{run['run_id']}")
    expect(page.locator("h1 .badge")).to_have_text("Running")
    payment = page.locator("#timeline details.step", has_text="payment")
    expect(payment.locator(".badge")).to_have_text("Waiting")
    payment.locator("summary").click()
    expect(payment).to_contain_text("Waits for event shop/paid")
    expect(payment).to_contain_text("event.data.order == async.data.order")
    tab.screenshot("run-waiting")

    page.click("#cancel")
    page.click("#confirm-cancel")
    expect(page.locator("h1 .badge")).to_have_text("Cancelled")
    assert stack.finished(run["run_id"])["status"] == "Cancelled"
    expect(page.locator("#cancel")).to_have_count(0)


def test_resume_a_waiting_step_by_sending_the_event(stack: Stack, tab: Page) -> None:
    run = run_of(stack.http, send(stack.http, "shop/order", {"order": 2}))
    stack.waiting(run["run_id"])
    page = tab.page
    page.goto(f"{stack.url}/#/runs/{run['run_id']}")
    payment = page.locator("#timeline details.step", has_text="payment")
    payment.locator("summary").click()
    # the form is filled in from the wait's expression and the trigger event
    data = payment.locator(".resume textarea")
    assert json.loads(data.input_value()) == {"order": 2}
    payment.locator(".resume button[type=submit]").click()
    expect(page.locator("h1 .badge")).to_have_text("Completed", timeout=20_000)
    expect(page.locator("#run-output")).to_contain_text('"paid": true')


def test_send_a_test_event_and_invoke_from_the_function_page(stack: Stack, tab: Page) -> None:
    page = tab.page
    page.goto(f"{stack.url}/#/functions")
    expect(page.locator("table.functions")).to_contain_text("shop/greet")
    expect(page.locator("table.functions")).to_contain_text("Rate limit")
    tab.screenshot("functions")

    page.click("a:has-text('greet')")
    expect(page.locator("h1")).to_have_text("greet")
    form = page.locator("form.send-event")
    expect(form.locator("input[name=name]")).to_have_value("shop/greet")
    form.locator("textarea").fill('{"name": "grace"}')
    form.locator("button[type=submit]").click()
    result = page.locator("#test-results li", has_text="Sent event")
    expect(result).to_contain_text("Sent event")
    expect(result.locator(".badge")).to_have_text("Completed", timeout=20_000)
    tab.screenshot("function")

    invoke = page.locator("form.invoke")
    invoke.locator("textarea").fill('{"name": "linus"}')
    invoke.locator("button[type=submit]").click()
    invoked = page.locator("#test-results li", has_text="Invoked")
    expect(invoked.locator(".badge")).to_have_text("Completed", timeout=20_000)

    result.locator("a[href^='#/runs/']").click()
    expect(page.locator("#run-output")).to_contain_text('"greeting": "hello grace"')


def test_events_page_shows_payload_and_why_no_run_started(stack: Stack, tab: Page) -> None:
    unheard = send(stack.http, "shop/unheard", {"x": 1})
    first = send(stack.http, "shop/limited")
    run_of(stack.http, first)
    second = send(stack.http, "shop/limited")

    def skipped() -> list[Any] | None:
        found = stack.http.get(f"/v1/events/{second}/runs").json()["metadata"]["skipped"]
        return found or None

    wait_until(skipped, message="the rate limit to skip the second event")
    page = tab.page
    page.goto(f"{stack.url}/#/events")
    expect(page.locator("table.events")).to_contain_text("shop/unheard")
    tab.screenshot("events")

    page.fill("#event-filter input[name=name]", "shop/unheard")
    page.click("#event-filter button[type=submit]")
    expect(page.locator("table.events tbody tr")).to_have_count(1)
    page.click(f"a[href='#/events/{unheard}']")
    expect(page.locator("h1")).to_have_text("shop/unheard")
    expect(page.locator("pre.json").first).to_contain_text('"x": 1')
    expect(page.locator("#why-none")).to_contain_text("no registered function is triggered by")

    page.goto(f"{stack.url}/#/events/{second}")
    expect(page.locator("ul.skipped")).to_contain_text("Rate limited")
    tab.screenshot("event-skipped")
    page.goto(f"{stack.url}/#/events/{first}")
    expect(page.locator("#event-runs table.runs tbody tr")).to_have_count(1)


def test_apps_page_shows_sync_status_and_resyncs(stack: Stack, tab: Page) -> None:
    page = tab.page
    page.goto(f"{stack.url}/#/apps")
    row = page.locator("table.apps tbody tr", has_text="shop")
    expect(row).to_contain_text(stack.app_url)
    expect(row.locator(".badge")).to_have_text("synced")
    before = stack.http.get("/v1/apps").json()["data"][0]["synced_at"]
    row.locator("button.resync").click()
    expect(page.locator("#sync-message")).to_contain_text(f"Synced {stack.app_url}")
    after = stack.http.get("/v1/apps").json()["data"][0]["synced_at"]
    assert after > before
    tab.screenshot("apps")

    page.fill("input[name=url]", refusing.url("/api/inngest"))
    page.click("form.filters button[type=submit]")
    expect(page.locator("#sync-message .notice.error")).to_contain_text(
        f"127.0.0.1:{refusing.port()}"
    )


def test_runs_list_updates_live(stack: Stack, tab: Page) -> None:
    page = tab.page
    page.goto(f"{stack.url}/#/runs")
    expect(page.locator("table.runs")).to_be_visible()
    run = run_of(stack.http, send(stack.http, "shop/greet", {"name": "live"}))
    # no reload: the list polls the API
    link = page.locator(f"a[href='#/runs/{run['run_id']}']")
    expect(link).to_be_visible(timeout=10_000)
    row = page.locator("table.runs tbody tr", has=link)
    expect(row.locator(".badge")).to_have_text("Completed", timeout=15_000)
