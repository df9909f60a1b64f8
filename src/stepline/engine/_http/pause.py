"""REST v1 for pausing functions (run control).

``POST /v1/functions/{function_id}/pause``: ``{"crons": "queue" | "skip", "reason"?}`` (an
empty body pauses with ``crons: "queue"``); new runs are created but wait, runs in flight
stop before their next step, cron ticks start runs that wait (``queue``) or none
(``skip``). ``POST /v1/functions/{function_id}/resume``: the waiting calls run, oldest
first. Both answer the function's pause state (``paused``: ``{"at", "crons", "reason"}``
or null); 404 for a function that is not registered, 400 for a bad body. Both sit behind
the same bearer check and dev-mode guard as every other ``/v1`` route (``api.py`` wires
them); ``GET /v1/functions`` shows each function's ``paused`` too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import starlette.requests
import starlette.responses

from stepline.engine._control.pause import CronPolicy
from stepline.engine._engine import Engine
from stepline.engine._http import views, wire
from stepline.engine._http.wire import ApiError
from stepline.engine._model import storable

Request = starlette.requests.Request
Response = starlette.responses.Response
Handler = Callable[[Request], Awaitable[Response]]

#: a pause's reason is for people: a line or two
MAX_REASON = 1000
_FIELDS = {"crons", "reason"}


def table(engine: Engine) -> list[tuple[str, str, Handler]]:
    """The routes, as ``api._Api.routes`` lists them (method, path, handler)."""
    limit = engine.settings.max_body_bytes

    async def pause(request: Request) -> Response:
        function_id = request.path_params["function_id"]
        crons, reason = options(await wire.read_json(request, limit, required=False))
        state = await engine.pause(function_id, crons=crons, reason=reason)
        return wire.json_response(views.data(_view(function_id, views.pause(state))))

    async def resume(request: Request) -> Response:
        function_id = request.path_params["function_id"]
        resumed = await engine.resume(function_id)
        return wire.json_response(views.data({**_view(function_id, None), "resumed": resumed}))

    return [
        ("POST", "/v1/functions/{function_id:path}/pause", pause),
        ("POST", "/v1/functions/{function_id:path}/resume", resume),
    ]


def options(body: Any) -> tuple[CronPolicy, str | None]:
    """A pause request's ``crons`` and ``reason``; raises ``ApiError`` (400) if malformed."""
    if body is None:
        return "queue", None
    if not isinstance(body, dict):
        raise ApiError(400, 'want {"crons": "queue" | "skip", "reason": "..."}')
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(map(repr, unknown))}")
    crons = body.get("crons", "queue")
    if crons not in ("queue", "skip"):
        raise ApiError(400, f'crons: want "queue" or "skip", got {crons!r}'[:300])
    reason = body.get("reason")
    if reason is not None and not (
        isinstance(reason, str) and len(reason) <= MAX_REASON and storable(reason)
    ):
        raise ApiError(400, f"reason: want a string of at most {MAX_REASON} characters")
    return ("skip" if crons == "skip" else "queue"), reason or None


def _view(function_id: str, paused: dict[str, Any] | None) -> dict[str, Any]:
    return {"function_id": function_id, "paused": paused}
