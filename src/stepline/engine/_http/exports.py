"""REST v1 for a run's journal: ``GET /v1/runs/{run_id}/export``.

Answers the run as one ``stepline.run/1`` document (``stepline._replay.journal``): its
trigger events, every step in recorded order with its memo, the completion order, its
output and the app version it started on, for ``TestEnv.replay`` and the deploy check.
``drop_output=STEP`` (repeatable) leaves a step's output out (400 naming the run's steps
for a name it has none of); ``redact_key=KEY`` (repeatable) masks every value under that
key; ``download=1`` asks the browser to save it as ``run-<run_id>.json``. An unknown run
is the 404 of ``GET /v1/runs/{run_id}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import starlette.requests
import starlette.responses

from stepline._replay.journal import JournalError
from stepline.engine._engine import Engine
from stepline.engine._http import wire
from stepline.engine._http.wire import ApiError
from stepline.engine._runs.journal import journal_of

Request = starlette.requests.Request
Response = starlette.responses.Response
Handler = Callable[[Request], Awaitable[Response]]


def table(engine: Engine) -> list[tuple[str, str, Handler]]:
    """The routes, as ``api._Api.routes`` lists them (method, path, handler)."""

    async def export(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        run, steps, _due = await engine.run_retries(run_id)  # NotFoundError: 404
        document = journal_of(run, steps, exported_at=engine.clock.now())
        try:
            document = document.without_outputs(request.query_params.getlist("drop_output"))
        except JournalError as exc:
            raise ApiError(400, str(exc)) from None
        document = document.redacted_keys(request.query_params.getlist("redact_key"))
        answer = wire.json_response(document.to_json())
        if request.query_params.get("download") == "1":
            answer.headers["content-disposition"] = f'attachment; filename="run-{run_id}.json"'
        return answer

    return [("GET", "/v1/runs/{run_id}/export", export)]
