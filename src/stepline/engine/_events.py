"""Events: validating what the event API receives, and the internal events runs emit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from stepline import _json
from stepline._protocol import event_names
from stepline._status import RunStatus
from stepline.engine import _ids
from stepline.engine._model import EventRecord, Job, JobKind, Run, storable

INVOKED = "inngest/function.invoked"
FINISHED = "inngest/function.finished"
FAILED = "inngest/function.failed"
CANCELLED = "inngest/function.cancelled"
#: The engine's own events: never replayed as a sender's (``event_names`` reserves more).
RESERVED_PREFIX = event_names.ENGINE_PREFIX
MAX_EVENT_BYTES = 3 * 1024 * 1024
MAX_EVENTS = 5000
_MIN_TS = 315_532_800_000  # 1980-01-01 in ms
_MAX_TS = 4_102_444_800_000  # 2100-01-01 in ms


class EventError(ValueError):
    """An event the API refuses (answered with 400, naming the event's index).

    ``ids`` are those of the events before it in the same request, which were stored
    (Inngest's event API answers them with the error; inngest-py's ``SendEventsError.ids``).
    """

    def __init__(self, message: str, ids: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.ids = list(ids)


def normalise(raw: object, *, index: int, now: float, internal_id: str) -> EventRecord:
    """Validate one received event and give it its wire shape.

    Raises:
        EventError: not an object, no name, reserved name, bad data/ts/v, too large.
    """
    where = f"event {index}"
    if not isinstance(raw, dict):
        raise EventError(f"{where}: must be a JSON object")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise EventError(f"{where}: name is required and must be a non-empty string")
    if not storable(name):
        raise EventError(f"{where}: name must not contain NUL characters")
    if (reserved := event_names.reserved_problem(name)) is not None:
        raise EventError(f"{where}: {name!r}: {reserved}")
    data = raw.get("data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise EventError(f"{where}: data must be a JSON object")
    data = {k: v for k, v in data.items() if k != "_inngest"}
    user = raw.get("user") or {}
    if not isinstance(user, dict):
        raise EventError(f"{where}: user must be a JSON object")
    ts = raw.get("ts") or 0
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        raise EventError(f"{where}: ts must be an integer number of milliseconds")
    ts = int(ts) or int(now * 1000)
    if not _MIN_TS <= ts <= _MAX_TS:
        raise EventError(f"{where}: ts {ts} is not between 1980 and 2100 (milliseconds)")
    event_id = raw.get("id")
    if event_id is not None and not (isinstance(event_id, str) and storable(event_id)):
        raise EventError(f"{where}: id must be a string without NUL characters")
    version = raw.get("v")
    if version is not None and not (isinstance(version, str) and storable(version)):
        raise EventError(f"{where}: v must be a string without NUL characters")
    payload: dict[str, Any] = {
        "name": name,
        "data": data,
        "id": event_id or internal_id,
        "ts": ts,
        "user": user,
    }
    if version:
        payload["v"] = version
    if len(_json.dumpb(payload)) > MAX_EVENT_BYTES:
        raise EventError(f"{where}: larger than {MAX_EVENT_BYTES} bytes")
    return EventRecord(internal_id=internal_id, name=name, payload=payload, received_at=now)


def valid_prefix(
    items: Sequence[object], *, now: float, ids: Sequence[str]
) -> tuple[list[EventRecord], EventError | None]:
    """The events before the first invalid one, and that one's error (None if all are valid).

    Inngest's event API stores a batch up to its first invalid event and nothing after it;
    so does ours (in one transaction). Pure.
    """
    records: list[EventRecord] = []
    for index, item in enumerate(items):
        try:
            records.append(normalise(item, index=index, now=now, internal_id=ids[index]))
        except EventError as exc:
            return records, exc
    return records, None


def internal(
    name: str, data: Mapping[str, Any], *, now: float, event_id: str | None = None
) -> EventRecord:
    """An event the engine emits itself (names under ``inngest/``)."""
    internal_id = _ids.ulid(int(now * 1000))
    payload = {
        "name": name,
        "data": dict(data),
        "id": event_id or internal_id,
        "ts": int(now * 1000),
        "user": {},
    }
    return EventRecord(internal_id=internal_id, name=name, payload=payload, received_at=now)


def invoked(
    run: Run,
    opts_payload: object,
    *,
    target: str,
    correlation: str,
    timeout: float,
    version: object,
    now: float,
) -> EventRecord:
    """The ``inngest/function.invoked`` event a run's invoke step sends ``target``.

    ``opts_payload`` is the step's ``payload`` option (``data``, ``user``, ``v``);
    ``version`` the invoking function's.
    """
    payload = _object(opts_payload)
    meta = {
        "fn_id": target,
        "correlation_id": correlation,
        "source_app_id": run.app_id,
        "source_fn_id": run.function_id,
        "source_run_id": run.run_id,
        "source_fn_v": version,
        "expire": int(timeout * 1000),
        "name": INVOKED,
    }
    event = internal(INVOKED, {**_object(payload.get("data")), "_inngest": meta}, now=now)
    if isinstance(payload.get("user"), dict):
        event.payload["user"] = payload["user"]
    if isinstance(payload.get("v"), str):
        event.payload["v"] = payload["v"]
    return event


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def run_ended(run: Run, *, error: dict[str, Any] | None) -> dict[str, Any]:
    """The data of ``inngest/function.finished|failed|cancelled`` for an ended run."""
    data: dict[str, Any] = {
        "function_id": run.function_id,
        "run_id": run.run_id,
        "event": run.events[0],
        "events": run.events,
        "_inngest": {"status": run.status.value},
    }
    if run.correlation_id:
        data["correlation_id"] = run.correlation_id
    if run.status is RunStatus.COMPLETED:
        data["result"] = _json.loads(run.output) if run.output else None
    elif run.status is RunStatus.FAILED:
        data["error"] = error or {"name": "Error", "message": "run failed"}
    else:
        reason = run.cancel_reason or "cancelled"
        data["error"] = {"name": "FunctionCancelledError", "message": reason}
    return data


def fanout_job(event: EventRecord, now: float) -> Job:
    """The queue item that matches a stored event against triggers, waits and cancels."""
    return Job(
        job_id=f"fanout:{event.internal_id}",
        kind=JobKind.FANOUT,
        available_at=now,
        payload={"event_id": event.internal_id},
    )
