"""Parameters and shapes the routes of several areas share."""

from __future__ import annotations

from stepline.engine._http.contract import schemas as s
from stepline.engine._http.contract.operations.model import param

__all__ = ["CURSOR", "LIMIT", "NOT_FOUND", "RUN_ID", "START", "TIME"]

LIMIT = param("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "page size (50)")
CURSOR = param("cursor", s.STRING, "the previous page's `next_cursor`")
TIME = {"type": "string", "description": "an RFC 3339 time or unix seconds"}
START = s.obj(
    {
        "data": s.OBJECT,
        "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 256},
        "started_by": s.STRING,
        "run_id": {"type": "string", "description": "a ULID the caller promised"},
        "attributes": {"type": "object", "additionalProperties": s.STRING},
    }
)
RUN_ID = s.data(s.obj({"run_id": s.STRING}, "run_id"))
NOT_FOUND = {404: "not found"}
