"""Bulk actions' routes: cancel or replay the runs a filter selects, follow and stop them."""

from __future__ import annotations

from stepline.engine._http.contract import schemas as s
from stepline.engine._http.contract.operations.model import Link, Operation
from stepline.engine._http.contract.operations.shared import (
    ATTRIBUTES,
    BODY_TIME,
    CURSOR,
    LIMIT,
    NOT_FOUND,
)

__all__ = ["OPERATIONS"]

_BULKSTART = s.obj(
    {
        "filter": s.obj(
            {
                "function_id": s.STRING,
                "status": s.array(s.STRING),
                "since": BODY_TIME,
                "until": BODY_TIME,
                "event": {**s.STRING, "description": "the trigger event's name"},
                "if": {
                    **s.STRING,
                    "maxLength": 1024,
                    "description": "a CEL expression over the trigger event "
                    '(`event.data.plan == "free"`)',
                },
                "attributes": ATTRIBUTES,
            },
            description="every criterion given must hold; at least one (unknown keys are refused)",
        ),
        "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 256},
    }
)
_BULK_LINKS = (
    Link("GetBulk", "GET /v1/bulk/{bulk_id}", (("bulk_id", "$response.body#/data/bulk_id"),)),
    Link(
        "StopBulk", "POST /v1/bulk/{bulk_id}/cancel", (("bulk_id", "$response.body#/data/bulk_id"),)
    ),
)

OPERATIONS: tuple[Operation, ...] = (
    # bulk actions
    Operation(
        "POST",
        "/v1/bulk/cancel",
        "Cancel every run a filter matches",
        "bulk",
        s.data(s.ref("BulkAction")),
        status=202,
        also=(200,),
        body=_BULKSTART,
        links=_BULK_LINKS,
    ),
    Operation(
        "POST",
        "/v1/bulk/replay",
        "Replay every run a filter matches",
        "bulk",
        s.data(s.ref("BulkAction")),
        status=202,
        also=(200,),
        body=_BULKSTART,
        links=_BULK_LINKS,
    ),
    Operation(
        "GET",
        "/v1/bulk",
        "Bulk actions, newest first",
        "bulk",
        s.page(s.ref("BulkAction")),
        query=(CURSOR, LIMIT),
    ),
    Operation(
        "GET",
        "/v1/bulk/{bulk_id}",
        "A bulk action's progress",
        "bulk",
        s.data(s.ref("BulkAction")),
        errors=NOT_FOUND,
    ),
    Operation(
        "POST",
        "/v1/bulk/{bulk_id}/cancel",
        "Stop a bulk action before its next batch",
        "bulk",
        s.data(s.ref("BulkAction")),
        errors=NOT_FOUND,
    ),
)
