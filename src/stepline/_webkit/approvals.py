"""The web kit's approvals routes: a person answers a durable agent's tool call in your UI.

``RunRoutes`` answers, beside its run routes::

    GET  {mount}/approvals                   the pending approvals the caller may see
    GET  {mount}/approvals/{id}              one, pending or decided
    POST {mount}/approvals/{id}/approve      {"args"?: {...}}: run it (arguments edited)
    POST {mount}/approvals/{id}/reject       {"reason"?: "..."}: the model is told why

An approval is shown when its run is of a function given to the kit and the caller may
see that run (``ownership.visible``: its starter, or anyone ``authorize`` admits for a
run without one). ``authorize`` is asked first with the action ``approvals``,
``approval``, ``approve`` or ``reject`` (and the run's id and function on the last
three); on those, every refusal but a 401, an unknown approval and another caller's one
answer the same 404, so that no answer tells which approvals exist. The POSTs need JSON
or ``X-Stepline-Csrf``, as the kit's other POSTs. The decision is recorded with the
caller's principal (``"kit"`` for a caller with none).

This module holds the pure parts (paths, bodies, views); ``routes.RunRoutes`` asks
``authorize`` and the engine.
"""

from __future__ import annotations

import re
from typing import Any

from stepline import _serde
from stepline._api.approvals import Approval

__all__ = ["ACTIONS", "BodyError", "decision_body", "match", "view"]

#: The actions ``authorize`` is asked about on these routes.
ACTIONS = ("approvals", "approval", "approve", "reject")
#: Who a decision is recorded as when ``authorize`` gave no principal.
NOBODY = "kit"
#: The most pending approvals the list route shows.
MAX_LISTED = 200
MAX_REASON = 4000
_PATH = re.compile(
    r"^/approvals(?:/(?P<id>[A-Za-z0-9]{1,64}-[A-Za-z0-9]{1,128})(?P<rest>/approve|/reject)?)?$"
)


class BodyError(ValueError):
    """A decision's body the kit refuses (400), with what to send."""


def match(path: str) -> tuple[str | None, str] | None:
    """``(approval id or None, action)`` of a path under the kit's mount; None: no route."""
    found = _PATH.match(path)
    if found is None:
        return None
    if found["id"] is None:
        return None, "approvals"
    rest = found["rest"] or ""
    return found["id"], {"": "approval", "/approve": "approve", "/reject": "reject"}[rest]


def decision_body(action: str, raw: bytes, by: str) -> dict[str, Any]:
    """The body the engine takes for ``action``, from the caller's (strict JSON).

    Raises:
        BodyError: not JSON, not an object, or a field of the wrong kind.
    """
    try:
        body = _serde.loads(raw or b"{}")
    except ValueError as exc:
        raise BodyError(f"body is not valid JSON: {str(exc)[:200]}") from None
    if action == "approve":
        if not isinstance(body, dict) or not set(body) <= {"args"}:
            raise BodyError('want {"args": {...}} (the edited arguments) or {}')
        args = body.get("args")
        if args is not None and not isinstance(args, dict):
            raise BodyError("args: want a JSON object of the tool's arguments")
        return {"args": args, "by": by} if args is not None else {"by": by}
    if not isinstance(body, dict) or not set(body) <= {"reason"}:
        raise BodyError('want {"reason": "..."} or {}')
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON):
        raise BodyError(f"reason: want a string of at most {MAX_REASON} characters")
    return {"reason": reason, "by": by} if reason else {"by": by}


def view(approval: Approval, mount: str) -> dict[str, Any]:
    """An approval as the kit shows it, with the links that answer it."""
    base = f"{mount.rstrip('/')}/approvals/{approval.approval_id}"
    runs = f"{mount.rstrip('/')}/runs/{approval.run_id}"
    links = {"self": base, "approve": f"{base}/approve", "reject": f"{base}/reject"}
    return {**approval.to_json(), "links": {**links, "run": runs}}
