"""REST v1 for a run's history: ``GET /v1/runs/{run_id}/history``.

Answers ``{"data": [transition, ...]}``, oldest first: every transition the run's records
hold (``stepline.engine._runs.history``): queued, held back, started, each step's start
and end (slept, resumed, signal received, invoke returned, completed, failed), each attempt
of a step that failed once (leased, then failed with its error and when it was retried),
the run's notices and its end. Each has ``seq`` (its place), ``at``, ``type``,
``step_id`` and ``step_name`` (null for the run's own) and ``detail``. It carries payloads
(step outputs, errors, the run's output), as ``GET /v1/runs/{run_id}/steps`` does. An
unknown run is the 404 of ``GET /v1/runs/{run_id}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import starlette.requests
import starlette.responses

from stepline.engine._engine import Engine
from stepline.engine._http import views, wire
from stepline.engine._runs.history import Transition, history_of

Request = starlette.requests.Request
Response = starlette.responses.Response
Handler = Callable[[Request], Awaitable[Response]]

#: detail fields stored as epoch seconds, shown as times
_TIMES = frozenset({"until", "since", "retry_at", "at"})


def transition(seq: int, t: Transition) -> dict[str, Any]:
    """One transition as the REST API shows it (times as RFC 3339)."""
    detail = {
        k: views.timestamp(float(v)) if k in _TIMES and isinstance(v, int | float) else v
        for k, v in t.detail.items()
    }
    return {
        "seq": seq,
        "at": views.timestamp(t.at),
        "type": t.type,
        "step_id": t.step_id,
        "step_name": t.step_name,
        "detail": detail,
    }


def table(engine: Engine) -> list[tuple[str, str, Handler]]:
    """The routes, as ``api._Api.routes`` lists them (method, path, handler)."""

    async def history(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        run, steps, _due = await engine.run_retries(run_id)  # NotFoundError: 404
        attempts = await engine.run_attempts(run_id)
        found = history_of(run, steps, attempts)
        return wire.json_response(views.data([transition(n, t) for n, t in enumerate(found)]))

    return [("GET", "/v1/runs/{run_id}/history", history)]
