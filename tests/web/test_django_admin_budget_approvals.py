"""Over its token budget, a run waits in the Django admin's approvals inbox.

One project for the module (``django_admin_setup.admin_project``, the embedded engine)
with a function running a durable agent (Pydantic AI's ``FunctionModel``, offline) that
looks something up with a tool, then answers: two model requests, under a run budget of
1 token with ``on_exceeded="approve"``, so the second request waits for a person. The
inbox lists it beside tool calls; its page names the budget and the tokens used, takes no
arguments, and approving makes the request, rejecting fails the run with the reason.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import django.test
import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import stepline
import stepline.django
from stepline.ai import DurableAgent, TokenBudget
from tests._support.polling import wait_until

from .django_admin_setup import browser, embedded_admin_project, mount_admin
from .django_setup import _django  # noqa: F401 (an autouse fixture)

INBOX = "/admin/stepline/approval/"


def make() -> list[stepline.Function]:
    """``STEPLINE["FUNCTIONS"]``: ``metered``, an agent over a run budget of 1 token."""
    client = stepline.django.get_client()

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if any(isinstance(m, ModelResponse) for m in messages):
            return ModelResponse(parts=[TextPart("looked it up")])
        return ModelResponse(parts=[ToolCallPart("lookup", {"order_id": "7"}, "call-1")])

    inner: Agent[None, str] = Agent(FunctionModel(respond), name="desk")

    @inner.tool_plain
    def lookup(order_id: str) -> str:
        """Look an order up."""
        return f"order {order_id}: shipped"

    budget = TokenBudget(1, on_exceeded="approve")
    agent = DurableAgent(inner, stream=False, budget=budget)

    def ask(ctx: stepline.SyncContext) -> str:
        return agent.on(ctx).run_sync("where is order 7?").output

    trigger = stepline.TriggerEvent(event="desk/metered")
    return [client.function(id="metered", trigger=trigger)(ask)]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with embedded_admin_project(tmp_path_factory.mktemp("budget-approvals"), f"{__name__}.make"):
        yield


@pytest.fixture
def client(project: None) -> stepline.Client:
    mount_admin()  # the autouse ``_django`` empties the URL conf after each test
    return stepline.django.get_client()


def pending(client: stepline.Client) -> tuple[str, str]:
    """A new run and its approval's id, once it waits for a decision."""
    run_id = client.start_sync("desk-metered", {}).run_id
    found: list[str] = []

    def asked() -> bool:
        found[:] = [a.approval_id for a in client.approvals_sync()[0] if a.run_id == run_id]
        return bool(found)

    wait_until(asked, timeout=20, message=f"run {run_id} to ask to go over its budget")
    return run_id, found[0]


def text(response: Any) -> str:
    return html.unescape(response.content.decode())


def test_a_run_over_budget_is_listed_shown_and_approved_without_arguments(
    client: stepline.Client,
) -> None:
    run_id, approval_id = pending(client)
    http: django.test.Client = browser("root-budget", superuser=True)
    inbox = text(http.get(INBOX))
    subject = "going over the run's token budget"
    assert f'<a href="{INBOX}{approval_id}/change/">{subject}</a>' in inbox
    assert re.search(r"\d+ of 1 tokens used", inbox)  # the row's summary of the budget
    page = text(http.get(f"{INBOX}{approval_id}/change/"))
    assert "Over its token budget" in page
    assert "Tokens used" in page
    assert "desk:model-request-2" in page
    assert "the run's own" in page
    approving = re.search(r'<form [^>]*id="approval-approve"[^>]*>(.*?)</form>', page, re.S)
    assert approving is not None
    assert 'name="args-' not in approving.group(1)  # nothing to edit
    assert "The model request is made once over the budget" in approving.group(1)
    assert "The tool takes no arguments." not in approving.group(1)
    run_page = text(http.get(f"/admin/stepline/run/{run_id}/change/"))
    assert re.search(rf'Waits for approval:.*?<a href="{INBOX}{approval_id}/change/">', run_page)

    response = http.post(f"{INBOX}{approval_id}/change/", {"_decision": "approve"})
    assert response.status_code == 302
    assert f"Approved {subject} in run {run_id}" in text(http.get(INBOX))
    assert client.get_run_sync(run_id).result(timeout=20) == "looked it up"
    decided = client.get_approval_sync(approval_id)
    assert decided.status == "approved"
    assert decided.decision is not None
    assert (decided.decision["by"], decided.decision["args"]) == ("django:root-budget", None)


def test_a_rejection_in_the_admin_fails_the_run_with_the_reason(
    client: stepline.Client,
) -> None:
    run_id, approval_id = pending(client)
    http = browser("root-budget-no", superuser=True)
    reason = "the customer's plan is used up"
    response = http.post(f"{INBOX}{approval_id}/change/", {"_decision": "reject", "reason": reason})
    assert response.status_code == 302
    with pytest.raises(stepline.RunFailedError) as failed:
        client.get_run_sync(run_id).result(timeout=20)
    message = str(failed.value)
    assert "the run's token budget of 1 tokens is spent" in message
    assert f"going over it was rejected by django:root-budget-no: {reason}" in message
