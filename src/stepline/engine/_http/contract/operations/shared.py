"""Parameters and shapes the routes of several areas share."""

from __future__ import annotations

from stepline.engine._http.contract import schemas as s
from stepline.engine._http.contract.operations.model import param

__all__ = ["ATTRIBUTES", "BODY_TIME", "CURSOR", "LIMIT", "NOT_FOUND", "RUN_ID", "START", "TIME"]

LIMIT = param("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "page size (50)")
CURSOR = param("cursor", s.STRING, "the previous page's `next_cursor`")
TIME = {"type": "string", "description": "an RFC 3339 time or unix seconds"}
#: a time in a JSON body: the string, or the seconds as a number
BODY_TIME = {"type": ["string", "number"], "description": "an RFC 3339 time or unix seconds"}
#: a run's attributes as a request sets them: a number or boolean is kept as its JSON text
#: (``7``, ``true``), as the answers show it
ATTRIBUTES = {
    "type": "object",
    "additionalProperties": {"type": ["string", "number", "boolean"]},
    "description": "name -> a string, number or boolean (at most 32)",
}
START = s.obj(
    {
        "data": s.OBJECT,
        "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 256},
        "started_by": s.STRING,
        "run_id": {"type": "string", "description": "a ULID the caller promised"},
        "attributes": ATTRIBUTES,
    }
)
RUN_ID = s.data(s.obj({"run_id": s.STRING}, "run_id"))
NOT_FOUND = {404: "not found"}
