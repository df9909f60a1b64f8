"""Approvals: a durable agent's tool call waiting for a person's decision.

A durable agent (``stepline.ai``) asks for a decision with a wait for a signal whose op
carries the pending call (``opts["approval"]``: agent, tool, tool call id, arguments,
their JSON schema, description, metadata); ``signals.wait`` keeps it on the step's
``wait`` and marks the pause. Here, inside a caller's transaction: the pending approvals
(``listing``), one of them pending or decided (``get``), and a decision (``decide``),
delivered as the signal's data, which the SDK turns into Pydantic AI's ``ToolApproved``
or ``ToolDenied``::

    {"decision": "approve" | "reject", "args": {...} | null, "reason": str | null,
     "by": "<principal>", "at": <epoch seconds>}

The decision is kept as the wait's memo, so the run's steps show who decided what and
when, and a replay never asks again. An approval's id is ``<run id>-<hashed step id>``.

A run over its token budget (``TokenBudget(on_exceeded="approve")``) asks the same way,
its request naming the budget instead of a tool (``{"agent", "budget": {"name",
"tokens", "used", "key", "key_expression", "period_seconds", "window_end", "request"}}``):
its approval takes no arguments, and the decision keeps the ``budget`` the person saw, so
that the run's replays fail with the same figures when it is rejected.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from stepline.engine._control import arguments
from stepline.engine._control import signals as _signals
from stepline.engine._errors import NotFoundError
from stepline.engine._model import PauseKind, StepRecord, StepStatus
from stepline.engine._store import Tx

__all__ = ["Approval", "ApprovalInvalid", "decide", "get", "listing", "parse_id"]

#: The longest reason a rejection keeps, and the longest principal.
MAX_REASON = 4000
MAX_BY = 256


class ApprovalInvalid(Exception):
    """A decision that cannot be kept (answered 400); ``problems`` lists what is wrong."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


@dataclasses.dataclass(frozen=True, slots=True)
class Approval:
    """One tool call asking for a decision, as the engine knows it.

    Attributes:
        status: ``pending``, ``approved``, ``rejected``, ``timed_out`` or ``cancelled``
            (the run ended while it waited).
        request: what the agent recorded (``agent``, ``tool``, ``tool_call_id``, ``args``,
            ``schema``, ``description``, ``metadata``, ``on_timeout``; or ``agent``,
            ``budget`` and ``on_timeout`` for a run over its token budget).
        decision: the decision kept (``decision``, ``args``, ``reason``, ``by``, ``at``),
            None while pending or when the wait timed out.
    """

    approval_id: str
    run_id: str
    step_id: str
    step: str
    function_id: str
    app_id: str
    started_by: str | None
    status: str
    request: dict[str, Any]
    asked_at: float | None
    until: float | None
    decision: dict[str, Any] | None


def approval_id(run_id: str, step_id: str) -> str:
    """The id of the approval the wait ``step_id`` of ``run_id`` asks for."""
    return f"{run_id}-{step_id}"


def parse_id(value: str) -> tuple[str, str] | None:
    """``(run_id, step_id)`` of an approval id, or None for one that cannot be."""
    run_id, _, step_id = value.partition("-")
    ok = 0 < len(run_id) <= 64 and 0 < len(step_id) <= 128
    return (run_id, step_id) if ok and run_id.isalnum() and step_id.isalnum() else None


def listing(
    tx: Tx,
    *,
    function_id: str | None = None,
    app_id: str | None = None,
    after: str = "",
    limit: int = 100,
) -> list[Approval]:
    """The pending approvals, by id (oldest run first), after the id ``after``."""
    cursor = "" if not after else after.replace("-", ":", 1)  # ids sort as pause ids do
    found = []
    waits = tx.signals.approval_waits(
        function_id=function_id, app_id=app_id, after=cursor, limit=limit
    )
    for run_id, step_id, fn_id, app, started_by in waits:
        step = tx.get_step(run_id, step_id)
        if step is not None and step.status is StepStatus.WAITING:
            found.append(_approval(step, fn_id, app, started_by))
    return found


def get(tx: Tx, value: str) -> Approval | None:
    """The approval with id ``value``, pending or decided; None if there is none."""
    ids = parse_id(value)
    if ids is None:
        return None
    run = tx.get_run(ids[0])
    step = tx.get_step(*ids) if run is not None else None
    if run is None or step is None or not isinstance((step.wait or {}).get("approval"), dict):
        return None
    return _approval(step, run.function_id, run.app_id, run.started_by)


def decide(transitions: Any, tx: Tx, value: str, decision: dict[str, Any], now: float) -> Approval:
    """Keep ``decision`` (``{"decision", "args"?, "reason"?, "by"}``) on a pending approval,
    and resume its run; the approval as it is now.

    Raises:
        NotFoundError: no approval with that id.
        SignalConflict: it was decided already, or its wait ended.
        ApprovalInvalid: the decision is malformed, or its edited arguments do not
            match the tool's schema.
    """
    found = get(tx, value)
    if found is None:
        raise NotFoundError(f"approval {value!r} not found")
    if found.status != "pending":
        raise _signals.SignalConflict(f"approval {value} was {found.status.replace('_', ' ')}")
    budget = found.request.get("budget")
    if isinstance(budget, dict) and decision.get("args") is not None:
        raise ApprovalInvalid("args: going over a token budget takes no arguments")
    kept = _checked(decision, found.request.get("schema"), now)
    if isinstance(budget, dict):
        kept["budget"] = budget
    pause = tx.get_pause(f"{found.run_id}:{found.step_id}")
    if pause is None or pause.kind is not PauseKind.SIGNAL:
        raise _signals.SignalConflict(f"approval {value} is no longer waiting")
    _signals.deliver(transitions, tx, pause, kept, now)
    again = get(tx, value)
    assert again is not None
    return again


def _checked(decision: dict[str, Any], schema: Any, now: float) -> dict[str, Any]:
    verb, by = decision.get("decision"), decision.get("by")
    if verb not in ("approve", "reject"):
        raise ApprovalInvalid('decision: want "approve" or "reject"')
    if not isinstance(by, str) or not 0 < len(by) <= MAX_BY or "\x00" in by:
        raise ApprovalInvalid(f"by: want who decides, 1-{MAX_BY} characters")
    args, reason = decision.get("args"), decision.get("reason")
    if verb == "reject":
        if args is not None:
            raise ApprovalInvalid("args: only an approval takes arguments")
        if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON):
            raise ApprovalInvalid(f"reason: want a string of at most {MAX_REASON} characters")
        return {"decision": "reject", "args": None, "reason": reason or None, "by": by, "at": now}
    if reason is not None:
        raise ApprovalInvalid("reason: only a rejection takes a reason")
    if args is not None:
        if not isinstance(args, dict):
            raise ApprovalInvalid("args: want a JSON object of the tool's arguments")
        wrong = arguments.problems(args, schema)
        if wrong:
            raise ApprovalInvalid("args do not match the tool's arguments", wrong)
    return {"decision": "approve", "args": args, "reason": None, "by": by, "at": now}


def _approval(step: StepRecord, function_id: str, app_id: str, started_by: str | None) -> Approval:
    wait = step.wait or {}
    request = wait.get("approval")
    decision = None
    if step.status is StepStatus.WAITING:
        status = "pending"
    elif step.status is StepStatus.CANCELLED:
        status = "cancelled"
    else:
        memo = step.memo if isinstance(step.memo, dict) else {}
        data = memo.get("data")
        decision = data.get("data") if isinstance(data, dict) else None
        verb = decision.get("decision") if isinstance(decision, dict) else None
        status = {"approve": "approved", "reject": "rejected"}.get(str(verb), "timed_out")
        if status == "timed_out":
            decision = None
    until = wait.get("until")
    return Approval(
        approval_id=approval_id(step.run_id, step.step_id),
        run_id=step.run_id,
        step_id=step.step_id,
        step=step.name,
        function_id=function_id,
        app_id=app_id,
        started_by=started_by,
        status=status,
        request=request if isinstance(request, dict) else {},
        asked_at=step.started_at,
        until=until if isinstance(until, int | float) else None,
        decision=decision,
    )
