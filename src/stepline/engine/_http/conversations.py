"""REST v1 for conversations: a conversation's runs, in the order they were started.

A run belongs to a conversation when it carries the run attribute ``conversation``
(``stepline.ai``'s ``DurableAgent`` sets it; any run may, docs/run-control.md).
``GET /v1/conversations/{conversation_id}/runs`` answers its runs oldest first, as
``GET /v1/runs`` shows a run, paginated by ``cursor`` (the last run id of the previous
page) and ``limit``. An unknown conversation has no runs: an empty page, not a 404.
Behind the bearer check and dev-mode guard of every ``/v1`` route (``api.py`` wires it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import starlette.requests
import starlette.responses

from stepline.engine._engine import Engine
from stepline.engine._http import views, wire
from stepline.engine._model import Run
from stepline.engine._store import Tx

__all__ = ["ATTRIBUTE", "table"]

Request = starlette.requests.Request
Response = starlette.responses.Response
Handler = Callable[[Request], Awaitable[Response]]

#: the run attribute naming a run's conversation
ATTRIBUTE = "conversation"


def table(engine: Engine) -> list[tuple[str, str, Handler]]:
    """The routes, as ``api._Api.routes`` lists them (method, path, handler)."""

    async def runs(request: Request) -> Response:
        conversation = request.path_params["conversation_id"]
        limit = wire.page_limit(request.query_params.get("limit"))
        cursor = request.query_params.get("cursor") or None

        def read(tx: Tx) -> list[Run]:
            ids = tx.attributes.runs_with(ATTRIBUTE, conversation, after=cursor, limit=limit + 1)
            found = [run for run in map(tx.get_run, ids) if run is not None]
            attributes = tx.attributes.get_attributes([run.run_id for run in found])
            for run in found:
                run.attributes = attributes.get(run.run_id, {})
            return found

        found = await engine.store.read(read)
        return wire.json_response(views.page(found, limit, views.run, lambda r: r.run_id))

    return [("GET", "/v1/conversations/{conversation_id}/runs", runs)]
