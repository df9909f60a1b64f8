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

from collections.abc import Awaitable, Callable, Sequence

import starlette.requests
import starlette.responses

from stepline._replay import journal as _journal
from stepline._replay.journal import Journal, JournalError, RecordedStep
from stepline.engine._engine import Engine
from stepline.engine._http import views, wire
from stepline.engine._http.wire import ApiError
from stepline.engine._model import Run, StepRecord

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


def journal_of(run: Run, steps: Sequence[StepRecord], *, exported_at: float) -> Journal:
    """The journal of ``run`` and its ``steps`` as one read saw them (pure)."""
    recorded = [
        RecordedStep(
            id=s.step_id,
            name=s.name,
            op=s.op,
            status=s.status.value,
            memo=s.memo if s.status.done else None,
            mode=s.mode,
            attempts=s.attempts,
            started_at=views.timestamp(s.started_at),
            ended_at=views.timestamp(s.ended_at),
        )
        for s in steps
    ]
    return Journal(
        run_id=run.run_id,
        function_id=run.function_id,
        app_id=run.app_id,
        status=run.status.value,
        events=list(run.events),
        steps=tuple(_journal.steps_in_order(recorded, run.stack)),
        stack=tuple(run.stack),
        app_version=run.app_version,
        output=views.run(run)["output"],  # the stored text parsed, as GET /v1/runs/{id}
        created_at=views.timestamp(run.created_at),
        started_at=views.timestamp(run.started_at),
        ended_at=views.timestamp(run.ended_at),
        exported_at=views.timestamp(exported_at),
    )
