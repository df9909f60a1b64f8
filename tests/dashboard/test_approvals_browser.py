"""The dashboard's approvals inbox in headless Chromium: durable agents' tool calls waiting.

A real engine over HTTP serves an app in-process whose durable agent asks to refund an
order (a tool that needs approval) and says what the tool answered. The Approvals page
lists the two pending calls under their function, with a form built from the tool's
argument schema; one is approved with an edited amount (a wrong one is refused first,
with the engine's reason), the other rejected with a reason. Each run ends with what its
decision gave the model, and each decision is recorded as the dashboard's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

import stepline
from stepline.ai import DurableAgent
from tests._support.browser import Page, run_of, send
from tests._support.polling import wait_until
from tests.sdk.embedded_support import ClosingEngineServer

pytestmark = [pytest.mark.browser]


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def refund_agent() -> DurableAgent[None, str]:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        answered = [
            part.content
            for message in messages
            for part in getattr(message, "parts", ())
            if isinstance(part, ToolReturnPart)
        ]
        if answered:
            return ModelResponse(parts=[TextPart(f"tool said: {answered[0]}")])
        return ModelResponse(parts=[ToolCallPart("refund", {"order": "7", "cents": 500}, "c1")])

    agent: Agent[None, str] = Agent(FunctionModel(respond), name="refunds")

    @agent.tool_plain(requires_approval=True)
    def refund(order: str, cents: int, express: bool = False) -> str:
        """Refund an order, in cents."""
        return f"refunded {cents} on {order}" + (" (express)" if express else "")

    return DurableAgent(agent, stream=False)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[str, httpx.Client]]:
    server = ClosingEngineServer(str(tmp_path / "engine.db"), poll_interval=0.05)
    client = server.client = stepline.Client("inbox", is_production=False, api_base_url=server.url)
    agent = refund_agent()

    @client.function(id="support", trigger=stepline.TriggerEvent(event="inbox/asked"))
    async def support(ctx: stepline.Context) -> str:
        return (await agent.on(ctx).run("refund order 7")).output

    server.serve(client, [support])
    with server, httpx.Client(base_url=server.url, timeout=30) as http:
        yield server.url, http


def pending(http: httpx.Client) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = http.get("/v1/approvals").json()["data"]
    return found


def test_the_inbox_approves_with_edited_arguments_and_rejects_with_a_reason(
    engine: tuple[str, httpx.Client], tab: Page
) -> None:
    url, http = engine
    runs = [run_of(http, send(http, "inbox/asked"))["run_id"] for _ in range(2)]
    wait_until(lambda: len(pending(http)) == 2 or None, message="two approvals to be pending")
    first, second = sorted(pending(http), key=lambda a: runs.index(a["run_id"]))

    page = tab.page
    page.goto(f"{url}/#/approvals")
    expect(page.locator("nav a.active")).to_have_text("Approvals")
    group = page.locator("section.approval-group")
    expect(group).to_have_count(1)
    expect(group.locator("h2")).to_have_text("inbox-support")
    cards = group.locator("article.approval")
    expect(cards).to_have_count(2)
    card = page.locator(f"#approval-{first['approval_id']}")
    expect(card.locator("h3 code")).to_have_text("refund")
    expect(card).to_contain_text("Refund an order, in cents.")
    # the form is built from the schema: a text box, a number and a checkbox
    expect(card.locator("input[name=order]")).to_have_value("7")
    cents = card.locator("input[name=cents]")
    expect(cents).to_have_attribute("type", "number")
    expect(cents).to_have_value("500")
    expect(card.locator("input[name=express]")).to_have_attribute("type", "checkbox")

    tab.expected.append("400 (Bad Request)")
    cents.fill("2.5")  # not an integer: the engine refuses it, and the page says why
    card.locator("button.approve").click()
    expect(card.locator(".approval-note")).to_contain_text("$.cents: want integer")
    assert http.get(f"/v1/approvals/{first['approval_id']}").json()["data"]["status"] == "pending"
    cents.fill("300")
    card.locator("input[name=express]").check()
    card.locator("button.approve").click()
    expect(page.locator("#approval-message")).to_contain_text("Approved refund")
    expect(page.locator(f"#approval-{first['approval_id']}")).to_have_count(0)

    other = page.locator(f"#approval-{second['approval_id']}")
    other.locator("input[name=reason]").fill("refunds over 4 euros need a manager")
    other.locator("button.reject").click()
    expect(page.locator("#approval-message")).to_contain_text("Rejected refund")
    expect(page.locator("#approvals")).to_contain_text("Nothing waits for a decision.")

    outputs = [http.get(f"/v1/runs/{r}", params={"wait": 20}).json()["data"] for r in runs]
    assert [o["output"] for o in outputs] == [
        "tool said: refunded 300 on 7 (express)",
        "tool said: refunds over 4 euros need a manager",
    ]
    decided = [
        http.get(f"/v1/approvals/{a['approval_id']}").json()["data"] for a in (first, second)
    ]
    assert [(d["status"], d["decision"]["by"]) for d in decided] == [
        ("approved", "dashboard"),
        ("rejected", "dashboard"),
    ]
    assert decided[0]["decision"]["args"] == {"order": "7", "cents": 300, "express": True}
    tab.screenshot("approvals")
