"""REST v1 for run attributes: set them on a run (the list filter is ``GET /v1/runs``).

``POST /v1/runs/{run_id}/attributes`` with ``{"attributes": {"name": value, ...}}`` sets
(or replaces) them on a live or ended run and answers every attribute the run has; 404
for an unknown run, 400 naming a bad name, value or count. Behind the bearer check and
dev-mode guard of every ``/v1`` route (``api.py`` wires it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import starlette.requests
import starlette.responses

from stepline.engine._control import attributes as _attributes
from stepline.engine._engine import Engine
from stepline.engine._http import views, wire
from stepline.engine._http.wire import ApiError

Request = starlette.requests.Request
Response = starlette.responses.Response
Handler = Callable[[Request], Awaitable[Response]]


def table(engine: Engine) -> list[tuple[str, str, Handler]]:
    """The routes, as ``api._Api.routes`` lists them (method, path, handler)."""

    async def set_attributes(request: Request) -> Response:
        body = await wire.read_json(request, engine.settings.max_body_bytes)
        if not isinstance(body, dict) or "attributes" not in body:
            raise ApiError(400, 'want {"attributes": {"name": "value", ...}}')
        run_id = request.path_params["run_id"]  # a bad attribute: 400 (api._failure)
        found = await _attributes.set_on(engine.store, run_id, body["attributes"])
        return wire.json_response(views.data({"run_id": run_id, "attributes": found}))

    return [("POST", "/v1/runs/{run_id}/attributes", set_attributes)]
