"""Managing runs through the engine's REST API, written once as generators of effects.

Each ``*_flow`` builds requests and reads answers without I/O; the client's
``start``/``list_runs``/... methods and the run handles run them on the client's
``EngineConnection``, async or blocking. Errors are typed: a missing run is ``RunNotFoundError``,
a failed or cancelled run's result raises ``RunFailedError``/``RunCancelledError``, a
result not ready in time ``RunTimeoutError``; anything else the engine answers (or its
absence) is a ``ManagementError`` naming the status and the engine's message.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from stepline import _identity, _settings
from stepline._api import actor
from stepline._api.run_info import (
    FunctionNotFoundError,
    ManagementError,
    RunCancelledError,
    RunFailedError,
    RunInfo,
    RunNotFoundError,
    RunNotStartedError,
    RunStatus,
    RunTimeoutError,
    StepInfo,
    not_registered_message,
)
from stepline._execution import tracing
from stepline._json import dumpb as json_dumpb
from stepline._json import loads_or_none as json_loads_or_none
from stepline._protocol import headers, signing
from stepline._transport import effects as _effects

__all__ = [
    "FunctionNotFoundError",
    "ManagementError",
    "RunCancelledError",
    "RunFailedError",
    "RunInfo",
    "RunNotFoundError",
    "RunNotStartedError",
    "RunStatus",
    "RunTimeoutError",
    "StepInfo",
    "not_registered_message",
]

#: The longest one long-poll request asks the engine to hold (it allows 60 s).
POLL_SECONDS = 25.0


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
    raw = yield from _start(
        settings,
        function_id,
        data,
        idempotency_key=idempotency_key,
        started_by=started_by,
        attributes=attributes,
    )
    return str(raw["run_id"]), bool(raw.get("created", True))


def execute_flow(
    settings: _settings.Settings,
    function_id: str,
    data: Mapping[str, Any],
    *,
    idempotency_key: str | None,
    started_by: str | None,
    attributes: Mapping[str, Any] | None,
    timeout: float | None,
    clock: Callable[[], float],
) -> _effects.Flow[Any]:
    """Start a run and return its output once it ends, as ``start_flow`` then
    ``result_flow`` do, in one request when the run ends within ``POLL_SECONDS``.

    The start asks the engine to hold its answer until the run ends (``?wait=``); an
    engine that does not (one answer without ``run``) is long-polled as ``result`` does.
    """
    deadline = None if timeout is None else clock() + timeout
    wait = POLL_SECONDS if timeout is None else max(min(POLL_SECONDS, timeout), 0.0)
    raw = yield from _start(
        settings,
        function_id,
        data,
        idempotency_key=idempotency_key,
        started_by=started_by,
        attributes=attributes,
        wait=wait,
    )
    run_id = str(raw["run_id"])
    if isinstance(raw.get("run"), dict):
        run = RunInfo.from_wire(raw["run"])
        if run.status.terminal:
            return _output(run)
    return (yield from _until_ended(settings, run_id, timeout, deadline, clock))


def _start(
    settings: _settings.Settings,
    function_id: str,
    data: Mapping[str, Any],
    *,
    idempotency_key: str | None,
    started_by: str | None,
    attributes: Mapping[str, Any] | None,
    wait: float = 0.0,
) -> _effects.Flow[dict[str, Any]]:
    body: dict[str, Any] = {"data": dict(data)}
    if idempotency_key is not None:
        body["idempotency_key"] = idempotency_key
    if started_by is not None:
        body["started_by"] = started_by
    if attributes:
        body["attributes"] = dict(attributes)
    path = f"/v1/functions/{quote(function_id)}/runs"
    try:
        raw = yield from call(
            settings,
            "POST",
            path + (f"?wait={wait:g}" if wait > 0 else ""),
            body,
            what=f"function {function_id!r}",
            timeout=wait + 10 if wait > 0 else None,
            extra_headers=tracing.outgoing_headers(),
        )
    except RunNotFoundError:  # the only 404 of this route: no such function
        raise unknown_function(settings, function_id) from None
    return dict(raw)


def get_flow(
    settings: _settings.Settings, run_id: str, wait: float = 0.0
) -> _effects.Flow[RunInfo]:
    """A run; with ``wait`` the engine answers as soon as it ends (or after ``wait`` s)."""
    query = f"?wait={wait:g}" if wait > 0 else ""
    raw = yield from call(
        settings, "GET", f"/v1/runs/{quote(run_id)}{query}", timeout=wait + 10, what=run_id
    )
    return RunInfo.from_wire(raw)


def result_flow(
    settings: _settings.Settings, run_id: str, timeout: float | None, clock: Callable[[], float]
) -> _effects.Flow[Any]:
    """The run's output once it ends; raises if it failed, was cancelled or ran out of time."""
    deadline = None if timeout is None else clock() + timeout
    return (yield from _until_ended(settings, run_id, timeout, deadline, clock))


def _until_ended(
    settings: _settings.Settings,
    run_id: str,
    timeout: float | None,
    deadline: float | None,
    clock: Callable[[], float],
) -> _effects.Flow[Any]:
    while True:
        left = POLL_SECONDS if deadline is None else min(POLL_SECONDS, deadline - clock())
        run = yield from get_flow(settings, run_id, wait=max(left, 0.0))
        if run.status.terminal:
            return _output(run)
        if deadline is not None and clock() >= deadline:
            raise RunTimeoutError(f"run {run_id} still {run.status.value} after {timeout:g}s")


def _output(run: RunInfo) -> Any:
    """An ended run's output; raises if it failed or was cancelled."""
    if run.status is RunStatus.FAILED:
        raise RunFailedError(run)
    if run.status is RunStatus.CANCELLED:
        raise RunCancelledError(run)
    return run.output


def cancel_flow(settings: _settings.Settings, run_id: str) -> _effects.Flow[RunStatus]:
    """Cancel a run; returns its status afterwards (a run that had ended keeps its own)."""
    raw = yield from call(settings, "POST", f"/v1/runs/{quote(run_id)}/cancel", {}, what=run_id)
    return RunStatus(str(raw["status"]))


def steps_flow(settings: _settings.Settings, run_id: str) -> _effects.Flow[list[StepInfo]]:
    """A run's steps in order."""
    raw = yield from call(settings, "GET", f"/v1/runs/{quote(run_id)}/steps", what=run_id)
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
    query: str | None = None,
) -> _effects.Flow[tuple[list[RunInfo], str | None]]:
    """One page of runs, newest first, and the cursor of the next page (or None).

    ``attributes``: only runs with every one of these (name -> value); ``version``: only
    runs started on this app version; ``query``: only runs a run query matches (a CEL
    expression over the run's fields, docs/dashboard.md).
    """
    params: dict[str, str] = {"limit": str(limit)}
    if version:
        params["version"] = version
    if function_id:
        params["function_id"] = function_id
    if status:
        params["status"] = ",".join(RunStatus(s).value for s in status)
    if cursor:
        params["cursor"] = cursor
    if query:
        params["query"] = query
    pairs = [*params.items(), *(("attribute", f"{k}:{v}") for k, v in (attributes or {}).items())]
    path = "/v1/runs?" + urllib.parse.urlencode(pairs)
    page = yield from call(settings, "GET", path, what="runs", whole=True)
    runs = [RunInfo.from_wire(item) for item in page.get("data") or []]
    return runs, (page.get("metadata") or {}).get("next_cursor")


def unknown_function(settings: _settings.Settings, function_id: str) -> FunctionNotFoundError:
    """The error for a 404 from a route under ``/v1/functions/{id}``: no such function."""
    message = not_registered_message(function_id, f"the engine at {settings.api_base_url}")
    return FunctionNotFoundError(message, status=404)


def rerun_flow(settings: _settings.Settings, run_id: str) -> _effects.Flow[str]:
    """Start a new run of the same function with the same events; returns its id."""
    raw = yield from call(settings, "POST", f"/v1/runs/{quote(run_id)}/rerun", {}, what=run_id)
    return str(raw["run_id"])


def replay_flow(
    settings: _settings.Settings, run_id: str, from_step: str | None
) -> _effects.Flow[str]:
    """``POST /v1/runs/{id}/replay``: a new run of an ended run, from ``from_step`` (or
    from the start); returns its id."""
    body = {} if from_step is None else {"from_step": from_step}
    raw = yield from call(settings, "POST", f"/v1/runs/{quote(run_id)}/replay", body, what=run_id)
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
    settings.require_engine(f"{method} {path.split('?', maxsplit=1)[0]}")
    request_headers = {headers.USER_AGENT: _identity.SDK_HEADER, "accept": "application/json"}
    if extra_headers:
        request_headers.update(extra_headers)
    if settings.signing_key:
        request_headers[headers.AUTHORIZATION] = signing.bearer_token(settings.signing_key)
    acting_for = actor.current()
    if acting_for is not None:
        request_headers[actor.HEADER] = acting_for
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


def quote(value: str) -> str:
    """``value`` as one path segment of a REST URL (every character but letters, digits
    and ``_.-~`` escaped, ``/`` included)."""
    return urllib.parse.quote(value, safe="")
