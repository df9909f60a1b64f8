"""REST v1 for durable endpoints: start a run inline, checkpoint its steps, answer its call.

``POST /v1/functions/{function_id}/inline``: ``{"data", "idempotency_key"?, "started_by"?}``
starts (or finds) the run; when the caller may execute its first call now the answer
carries ``inline``: the call's body, the lease's owner token and job id.
``POST /v1/runs/{run_id}/inline/checkpoint``: ``{"job_id", "owner", "steps": [op...]}``
records steps and extends the lease (no steps: a heartbeat).
``POST /v1/runs/{run_id}/inline/answer``: ``{"job_id", "owner", "status", "headers",
"body"}``, the call's answer as an SDK sends it; the run as it then stands comes back.
A lost lease is a 409 (``code: lease_lost``). Each route sits behind the bearer check
and dev-mode guard of every ``/v1`` route (``api.py`` wires them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import starlette.requests
import starlette.responses

from stepline import _ownership
from stepline.engine import _response
from stepline.engine._endpoints.inline import InlineRuns, LeaseLostError
from stepline.engine._engine import Engine
from stepline.engine._http import views, wire
from stepline.engine._http.wire import ApiError

Request = starlette.requests.Request
Response = starlette.responses.Response
Handler = Callable[[Request], Awaitable[Response]]

#: A lease token or job id is at most this long (ours are far shorter).
_MAX_TOKEN = 200


def table(engine: Engine, bearer: Callable[[Handler], Handler]) -> list[tuple[str, str, Handler]]:
    """The routes, as ``api._Api.routes`` lists them (method, path, handler)."""
    runs = InlineRuns(engine)
    limit = engine.settings.max_body_bytes
    max_output = engine.settings.max_step_output_bytes

    async def start(request: Request) -> Response:
        body = await wire.read_json(request, limit, required=False)
        body = {} if body is None else body
        if not isinstance(body, dict):
            raise ApiError(400, 'want {"data": {...}, "idempotency_key": "..."}')
        data, key, started_by = body.get("data", {}), body.get("idempotency_key"), None
        if not isinstance(data, dict):
            raise ApiError(400, f"data: want a JSON object, got {type(data).__name__}")
        if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 256):
            raise ApiError(400, "idempotency_key: want a string of 1-256 characters")
        if (started_by := body.get("started_by")) is not None:
            problem = (
                _ownership.principal_problem(started_by)
                if isinstance(started_by, str)
                else "want a string"
            )
            if problem is not None:
                raise ApiError(400, f"started_by: {problem} (the principal starting the run)")
        started = await runs.start(
            request.path_params["function_id"],
            data,
            idempotency_key=key,
            started_by=started_by,
            headers=request.headers,
        )
        inline = None
        if started.call is not None:
            inline = {
                "call": started.call,
                "owner": started.owner,
                "job_id": started.job_id,
                "lease_seconds": started.lease_seconds,
            }
        answer = {"run": views.run(started.run), "created": started.created, "inline": inline}
        return wire.json_response(views.data(answer), 201 if started.created else 200)

    async def checkpoint(request: Request) -> Response:
        body = await _lease_body(request, limit)
        try:
            ops = _response.checkpoint_ops(body, max_output=max_output)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        run_id = request.path_params["run_id"]
        try:
            until = await runs.checkpoint(run_id, body["job_id"], body["owner"], ops)
        except LeaseLostError as exc:
            raise _lost(exc) from None
        return wire.json_response(views.data({"lease_until": views.timestamp(until)}))

    async def answer(request: Request) -> Response:
        body = await _lease_body(request, limit)
        status, headers, text = body.get("status"), body.get("headers", {}), body.get("body")
        if not isinstance(status, int) or not 100 <= status <= 599:
            raise ApiError(400, "status: want the answer's HTTP status (100-599)")
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise ApiError(400, "headers: want an object of strings")
        if not isinstance(text, str):
            raise ApiError(400, "body: want the answer's body as text")
        raw = _response.RawResponse(status, headers, text.encode())
        run_id = request.path_params["run_id"]
        try:
            run = await runs.answer(run_id, body["job_id"], body["owner"], raw)
        except LeaseLostError as exc:
            raise _lost(exc) from None
        return wire.json_response(views.data(views.run(run)))

    return [
        ("POST", "/v1/functions/{function_id:path}/inline", bearer(start)),
        ("POST", "/v1/runs/{run_id}/inline/checkpoint", bearer(checkpoint)),
        ("POST", "/v1/runs/{run_id}/inline/answer", bearer(answer)),
    ]


async def _lease_body(request: Request, limit: int) -> dict[str, Any]:
    body = await wire.read_json(request, limit)
    if not isinstance(body, dict):
        raise ApiError(400, 'want a JSON object with "job_id" and "owner"')
    for name in ("job_id", "owner"):
        value = body.get(name)
        if not isinstance(value, str) or not 0 < len(value) <= _MAX_TOKEN:
            raise ApiError(400, f"{name}: want the lease's {name} from the inline start")
    return body


def _lost(exc: LeaseLostError) -> ApiError:
    return ApiError(409, str(exc), {"error": str(exc), "code": "lease_lost"})
