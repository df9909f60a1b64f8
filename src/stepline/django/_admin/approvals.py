"""The approvals inbox in the Django admin: durable agents' tool calls waiting for a person.

The list shows the pending approvals, grouped by function (the sidebar filters one
function and counts each one's), runs asking to go over a token budget among them; an
approval's page shows the call (tool, description, the model's arguments, its run, when
it was asked and until when it waits; or the budget, key, period and tokens used of a
run over its token budget) with a form built from the tool's argument schema to approve
(with the arguments as edited; none over a budget) and one to reject with a reason.
Reading needs ``stepline.view_approval``; deciding ``stepline.decide_approval``. The
decision goes through the project's client (``approve_sync``, ``reject_sync``) and is
recorded by the engine as ``django:<username>``, and in the admin's history; the
engine's refusals (arguments that do not match the schema, an approval decided
meanwhile) are said on the page.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
from typing import Any

from django import http
from django.contrib import messages
from django.contrib.admin.utils import unquote

from stepline._api import approvals as _approvals
from stepline._api import runs as _runs
from stepline._api.approvals import Approval
from stepline.django import models
from stepline.django._admin import arguments, base, listing
from stepline.django._admin.base import EngineAdmin, Row, dashboard_url, query
from stepline.django._admin.runs import pretty

__all__ = ["PERMISSION", "ApprovalAdmin", "principal"]

#: the codename that allows deciding (app label ``stepline``)
PERMISSION = "decide_approval"
#: the most pending approvals the list reads (pages of ``PAGE``)
MOST = 1000
PAGE = 200
COLUMNS = ("Tool", "Function", "Arguments", "Run", "Asked", "Waits until")
#: how much of the arguments' JSON a row shows
SHORT = 80


def principal(request: http.HttpRequest) -> str:
    """Who decides, as the engine records it: ``django:<username>``."""
    return base.actor_name(request)


class ApprovalAdmin(EngineAdmin):
    """Pending approvals, read from the engine; decided on each approval's page."""

    # -- the inbox -------------------------------------------------------------------------

    def changelist_view(
        self, request: http.HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> http.HttpResponse:
        self.require(request)
        if request.method == "POST":  # no list actions: each approval is decided on its page
            return http.HttpResponseRedirect(request.get_full_path())
        params = query(request)
        try:
            names = {f.function_id: f.name for f in self.catalog().functions()}
            pending, more = self._pending()
        except _runs.ManagementError as exc:
            return self.changelist(request, columns=COLUMNS, rows=[], error=str(exc))
        counts = collections.Counter(a.function_id for a in pending)
        chosen = params.get("function") or None
        search = params.get(listing.SEARCH, "").strip().lower()
        shown = [
            a
            for a in pending
            if (chosen is None or a.function_id == chosen)
            and (not search or any(search in (v or "").lower() for v in _searched(a)))
        ]
        # grouped by function, in the order of the functions' names; oldest run first in each
        shown.sort(key=lambda a: (names.get(a.function_id, a.function_id), a.function_id))
        options = sorted(
            ((f, f"{names.get(f, f)} ({n})") for f, n in counts.items()),
            key=lambda option: option[1],
        )
        note = f"The first {MOST} pending approvals." if more else ""
        return self.changelist(
            request,
            columns=COLUMNS,
            rows=[self._row(a, names) for a in shown],
            filters=[listing.choices("function", params, "function", options)],
            search_help="Part of a tool's name, a function's id or a run id.",
            note=note,
            title="Tool calls waiting for a decision",
        )

    def _pending(self) -> tuple[list[Approval], bool]:
        """Every pending approval up to ``MOST``, and whether there are more."""
        found: list[Approval] = []
        cursor: str | None = None
        while True:
            page, cursor = self.client().approvals_sync(limit=PAGE, cursor=cursor)
            found += page
            if cursor is None or len(found) >= MOST:
                return found[:MOST], cursor is not None or len(found) > MOST

    def _row(self, approval: Approval, names: dict[str, str]) -> Row:
        if approval.budget is not None:
            used, allowed = approval.budget.get("used"), approval.budget.get("tokens")
            shown = f"{used} of {allowed} tokens used"
        else:
            shown = json.dumps(approval.args, sort_keys=True, ensure_ascii=False, default=str)
        return Row(
            id=approval.approval_id,
            url=self.url("change", approval.approval_id),
            first=approval.subject,
            cells=(
                {
                    "text": names.get(approval.function_id, approval.function_id),
                    "url": listing.query_string({}, function=approval.function_id),
                },
                shown if len(shown) <= SHORT else shown[: SHORT - 1] + "…",
                {
                    "text": approval.run_id,
                    "url": self.url("change", approval.run_id, model="run"),
                },
                approval.asked_at,
                approval.until,
            ),
        )

    # -- an approval's page ----------------------------------------------------------------

    def change_view(
        self,
        request: http.HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> http.HttpResponse:
        self.require(request)
        approval_id = unquote(object_id)
        if request.method == "POST":
            self.require(request, PERMISSION)  # before anything is read or checked
        try:
            approval = self.client().get_approval_sync(approval_id)
        except _approvals.ApprovalNotFoundError:
            raise http.Http404(f"no approval {approval_id}") from None
        except _runs.ManagementError as exc:
            failed = {"error": str(exc), "title": f"Approval {approval_id}"}
            return self.page(request, "stepline/admin/approval.html", failed, status=502)
        if request.method != "POST":
            return self._approval_page(request, approval)
        decision = request.POST.get("_decision", "")
        if decision == "approve":
            return self._approve(request, approval)
        if decision == "reject":
            return self._reject(request, approval)
        return http.HttpResponseBadRequest("unknown decision")

    def _approval_page(
        self,
        request: http.HttpRequest,
        approval: Approval,
        approve_form: arguments.ArgumentsForm | None = None,
        reject_form: arguments.RejectForm | None = None,
    ) -> http.HttpResponse:
        """The approval; bound forms are shown again with their errors."""
        decides = approval.status == "pending" and self.may(request, PERMISSION)
        context = {
            "title": f"Approve {approval.subject}?"
            if approval.status == "pending"
            else f"Approval of {approval.subject}",
            "approval": approval,
            "budget": _budget_rows(approval.budget),
            "args": pretty(approval.args),
            "decision": approval.decision,
            "decided_args": pretty(approval.decision.get("args"))
            if approval.decision and approval.decision.get("args") is not None
            else None,
            "run_url": self.url("change", approval.run_id, model="run"),
            "function_url": self.url("change", approval.function_id, model="function"),
            "approve_form": (
                approve_form or arguments.ArgumentsForm(approval.schema, approval.args)
                if decides
                else None
            ),
            "reject_form": (reject_form or arguments.RejectForm()) if decides else None,
            "who": principal(request),
            "dashboard_url": dashboard_url("approvals"),
        }
        return self.page(request, "stepline/admin/approval.html", context)

    def _approve(self, request: http.HttpRequest, approval: Approval) -> http.HttpResponse:
        form = arguments.ArgumentsForm(approval.schema, approval.args, request.POST)
        if not form.is_valid():
            return self._approval_page(request, approval, approve_form=form)
        edited = form.edited()
        try:
            self.client().approve_sync(
                approval.approval_id,
                args=form.arguments() if edited else None,
                by=principal(request),
            )
        except _approvals.ApprovalInvalidError as exc:
            form.add_error(None, f"The engine refused these arguments: {exc}")
            return self._approval_page(request, approval, approve_form=form)
        except _runs.ManagementError as exc:
            return self._refused(request, approval, exc)
        with_args = " with edited arguments" if edited else ""
        return self._done(
            request, approval, f"Approved {approval.subject} in run {approval.run_id}{with_args}"
        )

    def _reject(self, request: http.HttpRequest, approval: Approval) -> http.HttpResponse:
        form = arguments.RejectForm(request.POST)
        if not form.is_valid():
            return self._approval_page(request, approval, reject_form=form)
        reason = str(form.cleaned_data["reason"]) or None
        try:
            self.client().reject_sync(approval.approval_id, reason, by=principal(request))
        except _approvals.ApprovalInvalidError as exc:
            form.add_error(None, f"The engine refused the rejection: {exc}")
            return self._approval_page(request, approval, reject_form=form)
        except _runs.ManagementError as exc:
            return self._refused(request, approval, exc)
        said = f": {reason}" if reason else ""
        return self._done(
            request, approval, f"Rejected {approval.subject} in run {approval.run_id}{said}"
        )

    def _done(self, request: http.HttpRequest, approval: Approval, said: str) -> http.HttpResponse:
        """The decision kept: in the admin's history and a message, then back to the inbox."""
        self.log(request, approval.approval_id, said, model=models.Approval)
        messages.success(request, said)
        return http.HttpResponseRedirect(self.url("changelist"))

    def _refused(
        self, request: http.HttpRequest, approval: Approval, exc: _runs.ManagementError
    ) -> http.HttpResponse:
        """The engine did not take the decision: decided meanwhile, gone, or unreachable."""
        if isinstance(exc, _approvals.ApprovalDecidedError):
            messages.error(request, f"Nothing was decided: {exc}.")
        elif isinstance(exc, _approvals.ApprovalNotFoundError):
            messages.error(request, f"Nothing was decided: {exc}.")
            return http.HttpResponseRedirect(self.url("changelist"))
        else:
            messages.error(request, f"Nothing was decided: the engine said {exc}")
        return http.HttpResponseRedirect(self.url("change", approval.approval_id))


def _searched(approval: Approval) -> tuple[str | None, ...]:
    """What the list's search looks in."""
    return (approval.subject, approval.function_id, approval.run_id)


def _budget_rows(budget: dict[str, Any] | None) -> list[tuple[str, str]] | None:
    """(label, value) of what a run over its token budget asks to go over; None for a tool
    call."""
    if budget is None:
        return None
    period = budget.get("period_seconds")
    rows = [
        ("Budget", str(budget.get("name") or "the run's own")),
        (
            "Tokens allowed",
            f"{budget.get('tokens')}" + (f" per {_period(period)}" if period else ""),
        ),
        ("Tokens used", str(budget.get("used"))),
    ]
    if budget.get("key_expression"):
        rows.append(("Key", f"{budget.get('key')} ({budget.get('key_expression')})"))
    if isinstance(budget.get("window_end"), int | float):
        ends = dt.datetime.fromtimestamp(budget["window_end"], dt.timezone.utc)
        rows.append(("Period ends", ends.strftime("%Y-%m-%d %H:%M:%S UTC")))
    rows.append(("Model request held", str(budget.get("request"))))
    return rows


def _period(seconds: Any) -> str:
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if isinstance(seconds, int | float) and seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return unit if count == 1 else f"{count} {unit}s"
    return f"{seconds} seconds"
