"""What each ``/v1`` route reads and answers: one ``Operation`` per row of the access table.

``stepline._serving.access.ENGINE`` says which routes exist and which credentials each
accepts; ``OPERATIONS`` says, for every ``/v1`` row, its query parameters, its body and its
answers, declared by area (one module each: runs, events, functions, apps, bulk actions,
signals and approvals, the audit log). ``api`` refuses to build the app when a ``/v1``
route has no operation here (or an operation no route), and ``document`` renders both into
the OpenAPI document served at ``GET /v1/openapi.json``; path parameters come from the
table's path itself, so neither can name a route the other lacks.
"""

from __future__ import annotations

from stepline.engine._http.contract import schemas as s
from stepline.engine._http.contract.operations import (
    apps,
    audit,
    bulk,
    events,
    functions,
    runs,
    signals,
)
from stepline.engine._http.contract.operations.model import Link, Operation, Param

__all__ = ["OPERATIONS", "Link", "Operation", "Param", "operation"]

#: the contract's own route
_DOCUMENT = Operation(
    "GET",
    "/v1/openapi.json",
    "This document",
    "meta",
    s.obj({"openapi": s.STRING, "paths": s.OBJECT}, "openapi", "paths"),
)

OPERATIONS: tuple[Operation, ...] = (
    *runs.OPERATIONS,
    *events.OPERATIONS,
    *functions.OPERATIONS,
    *apps.OPERATIONS,
    *audit.OPERATIONS,
    *bulk.OPERATIONS,
    *signals.OPERATIONS,
    _DOCUMENT,
)

_BY_KEY = {(op.method, op.path): op for op in OPERATIONS}


def operation(method: str, path: str) -> Operation | None:
    """The operation declared for a route of the access table, or None."""
    return _BY_KEY.get((method, path))
