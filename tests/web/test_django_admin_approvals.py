"""The approvals inbox in the Django admin, through ``django.test.Client`` and a real engine.

One project for the module (``django_admin_setup.admin_project``: the admin's apps, a
migrated SQLite database, the embedded engine) with two functions running a durable
agent (Pydantic AI's ``FunctionModel``, offline) whose tool ``refund`` needs approval:
``refund`` and ``payout``, the same agent under two function ids, so that the inbox has
more than one function to group by. Each test starts runs of its own and logs in a user
of its own.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any, Literal

import django.test
import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import stepline
import stepline.django
from stepline.ai import DurableAgent
from stepline.django._admin import arguments
from tests._support.polling import wait_until

from .django_admin_setup import browser, embedded_admin_project, mount_admin
from .django_setup import _django  # noqa: F401 (an autouse fixture)

INBOX = "/admin/stepline/approval/"
MODEL_ARGS = {"order_id": "7", "cents": 500, "express": False, "currency": "EUR", "tags": []}
#: what the tool was called with, in every run of the module
REFUNDS: list[dict[str, Any]] = []


def make() -> list[stepline.Function]:
    """``STEPLINE["FUNCTIONS"]``: ``refund`` and ``payout``, one agent each."""
    client = stepline.django.get_client()

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        returned = [
            part.content
            for message in messages
            for part in getattr(message, "parts", ())
            if isinstance(part, ToolReturnPart)
        ]
        if returned:
            return ModelResponse(parts=[TextPart(f"tool said: {returned[0]}")])
        return ModelResponse(parts=[ToolCallPart("refund", dict(MODEL_ARGS), "call-1")])

    inner: Agent[None, str] = Agent(FunctionModel(respond), name="desk")

    @inner.tool_plain(requires_approval=True)
    def refund(
        order_id: str,
        cents: int,
        express: bool = False,
        currency: Literal["EUR", "USD"] = "EUR",
        tags: list[str] | None = None,
    ) -> str:
        """Refund an order, in cents."""
        REFUNDS.append({"order_id": order_id, "cents": cents, "currency": currency})
        return f"refunded {cents} {currency} on order {order_id}"

    agent = DurableAgent(inner, stream=False)

    def ask(ctx: stepline.SyncContext) -> str:
        return agent.on(ctx).run_sync(str(ctx.event.data["prompt"])).output

    return [
        client.function(id=name, trigger=stepline.TriggerEvent(event=f"desk/{name}"))(ask)
        for name in ("refund", "payout")
    ]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with embedded_admin_project(tmp_path_factory.mktemp("approvals"), f"{__name__}.make"):
        yield


@pytest.fixture
def client(project: None) -> stepline.Client:
    mount_admin()  # the autouse ``_django`` empties the URL conf after each test
    return stepline.django.get_client()


def pending(client: stepline.Client, function: str = "refund") -> tuple[str, str]:
    """A new run of ``function`` and its approval's id, once it waits for a decision."""
    run_id = client.start_sync(f"desk-{function}", {"prompt": "refund order 7"}).run_id
    found: list[str] = []

    def asked() -> bool:
        found[:] = [a.approval_id for a in client.approvals_sync()[0] if a.run_id == run_id]
        return bool(found)

    wait_until(asked, timeout=20, message=f"run {run_id} to ask for approval")
    return run_id, found[0]


def text(response: Any) -> str:
    return html.unescape(response.content.decode())


def form(page: str, form_id: str) -> str:
    found = re.search(rf'<form [^>]*id="{form_id}"[^>]*>(.*?)</form>', page, re.S)
    assert found is not None, f"no form {form_id} in the page"
    return found.group(1)


def approve(args: dict[str, str] | None = None) -> dict[str, str]:
    """The approve form's POST: the model's arguments unless ``args`` replace some."""
    fields = {
        "_decision": "approve",
        "args-order_id": "7",
        "args-cents": "500",
        "args-currency": '"EUR"',
        "args-tags": "[]",
    }
    return {**fields, **(args or {})}


def history(object_id: str) -> list[str]:
    from django.contrib.admin.models import LogEntry

    return [e.get_change_message() for e in LogEntry.objects.filter(object_id=object_id)]


# -- the inbox ------------------------------------------------------------------------------


def test_the_inbox_lists_pending_approvals_per_function(client: stepline.Client) -> None:
    first, first_id = pending(client, "refund")
    second, second_id = pending(client, "payout")
    http = browser("root-inbox", superuser=True)
    assert f'href="{INBOX}"' in text(http.get("/admin/"))
    page = text(http.get(INBOX))
    for run_id, approval_id in ((first, first_id), (second, second_id)):
        assert f'<a href="{INBOX}{approval_id}/change/">refund</a>' in page
        assert f'href="/admin/stepline/run/{run_id}/change/"' in page
    assert '"order_id": "7"' in page  # the arguments, one line
    assert "By function" in page
    counts = re.findall(r'<a href="\?function=desk-(\w+)">\w+ \((\d+)\)</a>', page)
    assert {name for name, _ in counts} == {"payout", "refund"}
    only = text(http.get(INBOX, {"function": "desk-payout"}))
    assert f"{INBOX}{second_id}/change/" in only
    assert f"{INBOX}{first_id}/change/" not in only
    # the rows are grouped by function: every payout before every refund
    order = re.findall(r'href="\?function=desk-(\w+)">\w+</a></td>', page)
    assert {"payout", "refund"} <= set(order)
    assert order == sorted(order)
    assert "Tool calls waiting for a decision" in page
    searched = text(http.get(INBOX, {"q": first.lower()}))  # a run id, any case
    assert f"{INBOX}{first_id}/change/" in searched
    assert f"{INBOX}{second_id}/change/" not in searched
    assert "Nothing to show." in text(http.get(INBOX, {"q": "no-such-tool"}))
    assert http.get(f"{INBOX}{first_id}/").status_code == 302  # to its change page


def test_an_approvals_page_shows_the_call_and_a_form_from_its_schema(
    client: stepline.Client,
) -> None:
    run_id, approval_id = pending(client)
    http = browser("root-page", superuser=True)
    response = http.get(f"{INBOX}{approval_id}/change/")
    page = text(response)
    assert "Refund an order, in cents." in page
    assert f'href="/admin/stepline/run/{run_id}/change/"' in page
    approving = form(page, "approval-approve")
    # a choice's value is its JSON (escaped in the markup)
    choices = form(response.content.decode(), "approval-approve")
    assert re.search(r'<input type="text" name="args-order_id" value="7"', approving)
    assert re.search(r'<input type="number" name="args-cents" value="500"[^>]*required', approving)
    assert re.search(r'<input type="checkbox" name="args-express"', approving)
    assert re.search(r'<option value="&quot;EUR&quot;" selected>EUR</option>', choices)
    assert '<option value="&quot;USD&quot;">USD</option>' in choices
    assert re.search(r'<textarea name="args-tags"[^>]*>\s*\[\]</textarea>', approving)
    assert 'name="csrfmiddlewaretoken"' in approving
    assert "Recorded as django:root-page." in approving
    assert 'name="reason"' in form(page, "approval-reject")
    assert http.get(f"{INBOX}01NOSUCHRUN-0123abcd/change/").status_code == 404
    # the run's page links to the call it waits for
    run_page = text(http.get(f"/admin/stepline/run/{run_id}/change/"))
    assert re.search(
        rf'Waits for approval:.*?<a href="{INBOX}{approval_id}/change/">refund</a>', run_page
    )


# -- deciding -------------------------------------------------------------------------------


def test_approve_as_the_model_asked_completes_the_run(client: stepline.Client) -> None:
    run_id, approval_id = pending(client)
    http = browser("root-approve", superuser=True)
    response = http.post(f"{INBOX}{approval_id}/change/", approve())
    assert response.status_code == 302
    assert response["location"] == INBOX
    said = f"Approved refund in run {run_id}"
    assert said in text(http.get(INBOX))
    assert client.get_run_sync(run_id).result(timeout=20) == (
        "tool said: refunded 500 EUR on order 7"
    )
    decided = client.get_approval_sync(approval_id)
    assert decided.status == "approved"
    assert decided.decision is not None
    assert decided.decision["by"] == "django:root-approve"
    assert decided.decision["args"] is None  # not edited: the model's, as given
    assert history(approval_id) == [said]
    # decided: the page says who and when, and offers no form
    page = text(http.get(f"{INBOX}{approval_id}/change/"))
    assert "approved by django:root-approve" in page
    assert 'id="approval-approve"' not in page
    assert f"{INBOX}{approval_id}/change/" not in text(http.get(INBOX))


def test_approve_with_edited_arguments_runs_the_tool_with_them(client: stepline.Client) -> None:
    run_id, approval_id = pending(client)
    http = browser("root-edit", superuser=True)
    edited = approve({"args-cents": "300", "args-currency": '"USD"', "args-tags": '["goodwill"]'})
    response = http.post(f"{INBOX}{approval_id}/change/", edited, follow=True)
    assert f"Approved refund in run {run_id} with edited arguments" in text(response)
    assert client.get_run_sync(run_id).result(timeout=20) == (
        "tool said: refunded 300 USD on order 7"
    )
    decision = client.get_approval_sync(approval_id).decision
    assert decision is not None
    assert decision["args"] == {
        "order_id": "7",
        "cents": 300,
        "express": False,
        "currency": "USD",
        "tags": ["goodwill"],
    }


def test_reject_with_a_reason_tells_the_model(client: stepline.Client) -> None:
    run_id, approval_id = pending(client)
    http = browser("root-reject", superuser=True)
    reason = "refunds over 4 euros need a manager"
    response = http.post(f"{INBOX}{approval_id}/change/", {"_decision": "reject", "reason": reason})
    assert response.status_code == 302
    output = client.get_run_sync(run_id).result(timeout=20)
    assert reason in output
    decided = client.get_approval_sync(approval_id)
    assert decided.status == "rejected"
    assert decided.decision is not None
    assert (decided.decision["reason"], decided.decision["by"]) == (reason, "django:root-reject")
    assert history(approval_id) == [f"Rejected refund in run {run_id}: {reason}"]


def test_arguments_django_or_the_engine_refuse_decide_nothing(client: stepline.Client) -> None:
    run_id, approval_id = pending(client)
    http = browser("root-refused", superuser=True)
    # not a number: Django's own check, the form again, nothing sent
    bad = http.post(f"{INBOX}{approval_id}/change/", approve({"args-cents": "lots"}))
    assert bad.status_code == 200
    assert "Enter a whole number." in form(text(bad), "approval-approve")
    assert 'value="lots"' in text(bad)
    broken = http.post(f"{INBOX}{approval_id}/change/", approve({"args-tags": "[1,"}))
    assert "Not valid JSON" in form(text(broken), "approval-approve")
    # JSON, but not what the schema wants: the engine's refusal, each problem named
    refused = http.post(f"{INBOX}{approval_id}/change/", approve({"args-tags": '"goodwill"'}))
    assert refused.status_code == 200
    said = form(text(refused), "approval-approve")
    assert "The engine refused these arguments" in said
    assert "$.tags" in said
    assert "goodwill" in said  # what was typed, to correct
    assert client.get_approval_sync(approval_id).status == "pending"
    assert history(approval_id) == []
    # corrected, it goes through
    done = http.post(f"{INBOX}{approval_id}/change/", approve({"args-tags": '["goodwill"]'}))
    assert done.status_code == 302
    assert client.get_run_sync(run_id).result(timeout=20).startswith("tool said: refunded 500")


def test_an_approval_decided_meanwhile_is_said_and_not_decided_again(
    client: stepline.Client,
) -> None:
    run_id, approval_id = pending(client)
    http = browser("root-late", superuser=True)
    page = text(http.get(f"{INBOX}{approval_id}/change/"))
    assert 'id="approval-approve"' in page
    client.reject_sync(approval_id, "no", by="user:ann")  # someone else, first
    late = http.post(f"{INBOX}{approval_id}/change/", approve(), follow=True)
    assert late.redirect_chain[-1][0] == f"{INBOX}{approval_id}/change/"
    shown = text(late)
    assert re.search(r'class="error">Nothing was decided: [^<]*was rejected', shown)
    assert "rejected by user:ann" in shown
    assert history(approval_id) == []
    late_reject = http.post(f"{INBOX}{approval_id}/change/", {"_decision": "reject"}, follow=True)
    assert "Nothing was decided" in text(late_reject)
    decided = client.get_approval_sync(approval_id)
    assert decided.decision is not None
    assert decided.decision["by"] == "user:ann"
    client.get_run_sync(run_id).result(timeout=20)


# -- permissions and CSRF -------------------------------------------------------------------


def test_deciding_needs_the_decide_permission(client: stepline.Client) -> None:
    run_id, approval_id = pending(client)
    viewer = browser("staff-approvals-view", "view_approval")
    assert f'href="{INBOX}"' in text(viewer.get("/admin/"))
    assert f"{INBOX}{approval_id}/change/" in text(viewer.get(INBOX))
    page = text(viewer.get(f"{INBOX}{approval_id}/change/"))
    assert "Refund an order, in cents." in page
    assert 'id="approval-approve"' not in page
    assert 'id="approval-reject"' not in page
    assert viewer.post(f"{INBOX}{approval_id}/change/", approve()).status_code == 403
    rejecting = {"_decision": "reject", "reason": "x"}
    assert viewer.post(f"{INBOX}{approval_id}/change/", rejecting).status_code == 403
    assert client.get_approval_sync(approval_id).status == "pending"

    nobody = browser("staff-approvals-none", "view_run")
    assert f'href="{INBOX}"' not in text(nobody.get("/admin/"))
    assert "Waits for approval" not in text(nobody.get(f"/admin/stepline/run/{run_id}/change/"))
    assert nobody.get(INBOX).status_code == 403
    assert nobody.get(f"{INBOX}{approval_id}/change/").status_code == 403
    assert nobody.post(f"{INBOX}{approval_id}/change/", approve()).status_code == 403

    anonymous = django.test.Client()
    assert anonymous.get(INBOX).status_code == 302  # to the admin's login
    assert anonymous.post(f"{INBOX}{approval_id}/change/", approve()).status_code == 302
    assert client.get_approval_sync(approval_id).status == "pending"

    decider = browser("staff-approvals-decide", "view_approval", "decide_approval")
    assert 'id="approval-approve"' in text(decider.get(f"{INBOX}{approval_id}/change/"))
    assert decider.post(f"{INBOX}{approval_id}/change/", approve()).status_code == 302
    assert client.get_run_sync(run_id).result(timeout=20).startswith("tool said: refunded")
    decision = client.get_approval_sync(approval_id).decision
    assert decision is not None
    assert decision["by"] == "django:staff-approvals-decide"


def test_a_decision_without_django_csrf_token_is_refused(client: stepline.Client) -> None:
    from django.contrib.auth.models import User

    run_id, approval_id = pending(client)
    user = User.objects.create_superuser("root-csrf", "root-csrf@example.com", None)
    http = django.test.Client(enforce_csrf_checks=True)
    http.force_login(user)
    forged = http.post(f"{INBOX}{approval_id}/change/", approve())
    assert forged.status_code == 403
    assert client.get_approval_sync(approval_id).status == "pending"
    page = text(http.get(f"{INBOX}{approval_id}/change/"))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token is not None
    sent = http.post(
        f"{INBOX}{approval_id}/change/", {**approve(), "csrfmiddlewaretoken": token.group(1)}
    )
    assert sent.status_code == 302
    assert client.get_run_sync(run_id).result(timeout=20).startswith("tool said: refunded")


def test_the_approval_model_and_its_permissions(client: stepline.Client) -> None:
    from django.contrib.auth.models import Permission

    from stepline.django import models

    assert not models.Approval._meta.managed
    codenames = {p.codename for p in Permission.objects.filter(content_type__app_label="stepline")}
    assert {"view_approval", "decide_approval"} <= codenames
    assert not {"add_approval", "change_approval", "delete_approval"} & codenames


# -- the form from a schema (pure) ----------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 5},
        "count": {"type": "integer", "minimum": 1},
        "ratio": {"type": "number"},
        "urgent": {"type": "boolean"},
        "kind": {"enum": ["a", "b"]},
        "item": {"$ref": "#/$defs/Item"},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
    },
    "required": ["name", "count"],
    "$defs": {"Item": {"type": "object", "properties": {"sku": {"type": "string"}}}},
}


def test_the_form_has_a_field_for_each_argument_of_the_schema_and_the_model() -> None:
    built = arguments.ArgumentsForm(SCHEMA, {"name": "ab", "count": 2, "extra": [1]})
    kinds = {name: type(field).__name__ for name, field in built.fields.items()}
    assert kinds == {
        "name": "CharField",
        "count": "IntegerField",
        "ratio": "FloatField",
        "urgent": "BooleanField",
        "kind": "ChoiceField",
        "item": "JsonField",
        "note": "JsonField",
        "extra": "JsonField",  # given by the model, not in the schema: JSON
    }
    assert built.fields["count"].required
    assert not built.fields["ratio"].required
    assert built.fields["name"].max_length == 5  # type: ignore[attr-defined]
    assert built.fields["count"].min_value == 1  # type: ignore[attr-defined]
    assert arguments.resolve(SCHEMA, {"$ref": "#/$defs/Item"})["type"] == "object"
    assert arguments.resolve(SCHEMA, {"$ref": "#/$defs/Gone"}) == {}


def test_the_form_sends_what_the_model_gave_what_is_required_and_what_was_filled() -> None:
    given = {"name": "ab", "count": 2, "extra": [1]}
    untouched = {"args-name": "ab", "args-count": "2", "args-extra": "[1]"}
    same = arguments.ArgumentsForm(SCHEMA, given, untouched)
    assert same.is_valid(), same.errors
    assert same.arguments() == given
    assert not same.edited()
    filled = arguments.ArgumentsForm(
        SCHEMA,
        given,
        {
            **untouched,
            "args-ratio": "2",
            "args-urgent": "on",
            "args-kind": '"b"',
            "args-note": "null",
            "args-item": '{"sku": "x"}',
        },
    )
    assert filled.is_valid(), filled.errors
    assert filled.arguments() == {
        **given,
        "ratio": 2,
        "urgent": True,
        "kind": "b",
        "note": None,  # null typed in is sent; an empty box is not
        "item": {"sku": "x"},
    }
    assert filled.edited()
    missing = arguments.ArgumentsForm(SCHEMA, {}, {"args-name": "", "args-count": ""})
    assert not missing.is_valid()
    assert missing.errors == {"count": ["This field is required."]}
    too_long = arguments.ArgumentsForm(SCHEMA, {}, {"args-name": "abcdef", "args-count": "0"})
    assert not too_long.is_valid()
    assert set(too_long.errors) == {"name", "count"}
    assert arguments.ArgumentsForm(None, {}, {}).is_valid()  # no arguments at all
