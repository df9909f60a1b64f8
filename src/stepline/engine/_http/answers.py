"""The REST API's answers apart from Starlette: what a start asks for, how errors map.

``api.py`` answers through these, and so does the embedded engine's direct path
(``stepline.embedded._direct``), which serves its client's starts and waits without the
ASGI app: both give the same status, body and log line for the same request.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from stepline._api import ownership
from stepline.engine._control import attributes as _control_attributes
from stepline.engine._errors import (
    EndpointOnlyError,
    NotFoundError,
    QueryTimeoutError,
    SkippedError,
)
from stepline.engine._http import views, wire
from stepline.engine._http.wire import ApiError
from stepline.engine._model import Run
from stepline.engine._runs import starts as _starts
from stepline.engine._store.faults import StoreUnavailable

__all__ = ["JsonAnswer", "StartRequest", "failure", "start_request"]

logger = logging.getLogger("stepline.engine.api")

#: route templates answered in the event API's shape
EVENT_ROUTES = frozenset({"/e/{key}"})


@dataclasses.dataclass(frozen=True)
class JsonAnswer:
    """A JSON answer: status, body, and headers beyond the content type."""

    status: int
    body: Any
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class StartRequest:
    """``POST /v1/functions/{id}/runs``'s body, checked."""

    data: dict[str, Any]
    idempotency_key: str | None
    started_by: str | None
    run_id: str | None
    attributes: dict[str, str]


def start_request(body: object) -> StartRequest:
    """A start's JSON body (None: an empty one), checked.

    Raises:
        ApiError: 400, naming the field and what it wants.
        AttributesError: the attributes are not storable (400).
    """
    body = start_body(body)
    proposed = body.get("run_id")  # the outbox relay names the run its writer promised
    if proposed is not None and (problem := _starts.run_id_problem(proposed)) is not None:
        raise ApiError(400, f"run_id: {problem}")
    attributes = _control_attributes.checked(body.get("attributes", {}))
    data, key, started_by = body["data"], body["idempotency_key"], body["started_by"]
    return StartRequest(data, key, started_by, proposed, attributes)


def start_body(body: object) -> dict[str, Any]:
    """The fields every start takes (``data``, ``idempotency_key``, ``started_by``), checked,
    in a copy of ``body`` (None: an empty one) with absent ones filled in.

    Raises:
        ApiError: 400, naming the field and what it wants.
    """
    body = {} if body is None else body
    if not isinstance(body, dict):
        raise ApiError(400, 'want {"data": {...}, "idempotency_key": "..."}')
    data = body.get("data", {})
    if not isinstance(data, dict):
        raise ApiError(400, f"data: want a JSON object, got {type(data).__name__}")
    key = wire.idempotency_key(body.get("idempotency_key"))
    started_by = body.get("started_by")
    if started_by is not None:
        problem = (
            ownership.principal_problem(started_by)
            if isinstance(started_by, str)
            else "want a string"
        )
        if problem is not None:
            raise ApiError(400, f"started_by: {problem} (the principal starting the run)")
    return {**body, "data": data, "idempotency_key": key, "started_by": started_by}


def failure(method: str, path: str, exc: Exception) -> JsonAnswer:
    """The answer to ``exc`` raised while serving ``method path`` (a route template), logged;
    under ``/v1``, its body is the document's one ``Error`` object (``wire.error_object``).

    A template, not the URL: ``/e/{key}`` must never put a key in the logs.
    """
    answer = _failure(method, path, exc)
    if not path.startswith("/v1/") or not isinstance(answer.body, dict):
        return answer
    return dataclasses.replace(answer, body=wire.error_object(answer.status, answer.body))


def _failure(method: str, path: str, exc: Exception) -> JsonAnswer:
    if isinstance(exc, ApiError):
        status, message, body = exc.status, exc.message, exc.body
    elif isinstance(exc, NotFoundError):
        status, message, body = 404, str(exc.args[0] if exc.args else exc), None
    elif isinstance(exc, _control_attributes.AttributesError):
        status, message, body = 400, str(exc), None
    elif isinstance(exc, QueryTimeoutError):
        status, message, body = 503, str(exc), None
    elif isinstance(exc, SkippedError):
        status, message = 409, str(exc)
        body = {"error": message, "event_id": exc.event_id}
    elif isinstance(exc, EndpointOnlyError):
        status, message = 400, str(exc)
        body = {"error": message, "code": "endpoint_only"}
    elif isinstance(exc, _starts.RunIdTakenError):
        status, message = 409, str(exc)
        body = {"error": message, "code": "run_id_taken"}
    elif isinstance(exc, StoreUnavailable):  # logged once by the store's guard
        return unavailable(exc, path)
    else:
        logger.exception("unexpected error in %s %s", method, path)
        return JsonAnswer(500, {"error": "internal server error"})
    level = logging.INFO if status == 404 else logging.WARNING
    logger.log(level, "rejected %s %s: %d %s", method, path, status, message)
    return JsonAnswer(status, body if body is not None else {"error": message})


def unavailable(exc: StoreUnavailable, path: str) -> JsonAnswer:
    """503 for a database fault on the route ``path``, with ``Retry-After``.

    The store's guard has logged the fault once already, so nothing more is logged per
    request. The event API's answer keeps its own shape (``ids``, ``status``,
    ``error``), with the cause added, so the SDKs' senders read it as any refusal.
    """
    body = exc.body()
    if path in EVENT_ROUTES:
        body = {"ids": [], **body}
    return JsonAnswer(exc.status, body, {"retry-after": str(exc.retry_after)})


def started_view(run_id: str, function_id: str, created: bool, run: Run | None) -> dict[str, Any]:
    """A start's answer (``data``): the run's id, and with ``?wait=`` the run itself as it
    was when it ended or the wait ran out."""
    payload: dict[str, Any] = {"run_id": run_id, "function_id": function_id, "created": created}
    if run is not None:
        payload["run"] = views.run(run, with_events=True)
    return views.data(payload)


def wait_failed(run_id: str, exc: Exception) -> None:
    """A start's wait failed after the run started: it is answered without the run (a
    refusal would read as a failed start, and a retry would start another run); the
    client reads the run with ``GET /v1/runs/{id}``, which reports the fault."""
    logger.warning("run %s started; waiting for its end failed (%s): answered without it",
                   run_id, exc)  # fmt: skip
