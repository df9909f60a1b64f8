"""REST v1 for a run's attempt history: every attempt of each step that failed once.

``GET /v1/runs/{run_id}/attempts`` answers ``{"data": [attempt, ...]}``, oldest first:
each attempt's step id, number, status, start, end, duration, error and the time it
was retried (``views.attempt``). Steps that succeeded (or are waiting) at their first
try are not listed (their one attempt is the step itself, ``/v1/runs/{id}/steps``);
calls that failed outside any step are under step id ``"step"``. 404 for an unknown
run. Behind the bearer check and dev-mode guard of every ``/v1`` route (``api.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import starlette.requests
import starlette.responses

from stepline.engine._engine import Engine
from stepline.engine._http import views, wire

Request = starlette.requests.Request
Response = starlette.responses.Response
Handler = Callable[[Request], Awaitable[Response]]


def table(engine: Engine) -> list[tuple[str, str, Handler]]:
    """The routes, as ``api._Api.routes`` lists them (method, path, handler)."""

    async def attempts(request: Request) -> Response:
        found = await engine.run_attempts(request.path_params["run_id"])
        return wire.json_response(views.data([views.attempt(a) for a in found]))

    return [("GET", "/v1/runs/{run_id}/attempts", attempts)]
