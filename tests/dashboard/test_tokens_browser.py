"""Tokens, conversations and budget approvals in the dashboard, in headless Chromium.

A real engine over HTTP serves an app in-process with three functions: ``chat`` runs a
durable agent (Pydantic AI's ``FunctionModel``, offline) that looks something up with a
tool and then answers, two model requests, in a conversation; ``plain`` makes no model
request; ``metered`` runs the same agent under a run budget of 1 token that asks a person
to go over it. The run page shows a run's tokens (totals, per model, per model-request
step) only when it made model requests, and links a conversation's run to the
conversation's page (its runs in order, with status, start and tokens); the function page
charts tokens per bucket only for a function that used some; the Approvals page lists the
run over budget with its figures and no arguments, and approving it lets the request go.
Every figure on the page is checked against the REST answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import stepline
from stepline.ai import DurableAgent, TokenBudget
from tests._support.browser import Page, run_of, send
from tests._support.polling import wait_until
from tests.sdk.embedded_support import ClosingEngineServer

pytestmark = [pytest.mark.browser]


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def looking_up(budget: TokenBudget | None = None) -> DurableAgent[None, str]:
    """A tool call, then the answer: two model requests."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if any(
            isinstance(m, ModelResponse) and m.parts[0].part_kind == "tool-call"
            for m in messages[-2:]
        ):
            return ModelResponse(parts=[TextPart("order 7 shipped on Monday")])
        return ModelResponse(parts=[ToolCallPart("lookup", {"order": "7"}, f"c{len(messages)}")])

    agent: Agent[None, str] = Agent(FunctionModel(respond), name="support")

    @agent.tool_plain
    def lookup(order: str) -> str:
        """Look an order up."""
        return f"order {order}: shipped"

    return DurableAgent(agent, stream=False, budget=budget)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[str, httpx.Client]]:
    server = ClosingEngineServer(str(tmp_path / "engine.db"), poll_interval=0.05)
    client = server.client = stepline.Client("desk", is_production=False, api_base_url=server.url)
    support = looking_up()
    metered_agent = looking_up(TokenBudget(1, on_exceeded="approve"))

    @client.function(id="chat", trigger=stepline.TriggerEvent(event="desk/said"))
    async def chat(ctx: stepline.Context) -> str:
        said = ctx.event.data
        result = await support.on(ctx).run(said["prompt"], conversation_id=said["conversation"])
        return result.output

    @client.function(id="plain", trigger=stepline.TriggerEvent(event="desk/plain"))
    async def plain(ctx: stepline.Context) -> str:
        return await ctx.step.run("work", lambda: "worked")

    @client.function(id="metered", trigger=stepline.TriggerEvent(event="desk/metered"))
    async def metered(ctx: stepline.Context) -> str:
        return (await metered_agent.on(ctx).run("where is order 7?")).output

    server.serve(client, [chat, plain, metered])
    with server, httpx.Client(base_url=server.url, timeout=30) as http:
        yield server.url, http


def ended(http: httpx.Client, run_id: str) -> dict[str, Any]:
    found: dict[str, Any] = http.get(f"/v1/runs/{run_id}", params={"wait": 20}).json()["data"]
    assert found["status"] == "Completed", found
    return found


def test_a_runs_tokens_and_its_conversations_runs_in_order(
    engine: tuple[str, httpx.Client], tab: Page
) -> None:
    url, http = engine
    runs = []
    for prompt in ("Where is order 7?", "And order 8?"):
        said = {"conversation": "c-1", "prompt": prompt}
        runs.append(run_of(http, send(http, "desk/said", said))["run_id"])
        ended(http, runs[-1])
    plain = run_of(http, send(http, "desk/plain"))["run_id"]
    ended(http, plain)
    used = [http.get(f"/v1/runs/{r}/tokens").json()["data"] for r in runs]
    assert [u["requests"] for u in used] == [2, 2]
    steps = {s["id"]: s["name"] for s in http.get(f"/v1/runs/{runs[0]}/steps").json()["data"]}

    page = tab.page
    page.goto(f"{url}/#/runs/{runs[0]}")
    section = page.locator("#run-tokens")
    expect(section).to_be_visible()
    for name in ("input_tokens", "output_tokens", "total_tokens", "requests"):
        expect(section.locator(f"[data-figure={name}]")).to_have_text(f"{used[0][name]:,}")
    [model] = used[0]["models"]
    expect(section.locator("#tokens-models tbody tr")).to_have_count(1)
    expect(section.locator("#tokens-models tbody tr td").first).to_have_text(model)
    rows = section.locator("#tokens-steps tbody tr")
    expect(rows).to_have_count(2)
    for i, step in enumerate(used[0]["steps"]):
        expect(rows.nth(i).locator("td").first).to_have_text(steps[step["step_id"]])
        expect(rows.nth(i).locator("td").nth(3)).to_have_text(f"{step['input_tokens']:,}")
    assert [steps[s["step_id"]] for s in used[0]["steps"]] == [
        "support:model-request-1",
        "support:model-request-2",
    ]

    page.locator("#run-conversation").click()
    expect(page.locator("h1")).to_contain_text("c-1")
    table = page.locator("#conversation-table tbody tr")
    expect(table).to_have_count(2)
    for i, run_id in enumerate(runs):
        row = table.nth(i)
        expect(row).to_have_attribute("data-run", run_id)
        expect(row.locator(".badge")).to_have_text("Completed")
        expect(row.locator("[data-figure=total_tokens]")).to_have_text(
            f"{used[i]['total_tokens']:,}"
        )
    tab.screenshot("conversation")
    table.nth(1).locator(f'a[href="#/runs/{runs[1]}"]').click()
    expect(page.locator("#run-id")).to_have_text(runs[1])
    tab.screenshot("run-tokens")

    # a run without model requests shows no tokens, and no conversation
    page.goto(f"{url}/#/runs/{plain}")
    expect(page.locator("#run-id")).to_have_text(plain)
    expect(page.locator("#timeline")).to_be_visible()
    expect(page.locator("#run-tokens")).to_be_hidden()
    expect(page.locator("#run-conversation")).to_have_count(0)


def test_a_functions_tokens_over_time_only_when_it_used_some(
    engine: tuple[str, httpx.Client], tab: Page
) -> None:
    url, http = engine
    for prompt in ("Where is order 7?", "And order 8?"):
        said = {"conversation": "c-2", "prompt": prompt}
        ended(http, run_of(http, send(http, "desk/said", said))["run_id"])
    ended(http, run_of(http, send(http, "desk/plain"))["run_id"])
    figures = http.get("/v1/functions/desk-chat/tokens", params={"window": "1h"}).json()["data"]
    assert figures["totals"]["requests"] == 4

    page = tab.page
    page.goto(f"{url}/#/functions/desk-chat?window=1h")
    section = page.locator("#function-tokens")
    expect(section).to_be_visible()
    bars = section.locator("svg[data-chart=tokens] rect.bar")
    expect(bars.first).to_be_visible()
    shown = 0
    for i in range(bars.count()):
        bar = bars.nth(i)
        bucket = figures["buckets"][int(bar.get_attribute("data-bucket") or -1)]
        series = bar.get_attribute("data-series") or ""
        assert bucket[series] == int(bar.get_attribute("data-value") or -1)
        shown += bucket[series]
    assert shown == figures["totals"]["total_tokens"]
    requests = section.locator("svg[data-chart=model-requests] rect.bar")
    assert (
        sum(int(requests.nth(i).get_attribute("data-value") or 0) for i in range(requests.count()))
        == 4
    )
    total = f"{figures['totals']['total_tokens']:,}"
    expect(section.locator("#tokens-totals")).to_contain_text(f"Whole window: {total} tokens")
    expect(section.locator("#tokens-totals")).to_contain_text("in 4 model requests")
    tab.screenshot("function-tokens")

    page.goto(f"{url}/#/functions/desk-plain?window=1h")
    expect(page.locator("[data-chart=started]").first).to_be_visible()
    expect(page.locator("#function-tokens")).to_have_count(0)


def test_a_run_over_its_budget_waits_in_the_inbox_and_goes_on_once_approved(
    engine: tuple[str, httpx.Client], tab: Page
) -> None:
    url, http = engine
    run_id = run_of(http, send(http, "desk/metered"))["run_id"]

    def asked() -> dict[str, Any] | None:
        found = http.get("/v1/approvals").json()["data"]
        return found[0] if found else None

    approval = wait_until(asked, message="the run to ask to go over its budget")
    budget = approval["budget"]
    assert (approval["tool"], budget["request"]) == (None, "support:model-request-2")

    page = tab.page
    page.goto(f"{url}/#/approvals")
    card = page.locator(f"#approval-{approval['approval_id']}")
    expect(card).to_have_class("approval card budget-approval")
    expect(card.locator("h3")).to_contain_text("Over its token budget (the run's own)")
    expect(card.locator("[data-figure=used]")).to_have_text(f"{budget['used']} of 1 for the run")
    expect(card).to_contain_text("support:model-request-2")
    expect(card.locator(".approval-args")).to_be_empty()  # nothing to edit
    expect(card.locator("input[name=reason]")).to_have_attribute(
        "placeholder", "Reason (in the run's error)"
    )
    expect(card).to_contain_text("fails at")
    tab.screenshot("approvals-budget")
    card.locator("button.approve").click()
    expect(page.locator("#approval-message")).to_contain_text(
        f"Approved going over the run's token budget in run {run_id}"
    )
    expect(page.locator("#approvals")).to_contain_text("Nothing waits for a decision.")
    assert ended(http, run_id)["output"] == "order 7 shipped on Monday"
    decided = http.get(f"/v1/approvals/{approval['approval_id']}").json()["data"]
    assert (decided["status"], decided["decision"]["by"]) == ("approved", "dashboard")
