"""What the client knows of a run: ``RunInfo``, ``StepInfo``, and the errors of run
management (``ManagementError`` and its kinds), as ``_runs``'s flows return and raise them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from stepline import _errors
from stepline._api import step_state
from stepline._protocol import durations
from stepline._status import RunStatus

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


class FunctionNotFoundError(RunNotFoundError):
    """No function with that id where it was asked for.

    The client raises it when the engine does not know the function: the app serving it
    has not been synced (``http_status`` 404; the message says how to sync it). A serve
    endpoint raises it when the engine calls a function the app does not serve, and
    answers 500 (``status``): the engine retries, as the app may be mid-deploy.
    """

    code = "function_not_found"


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
        replay_of: the run this one replays (None: not a replay).
        replay_from_step: the step a replay started from: its name (``"charge"``) when
            the engine says it, else its hashed id (None: replayed from the start).
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
    replay_of: str | None = None
    replay_from_step: str | None = None

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
            created_at=parse_time(raw.get("created_at")),
            started_at=parse_time(raw.get("run_started_at")),
            ended_at=parse_time(raw.get("ended_at")),
            cancel_reason=raw.get("cancel_reason"),
            waiting=raw.get("waiting"),
            event_ids=tuple(raw.get("event_ids") or ()),
            started_by=raw.get("started_by"),
            app_version=raw.get("app_version"),
            notices=tuple(n for n in raw.get("notices") or () if isinstance(n, Mapping)),
            attributes={str(k): str(v) for k, v in (raw.get("attributes") or {}).items()},
            replay_of=raw.get("replay_of"),
            replay_from_step=raw.get("replay_from_step_name") or raw.get("replay_from_step"),
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
            "replay_of": self.replay_of,
            "replay_from_step": self.replay_from_step,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class StepInfo:
    """One step of a run's timeline.

    ``status``: ``Planned``, ``Sleeping``, ``Waiting``, ``Invoking``, ``Calling`` while it
    goes on; ``Completed`` or ``Failed``; ``Cancelled`` when the run ended (cancelled,
    failed, timed out) before the step did. A ``Planned`` step with ``attempts`` is
    waiting to be retried, at ``next_retry_at``; ``state`` words it.

    Attributes:
        op: the op the step was last reported with (``StepFailed`` for a failed
            ``step.run``); ``kind`` is what the step is (``StepRun``).
        max_attempts: how many attempts its function allows (None: not known).
        next_retry_at: when a step waiting to be retried is tried again.
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
    kind: str = ""
    max_attempts: int | None = None
    next_retry_at: dt.datetime | None = None

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
            started_at=parse_time(raw.get("started_at")),
            ended_at=parse_time(raw.get("ended_at")),
            kind=str(raw.get("kind") or step_state.kind(str(raw.get("op", "")))),
            max_attempts=_count(raw.get("max_attempts")),
            next_retry_at=parse_time(raw.get("next_retry_at")),
        )

    def state(self, tz: dt.tzinfo | None = None) -> str:
        """The step's state in words: its status, or ``Retrying at 14:03:12 (attempt 2
        of 4)`` for a step waiting to be retried (the time in ``tz``; None: local)."""
        return step_state.describe(
            self.status,
            attempts=self.attempts,
            max_attempts=self.max_attempts,
            next_retry_at=self.next_retry_at,
            tz=tz,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "id": self.id,
            "name": self.name,
            "op": self.op,
            "kind": self.kind,
            "status": self.status,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "next_retry_at": _iso(self.next_retry_at),
            "output": self.output,
            "error": dict(self.error) if self.error is not None else None,
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
        }


def parse_time(value: object) -> dt.datetime | None:
    """An ISO 8601 time of the engine's JSON (None: absent or unreadable)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return durations.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _count(value: object) -> int | None:
    """A positive count of the engine's JSON (None: absent or not one)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def _error_of(output: object) -> Mapping[str, Any]:
    if isinstance(output, dict):
        nested = output.get("error")
        inner: dict[str, Any] = nested if isinstance(nested, dict) else output
        if "message" in inner or "name" in inner:
            return dict(inner)
    return {"name": "Error", "message": json.dumps(output) if output is not None else ""}
