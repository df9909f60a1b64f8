"""The audit log's route: who did what, for admins."""

from __future__ import annotations

from stepline.engine._http.contract import schemas as s
from stepline.engine._http.contract.operations.model import Operation, param
from stepline.engine._http.contract.operations.shared import CURSOR, LIMIT

__all__ = ["OPERATIONS"]

OPERATIONS: tuple[Operation, ...] = (
    # the audit log
    Operation(
        "GET",
        "/v1/audit",
        "Who did what: the audit log, newest first (admins)",
        "audit",
        s.page(
            s.obj(
                {
                    "id": s.STRING,
                    "at": s.TIME,
                    "principal": s.STRING,
                    "role": s.nullable(s.STRING),
                    "credential": s.STRING,
                    "via": s.nullable(s.STRING),
                    "action": s.STRING,
                    "target": s.STRING,
                    "outcome": {"type": "string", "enum": ["ok", "refused", "failed"]},
                    "status": s.INTEGER,
                },
                "id",
                "at",
                "principal",
                "action",
                "outcome",
                "status",
            )
        ),
        query=(param("principal", s.STRING, "one principal's entries"), CURSOR, LIMIT),
    ),
)
