"""Approvals as the client reads and answers them: a durable agent's tool call waiting for
a person's decision (``stepline.ai``; the engine's ``/v1/approvals``).

``client.approvals()`` lists the pending ones, ``client.get_approval(id)`` reads one
(pending or decided), ``client.approve(id, args=..., by=...)`` and ``client.reject(id,
reason=..., by=...)`` answer one; each has a blocking twin ending in ``_sync``. ``by``
names who decided (your user's id): the engine records it with the decision, and the
time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import urllib.parse
from collections.abc import Mapping
from typing import Any

from stepline import _settings
from stepline._api import runs as _runs
from stepline._api.run_info import parse_time
from stepline._transport import effects

__all__ = [
    "Approval",
    "ApprovalDecidedError",
    "ApprovalInvalidError",
    "ApprovalNotFoundError",
    "decide_flow",
    "get_flow",
    "list_flow",
]


class ApprovalNotFoundError(_runs.RunNotFoundError):
    """No approval with that id (or its run is gone)."""

    code = "approval_not_found"


class ApprovalDecidedError(_runs.ManagementError):
    """The approval was decided already (or its wait timed out, or its run ended)."""

    code = "approval_decided"


class ApprovalInvalidError(_runs.ManagementError):
    """The engine refused the decision: edited arguments that do not match the tool's
    JSON schema (the message lists each problem), or a malformed reason or principal."""

    code = "approval_invalid"


@dataclasses.dataclass(frozen=True, slots=True)
class Approval:
    """A durable agent's tool call asking a person for a decision, or a run asking to let
    a model request go over its token budget (``TokenBudget(on_exceeded="approve")``:
    ``budget`` is set, ``tool`` is None, and approving takes no arguments).

    Attributes:
        approval_id: its id (``<run id>-<hashed step id>``).
        run_id: the run that waits.
        function_id: the run's function's full id.
        app_id: the function's app.
        started_by: the run's starter (``Principal``), or None.
        status: ``pending``, ``approved``, ``rejected``, ``timed_out`` or ``cancelled``.
        agent: the durable agent's name.
        tool: the tool's name.
        tool_call_id: the model's id of the call.
        args: the arguments the model gave.
        schema: the JSON schema of the tool's arguments (edited arguments must match it).
        description: the tool's description, if it has one.
        step: the id of the step that waits (``<agent>:approval:<tool>:<id>``).
        asked_at: when the run began to wait.
        until: when the wait ends by itself (rejected, or the run fails, as configured).
        decision: once decided: ``decision`` (``approve``/``reject``), ``args``,
            ``reason``, ``by`` (who) and ``at`` (when, ISO 8601).
        budget: for a run over its token budget: ``name`` (None for the run's own
            budget), ``tokens`` (the budget), ``used``, ``key`` (the key's value, as JSON)
            and ``key_expression``, ``period_seconds``, ``window_end`` (epoch seconds)
            and ``request`` (the model request's step, held until decided); else None.
    """

    approval_id: str
    run_id: str
    function_id: str
    app_id: str
    started_by: str | None
    status: str
    agent: str | None
    tool: str | None
    tool_call_id: str | None
    args: dict[str, Any]
    schema: dict[str, Any] | None
    description: str | None
    step: str
    asked_at: dt.datetime | None
    until: dt.datetime | None
    decision: dict[str, Any] | None
    budget: dict[str, Any] | None = None

    @property
    def subject(self) -> str:
        """What is asked, in words: the tool's name, or going over which token budget."""
        if self.budget is not None:
            name = self.budget.get("name")
            return (
                f"going over the token budget {name!r}"
                if name
                else "going over the run's token budget"
            )
        return self.tool or self.step

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Approval:
        """An approval from the engine's JSON view."""
        args, schema, decision = data.get("args"), data.get("schema"), data.get("decision")
        budget = data.get("budget")
        return cls(
            approval_id=str(data.get("approval_id", "")),
            run_id=str(data.get("run_id", "")),
            function_id=str(data.get("function_id", "")),
            app_id=str(data.get("app_id", "")),
            started_by=data.get("started_by"),
            status=str(data.get("status", "")),
            agent=data.get("agent"),
            tool=data.get("tool"),
            tool_call_id=data.get("tool_call_id"),
            args=dict(args) if isinstance(args, dict) else {},
            schema=dict(schema) if isinstance(schema, dict) else None,
            description=data.get("description"),
            step=str(data.get("step", "")),
            asked_at=parse_time(data.get("asked_at")),
            until=parse_time(data.get("until")),
            decision=dict(decision) if isinstance(decision, dict) else None,
            budget=dict(budget) if isinstance(budget, dict) else None,
        )

    def to_json(self) -> dict[str, Any]:
        """The approval as JSON (what the web kit's approvals routes answer)."""
        return {
            "approval_id": self.approval_id,
            "run_id": self.run_id,
            "function_id": self.function_id,
            "status": self.status,
            "agent": self.agent,
            "tool": self.tool,
            "tool_call_id": self.tool_call_id,
            "args": self.args,
            "schema": self.schema,
            "description": self.description,
            "asked_at": _iso(self.asked_at),
            "until": _iso(self.until),
            "decision": self.decision,
            "budget": self.budget,
        }


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def list_flow(
    settings: _settings.Settings,
    *,
    function_id: str | None,
    app_id: str | None,
    limit: int,
    cursor: str | None,
) -> effects.Flow[tuple[list[Approval], str | None]]:
    """One page of pending approvals, by id, and the next page's cursor (None at the end)."""
    query = {"limit": str(limit)}
    for name, value in (("function_id", function_id), ("app_id", app_id), ("cursor", cursor)):
        if value:
            query[name] = value
    path = "/v1/approvals?" + urllib.parse.urlencode(query)
    page = yield from _runs.call(settings, "GET", path, what="approvals", whole=True)
    found = [Approval.from_wire(item) for item in page.get("data") or []]
    return found, (page.get("metadata") or {}).get("next_cursor")


def get_flow(settings: _settings.Settings, approval_id: str) -> effects.Flow[Approval]:
    """``GET /v1/approvals/{id}``: the approval, pending or decided."""
    path = f"/v1/approvals/{_runs.quote(approval_id)}"
    try:
        data = yield from _runs.call(settings, "GET", path, what=f"approval {approval_id}")
    except _runs.RunNotFoundError as exc:
        raise ApprovalNotFoundError(exc.message, status=404) from None
    return Approval.from_wire(data)


def decide_flow(
    settings: _settings.Settings, approval_id: str, verb: str, body: dict[str, Any]
) -> effects.Flow[Approval]:
    """``POST /v1/approvals/{id}/approve|reject``: the approval as decided."""
    path = f"/v1/approvals/{_runs.quote(approval_id)}/{verb}"
    what = f"approval {approval_id}"
    try:
        data = yield from _runs.call(settings, "POST", path, body, what=what)
    except _runs.RunNotFoundError as exc:
        raise ApprovalNotFoundError(exc.message, status=404) from None
    except _runs.RunNotStartedError as exc:  # the engine's 409
        raise ApprovalDecidedError(exc.message, status=409) from None
    except _runs.ManagementError as exc:
        if exc.http_status == 400:
            raise ApprovalInvalidError(exc.message, status=400) from None
        raise
    return Approval.from_wire(data)


def approve_body(args: Mapping[str, Any] | None, by: str | None) -> dict[str, Any]:
    """The body of an approval: the edited arguments, and who decides."""
    body: dict[str, Any] = {}
    if args is not None:
        body["args"] = dict(args)
    if by is not None:
        body["by"] = by
    return body


def reject_body(reason: str | None, by: str | None) -> dict[str, Any]:
    """The body of a rejection: the reason the model is told, and who decides."""
    body: dict[str, Any] = {}
    if reason is not None:
        body["reason"] = reason
    if by is not None:
        body["by"] = by
    return body
