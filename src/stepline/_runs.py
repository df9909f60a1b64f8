"""Managing runs through the engine's REST API, written once as generators of effects.

Each ``*_flow`` builds requests and reads answers without I/O; ``RunHandle`` /
``SyncRunHandle`` and the client's ``start``/``get_run``/... methods run them with the
async or blocking transport. Errors are typed: a missing run is ``RunNotFoundError``,
a failed or cancelled run's result raises ``RunFailedError``/``RunCancelledError``, a
result not ready in time ``RunTimeoutError``; anything else the engine answers (or its
absence) is a ``ManagementError`` naming the status and the engine's message.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from stepline import _effects, _errors, _identity, _settings, _tracing
from stepline._json import dumpb as json_dumpb
from stepline._json import loads_or_none as json_loads_or_none
from stepline._protocol import headers, signing
from stepline._status import RunStatus

__all__ = [
    "FunctionNotRegisteredError",
    "ManagementError",
    "RunCancelledError",
    "RunFailedError",
    "RunInfo",
    "RunNotFoundError",
    "RunNotStartedError",
    "RunStatus",
    "RunTimeoutError",
    "StepInfo",
]

#: The longest one long-poll request asks the engine to hold (it allows 60 s).
POLL_SECONDS = 25.0


class ManagementError(_errors.SteplineError):
    """The engine could not be reached, or answered something unexpected.

    Attributes:
        http_status: the HTTP status the engine answered (503 while its database is
            unavailable); 0 when it could not be reached or no request was made.
        retry_after: the seconds the answer's ``Retry-After`` asked to wait (rounded up
            to whole seconds); None when it had none.
    """

    code = "management_failed"

    def __init__(self, message: str, *, status: int = 0, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.http_status = status
        self.retry_after = retry_after


class RunNotFoundError(ManagementError):
    """No run (or function) with that id."""

    code = "run_not_found"


class FunctionNotRegisteredError(RunNotFoundError):
    """The engine does not know the function: the app serving it has not been synced.

    A ``RunNotFoundError``, so ``except RunNotFoundError`` written before it existed
    still catches it.
    """

    code = "function_not_registered"


def not_registered_message(function_id: str, engine: str) -> str:
    """What to do when the engine does not know ``function_id``: sync the app serving it."""
    return (
        f"function {function_id!r} is not registered with {engine}: sync the "
        "app that serves it (start the engine with `stepline dev -u URL_OF_THE_SERVE_ENDPOINT`, "
        "or send PUT to the app's serve endpoint, e.g. `curl -X PUT "
        "http://127.0.0.1:8000/api/inngest`), then start it again"
    )


class RunNotStartedError(ManagementError):
    """Flow control turned the start away (rate limit, singleton)."""

    code = "run_not_started"


class RunTimeoutError(ManagementError, TimeoutError):
    """The run had not ended when ``result(timeout=)`` ran out."""

    code = "run_timeout"


class RunFailedError(ManagementError):
    """The run failed; ``error`` is its final error (``name``, ``message``, ``stack``)."""

    code = "run_failed"

    def __init__(self, run: RunInfo) -> None:
        error = run.error or {}
        super().__init__(
            f"run {run.run_id} failed: {error.get('name', 'Error')}: {error.get('message', '')}"
        )
        self.run = run
        self.error = error


class RunCancelledError(ManagementError):
    """The run was cancelled before it finished."""

    code = "run_cancelled"

    def __init__(self, run: RunInfo) -> None:
        reason = f" ({run.cancel_reason})" if run.cancel_reason else ""
        super().__init__(f"run {run.run_id} was cancelled{reason}")
        self.run = run


@dataclasses.dataclass(frozen=True, slots=True)
class RunInfo:
    """A snapshot of a run.

    Attributes:
        output: the return value (decoded JSON) once ``Completed``.
        error: ``{"name", "message", "stack"}`` once ``Failed``.
        waiting: why a queued run is held back (``{"reason": "concurrency", ...}``).
        started_by: the principal that started it (the web kit's caller, or
            ``client.start(started_by=)``); None when nobody in particular did.
        app_version: the version of its app the run started on, if it is known.
        notices: what the engine noticed about the run (each a mapping with ``kind``,
            ``at``, ``message``; ``kind`` ``nondeterminism``: a replay that no longer
            matched the run's history, naming the ``missing``, ``reordered`` and ``new``
            steps).
        attributes: the run's searchable attributes (name -> value, values as strings).
    """

    run_id: str
    function_id: str
    status: RunStatus
    output: Any = None
    error: Mapping[str, Any] | None = None
    created_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    cancel_reason: str | None = None
    waiting: Mapping[str, Any] | None = None
    event_ids: tuple[str, ...] = ()
    started_by: str | None = None
    app_version: str | None = None
    notices: tuple[Mapping[str, Any], ...] = ()
    attributes: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> RunInfo:
        """Read the engine's JSON view of a run."""
        status = RunStatus(str(raw.get("status")))
        output = raw.get("output")
        error: Mapping[str, Any] | None = None
        if status is RunStatus.FAILED:
            error = _error_of(output)
            output = None
        return cls(
            run_id=str(raw["run_id"]),
            function_id=str(raw.get("function_id", "")),
            status=status,
            output=output,
            error=error,
            created_at=_time(raw.get("created_at")),
            started_at=_time(raw.get("run_started_at")),
            ended_at=_time(raw.get("ended_at")),
            cancel_reason=raw.get("cancel_reason"),
            waiting=raw.get("waiting"),
            event_ids=tuple(raw.get("event_ids") or ()),
            started_by=raw.get("started_by"),
            app_version=raw.get("app_version"),
            notices=tuple(n for n in raw.get("notices") or () if isinstance(n, Mapping)),
            attributes={str(k): str(v) for k, v in (raw.get("attributes") or {}).items()},
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (what the web-app kit's routes answer)."""
        return {
            "run_id": self.run_id,
            "function_id": self.function_id,
            "status": self.status.value,
            "output": self.output,
            "error": dict(self.error) if self.error is not None else None,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
            "cancel_reason": self.cancel_reason,
            "waiting": dict(self.waiting) if self.waiting is not None else None,
            "started_by": self.started_by,
            "app_version": self.app_version,
            "notices": [dict(n) for n in self.notices],
            "attributes": dict(self.attributes),
        }


@dataclasses.dataclass(frozen=True, slots=True)
class StepInfo:
    """One step of a run's timeline.

    ``status``: ``Planned``, ``Sleeping``, ``Waiting``, ``Invoking``, ``Calling`` while it
    goes on; ``Completed`` or ``Failed``; ``Cancelled`` when the run ended (cancelled,
    failed, timed out) before the step did.
    """

    id: str
    name: str
    op: str
    status: str
    attempts: int = 0
    output: Any = None
    error: Mapping[str, Any] | None = None
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> StepInfo:
        """Read the engine's JSON view of a step."""
        return cls(
            id=str(raw.get("id", "")),
            name=str(raw.get("name") or raw.get("id", "")),
            op=str(raw.get("op", "")),
            status=str(raw.get("status", "")),
            attempts=int(raw.get("attempts") or 0),
            output=raw.get("output"),
            error=raw.get("error"),
            started_at=_time(raw.get("started_at")),
            ended_at=_time(raw.get("ended_at")),
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "id": self.id,
            "name": self.name,
            "op": self.op,
            "status": self.status,
            "attempts": self.attempts,
            "output": self.output,
            "error": dict(self.error) if self.error is not None else None,
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
        }


# -- flows --------------------------------------------------------------------------------


def start_flow(
    settings: _settings.Settings,
    function_id: str,
    data: Mapping[str, Any],
    idempotency_key: str | None,
    started_by: str | None = None,
    *,
    attributes: Mapping[str, Any] | None = None,
) -> _effects.Flow[tuple[str, bool]]:
    """Start a run; returns ``(run_id, created)`` (False: the key matched an earlier run).

    ``started_by`` records the principal starting it and scopes the key to it;
    ``attributes`` are set on the run it creates (searchable: ``list_flow``).

    With OpenTelemetry installed, the current span's ``traceparent`` goes along: the run
    continues the caller's trace, as runs started by ``send`` do.
    """
    body: dict[str, Any] = {"data": dict(data)}
    if idempotency_key is not None:
        body["idempotency_key"] = idempotency_key
    if started_by is not None:
        body["started_by"] = started_by
    if attributes:
        body["attributes"] = dict(attributes)
    path = f"/v1/functions/{_quote(function_id)}/runs"
    try:
        raw = yield from call(
            settings,
            "POST",
            path,
            body,
            what=f"function {function_id!r}",
            extra_headers=_tracing.outgoing_headers(),
        )
    except RunNotFoundError:  # the only 404 of this route: no such function
        message = not_registered_message(function_id, f"the engine at {settings.api_base_url}")
        raise FunctionNotRegisteredError(message, status=404) from None
    return str(raw["run_id"]), bool(raw.get("created", True))


def get_flow(
    settings: _settings.Settings, run_id: str, wait: float = 0.0
) -> _effects.Flow[RunInfo]:
    """A run; with ``wait`` the engine answers as soon as it ends (or after ``wait`` s)."""
    query = f"?wait={wait:g}" if wait > 0 else ""
    raw = yield from call(
        settings, "GET", f"/v1/runs/{_quote(run_id)}{query}", timeout=wait + 10, what=run_id
    )
    return RunInfo.from_wire(raw)


def result_flow(
    settings: _settings.Settings, run_id: str, timeout: float | None, clock: Callable[[], float]
) -> _effects.Flow[Any]:
    """The run's output once it ends; raises if it failed, was cancelled or ran out of time."""
    deadline = None if timeout is None else clock() + timeout
    while True:
        left = POLL_SECONDS if deadline is None else min(POLL_SECONDS, deadline - clock())
        run = yield from get_flow(settings, run_id, wait=max(left, 0.0))
        if run.status is RunStatus.COMPLETED:
            return run.output
        if run.status is RunStatus.FAILED:
            raise RunFailedError(run)
        if run.status is RunStatus.CANCELLED:
            raise RunCancelledError(run)
        if deadline is not None and clock() >= deadline:
            raise RunTimeoutError(f"run {run_id} still {run.status.value} after {timeout:g}s")


def cancel_flow(settings: _settings.Settings, run_id: str) -> _effects.Flow[RunStatus]:
    """Cancel a run; returns its status afterwards (a run that had ended keeps its own)."""
    raw = yield from call(settings, "POST", f"/v1/runs/{_quote(run_id)}/cancel", {}, what=run_id)
    return RunStatus(str(raw["status"]))


def steps_flow(settings: _settings.Settings, run_id: str) -> _effects.Flow[list[StepInfo]]:
    """A run's steps in order."""
    raw = yield from call(settings, "GET", f"/v1/runs/{_quote(run_id)}/steps", what=run_id)
    return [StepInfo.from_wire(item) for item in raw]


def list_flow(
    settings: _settings.Settings,
    *,
    function_id: str | None,
    status: Sequence[RunStatus | str],
    limit: int,
    cursor: str | None,
    attributes: Mapping[str, str] | None = None,
    version: str | None = None,
) -> _effects.Flow[tuple[list[RunInfo], str | None]]:
    """One page of runs, newest first, and the cursor of the next page (or None).

    ``attributes``: only runs with every one of these (name -> value); ``version``: only
    runs started on this app version.
    """
    query: dict[str, str] = {"limit": str(limit)}
    if version:
        query["version"] = version
    if function_id:
        query["function_id"] = function_id
    if status:
        query["status"] = ",".join(RunStatus(s).value for s in status)
    if cursor:
        query["cursor"] = cursor
    pairs = [*query.items(), *(("attribute", f"{k}:{v}") for k, v in (attributes or {}).items())]
    path = "/v1/runs?" + urllib.parse.urlencode(pairs)
    page = yield from call(settings, "GET", path, what="runs", whole=True)
    runs = [RunInfo.from_wire(item) for item in page.get("data") or []]
    return runs, (page.get("metadata") or {}).get("next_cursor")


def rerun_flow(settings: _settings.Settings, run_id: str) -> _effects.Flow[str]:
    """Start a new run of the same function with the same events; returns its id."""
    raw = yield from call(settings, "POST", f"/v1/runs/{_quote(run_id)}/rerun", {}, what=run_id)
    return str(raw["run_id"])


# -- plumbing -------------------------------------------------------------------------------


def call(
    settings: _settings.Settings,
    method: str,
    path: str,
    body: object = None,
    *,
    what: str,
    timeout: float | None = None,
    whole: bool = False,
    extra_headers: Mapping[str, str] | None = None,
) -> _effects.Flow[Any]:
    request_headers = {headers.USER_AGENT: _identity.SDK_HEADER, "accept": "application/json"}
    if extra_headers:
        request_headers.update(extra_headers)
    if settings.signing_key:
        request_headers[headers.AUTHORIZATION] = signing.bearer_token(settings.signing_key)
    if settings.env:
        request_headers[headers.ENV] = settings.env
    payload = None
    if body is not None:
        request_headers[headers.CONTENT_TYPE] = headers.JSON
        try:
            payload = json_dumpb(body, finite=True)
        except (TypeError, ValueError) as exc:
            raise ManagementError(f"the data is not JSON-serializable: {exc}") from None
    response: _effects.HttpResponse = yield _effects.HttpRequest(
        method=method,
        url=f"{settings.api_base_url}{path}",
        headers=request_headers,
        body=payload,
        timeout=timeout or settings.request_timeout,
        value=body,
    )
    if response.status == 0:
        raise ManagementError(f"engine at {settings.api_base_url} unreachable: {response.error}")
    parsed = response.value if response.value is not None else json_loads_or_none(response.body)
    message = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(message, str):
        message = response.body[:200].decode("utf-8", "replace") or "no message"
    if response.status == 404:
        raise RunNotFoundError(message, status=404)
    if response.status == 409:
        raise RunNotStartedError(message, status=409)
    if not response.ok or not isinstance(parsed, dict):
        route = path.split("?", maxsplit=1)[0]
        asked = response.retry_after
        raise ManagementError(
            f"engine answered {method} {route} with {response.status}: {message}",
            status=response.status,
            retry_after=None if asked is None else math.ceil(asked),
        )
    return parsed if whole else parsed.get("data")


def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _time(value: object) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def _error_of(output: object) -> Mapping[str, Any]:
    if isinstance(output, dict):
        nested = output.get("error")
        inner: dict[str, Any] = nested if isinstance(nested, dict) else output
        if "message" in inner or "name" in inner:
            return dict(inner)
    return {"name": "Error", "message": json.dumps(output) if output is not None else ""}
