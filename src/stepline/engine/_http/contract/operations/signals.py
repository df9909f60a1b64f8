"""Signals' and approvals' routes: signal a run's wait, list and decide tool-call approvals."""

from __future__ import annotations

from stepline.engine._http.contract import schemas as s
from stepline.engine._http.contract.operations.model import Operation, param
from stepline.engine._http.contract.operations.shared import CURSOR, LIMIT, NOT_FOUND, RUN_ID

__all__ = ["OPERATIONS"]

_DECISION = s.obj({"by": s.STRING, "args": s.OBJECT, "reason": s.STRING})

OPERATIONS: tuple[Operation, ...] = (
    # signals and approvals
    Operation(
        "POST",
        "/v1/runs/{run_id}/signals/{name}",
        "Signal a run's wait",
        "signals",
        RUN_ID,
        body=s.obj({"data": s.ANY}),
        errors={404: "nothing waits for it", 409: "already received", 413: "body too large"},
    ),
    Operation(
        "POST",
        "/v1/signals",
        "Signal a wait by its key or token",
        "signals",
        RUN_ID,
        body=s.obj({"signal": s.STRING, "data": s.ANY}, "signal"),
        body_required=True,
        errors={404: "nothing waits for it", 409: "already received", 413: "body too large"},
    ),
    Operation(
        "POST",
        "/v1/signals/hooks/{token}",
        "Signal the wait a token names (the token is the credential)",
        "signals",
        RUN_ID,
        body=s.ANY,
        errors={
            404: "no run waits for this token",
            409: "already received",
            413: "body too large",
            429: "too many misses or requests",
        },
    ),
    Operation(
        "GET",
        "/v1/approvals",
        "Pending approvals",
        "approvals",
        s.page(s.ref("Approval")),
        query=(param("function_id", s.STRING), param("app_id", s.STRING), CURSOR, LIMIT),
    ),
    Operation(
        "GET",
        "/v1/approvals/{approval_id}",
        "An approval, pending or decided",
        "approvals",
        s.data(s.ref("Approval")),
        errors=NOT_FOUND,
    ),
    Operation(
        "POST",
        "/v1/approvals/{approval_id}/approve",
        "Approve a tool call",
        "approvals",
        s.data(s.ref("Approval")),
        body=_DECISION,
        errors={**NOT_FOUND, 409: "already decided"},
    ),
    Operation(
        "POST",
        "/v1/approvals/{approval_id}/reject",
        "Reject a tool call",
        "approvals",
        s.data(s.ref("Approval")),
        body=_DECISION,
        errors={**NOT_FOUND, 409: "already decided"},
    ),
)
