"""REST v1 as a contract: each route's parameters, body and answers, and the OpenAPI
document rendered from them (``GET /v1/openapi.json``; docs/api.md).

``operations`` declares every ``/v1`` route of the access table; ``document`` renders the
declarations and the table; ``check`` is what ``api`` runs before it serves anything.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import starlette.requests
import starlette.responses

from stepline._json import dumpb
from stepline._serving import access
from stepline.engine._http.contract import document, operations

__all__ = ["PATH", "check", "table"]

Request = starlette.requests.Request
Response = starlette.responses.Response
Handler = Callable[[Request], Awaitable[Response]]

#: where the engine serves the document
PATH = "/v1/openapi.json"


def check() -> None:
    """Refuse a ``/v1`` route without an operation, and an operation without a route.

    Raises:
        RuntimeError: naming the routes on either side.
    """
    rows = {(r.method, r.path) for r in access.ENGINE if document.described(r)}
    declared = {(op.method, op.path) for op in operations.OPERATIONS}
    if rows - declared:
        missing = sorted(f"{m} {p}" for m, p in rows - declared)
        raise RuntimeError(
            f"/v1 routes without an operation in stepline.engine._http.contract.operations "
            f"(their parameters and answers, for the OpenAPI document): {missing}"
        )
    if declared - rows:
        extra = sorted(f"{m} {p}" for m, p in declared - rows)
        raise RuntimeError(f"operations for routes the access table does not list: {extra}")
    document.document()  # renders, or names what it cannot


def table() -> list[tuple[str, str, Handler]]:
    """The document's route, as ``api._Api.routes`` lists them (method, path, handler)."""
    body = dumpb(document.document())

    async def openapi(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return [("GET", PATH, openapi)]
