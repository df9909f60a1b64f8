"""Bulk actions: cancel or replay every run a filter matches, as a background job.

An action is a row of ``bulk_actions`` and one queue job (``JobKind.BULK``, id
``bulk:<id>``). Each time the job comes due, the worker runs ``batch`` in one
transaction: it locks the action's row, reads up to ``bulk_batch_size`` runs after the
action's ``cursor`` in run id order, acts on those the filter matches, moves the cursor
and the counts, and makes the job due again after ``bulk_pause`` seconds (or ends it).
A cancel batch reads what its runs' cancels read (rows, steps, attributes, waits) in a
statement or two for the whole batch first, so each run costs only its cancel's writes.
A run is acted on in the very transaction that moves the cursor past it, so a crash
loses or repeats nothing: the job's lease lapses and the next batch starts at the
cursor. Two nodes holding the job at once take turns on the row lock, and the second
starts where the first stopped.

The filter: ``function_id``, ``status`` (a list), ``since``/``until`` (creation times,
inclusive), ``event`` (the trigger event's name) and ``if`` (a CEL expression over the
trigger event, as ``event``). Only runs created before the action was asked are matched
(``until`` is capped at that moment), so it ends, and never acts on runs it started.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from stepline import _cel
from stepline._status import RunStatus
from stepline.engine import _events, _ids
from stepline.engine._apps.registry import compiled
from stepline.engine._config import EngineSettings
from stepline.engine._control import attributes as _run_attributes
from stepline.engine._control import replay
from stepline.engine._model import Job, JobKind, Run, storable
from stepline.engine._runs.transitions import RunTransitions
from stepline.engine._store import Tx
from stepline.engine._store.bulk import BulkAction

ACTIONS = ("cancel", "replay")
#: statuses an action may still move on from
LIVE = ("queued", "running")
_STATUSES = {s.value.lower(): s for s in RunStatus}
_KEYS = ("function_id", "status", "since", "until", "event", "if", "attributes")
MAX_EXPRESSION = 4096


class BulkError(ValueError):
    """A bulk request the API refuses (answered with ``status``: 400, 404, 409)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True, slots=True)
class BulkFilter:
    """Which runs an action acts on; every criterion set must hold (see the module)."""

    function_id: str | None = None
    status: tuple[RunStatus, ...] = ()
    since: float | None = None
    until: float | None = None
    event: str | None = None
    expression: str | None = None
    #: runs with every one of these attributes (name -> value)
    attributes: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The filter as stored and shown (``if`` for the expression)."""
        found = {
            "function_id": self.function_id,
            "status": [s.value for s in self.status],
            "since": self.since,
            "until": self.until,
            "event": self.event,
            "if": self.expression,
            "attributes": dict(self.attributes) or None,
        }
        return {k: v for k, v in found.items() if v not in (None, [])}

    def matches(self, run: Run) -> bool:
        """Whether a run the store's part of the filter found matches the rest (pure)."""
        trigger = run.events[0] if run.events else {}
        if self.event is not None and trigger.get("name") != self.event:
            return False
        return self.expression is None or compiled(self.expression).matches({"event": trigger})


def parse_filter(raw: object, *, times: Any = None) -> BulkFilter:
    """A filter from a request's JSON object; ``times`` reads a time value (REST's).

    Raises:
        BulkError: unknown keys, wrong types, an invalid expression (the message names
            the parse error), or an empty filter (it would match every run).
    """
    if not isinstance(raw, Mapping):
        raise BulkError('filter: want an object such as {"function_id": "...", "status": [...]}')
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        raise BulkError(f"filter: unknown key(s) {', '.join(unknown)}; known: {', '.join(_KEYS)}")
    found = {k: raw.get(k) for k in _KEYS if raw.get(k) not in (None, "", [])}
    if not found:
        raise BulkError(
            "filter: name at least a function_id, status, since/until, event, if or attributes "
            "(an empty filter would match every run)"
        )
    texts = {k: _text(k, found.get(k)) for k in ("function_id", "event", "if")}
    expression = texts["if"]
    if expression is not None:
        if len(expression) > MAX_EXPRESSION:
            raise BulkError(f"filter.if: at most {MAX_EXPRESSION} characters")
        try:
            _cel.check(expression, allowed={"event"})
        except _cel.ExpressionError as exc:
            raise BulkError(f"filter.if: {exc}") from None
    read = times or _seconds
    return BulkFilter(
        function_id=texts["function_id"],
        status=_statuses(found.get("status")),
        since=read(found["since"], "filter.since") if "since" in found else None,
        until=read(found["until"], "filter.until") if "until" in found else None,
        event=texts["event"],
        expression=expression,
        attributes=_attributes(found.get("attributes")),
    )


def _attributes(raw: object) -> dict[str, str]:
    if raw is None:
        return {}
    try:
        return _run_attributes.checked(raw)
    except _run_attributes.AttributesError as exc:
        raise BulkError(f"filter.{exc}") from None


def _text(key: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 1024 or not storable(value):
        raise BulkError(f"filter.{key}: want a string of at most 1024 characters")
    return value


def _statuses(value: object) -> tuple[RunStatus, ...]:
    items = [value] if isinstance(value, str) else value
    if items is None:
        return ()
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise BulkError("filter.status: want a status or a list of them")
    unknown = [i for i in items if i.strip().lower() not in _STATUSES]
    if unknown:
        known = ", ".join(s.value for s in RunStatus)
        raise BulkError(f"filter.status: unknown {unknown[0]!r}; want one of {known}")
    return tuple(dict.fromkeys(_STATUSES[i.strip().lower()] for i in items))


def _seconds(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BulkError(f"{name}: want epoch seconds")
    return float(value)


# -- in a transaction -------------------------------------------------------------------


def job_id(bulk_id: str) -> str:
    """The id of an action's queue job."""
    return f"bulk:{bulk_id}"


def create(
    tx: Tx, action: str, where: BulkFilter, key: str | None, now: float
) -> tuple[BulkAction, bool]:
    """Store an action and queue its first batch; ``(action, created)``.

    An ``idempotency_key`` already used answers that action (``created`` False), whatever
    its filter.
    """
    if key is not None and (found := tx.bulk.bulk_by_key(key)) is not None:
        return found, False
    bounded = dataclasses.replace(where, until=min(where.until or now, now))
    new = BulkAction(
        bulk_id=_ids.ulid(int(now * 1000)), action=action, filter=bounded.to_json(),
        status="queued", created_at=now, updated_at=now, idempotency_key=key,
    )  # fmt: skip
    if not tx.bulk.insert_bulk(new):  # a concurrent request with the key won
        found = tx.bulk.bulk_by_key(str(key))
        assert found is not None
        return found, False
    tx.queue.enqueue(Job(job_id(new.bulk_id), JobKind.BULK, now, payload={"bulk_id": new.bulk_id}))
    return new, True


def cancel(tx: Tx, bulk_id: str, now: float) -> BulkAction | None:
    """Stop an action before its next batch; None if there is none. An ended one stays."""
    found = tx.bulk.get_bulk(bulk_id, lock=True)
    if found is not None and found.status in LIVE:
        found.status, found.updated_at = "cancelled", now
        tx.bulk.update_bulk(found)
        tx.queue.delete_job(job_id(bulk_id))
    return found


def batch(
    tx: Tx, job: Job, transitions: RunTransitions, settings: EngineSettings, now: float
) -> None:
    """Handle an action's next batch (the worker's ``JobKind.BULK``; see the module)."""
    found = tx.bulk.get_bulk(str(job.payload.get("bulk_id")), lock=True)
    if found is None or found.status not in LIVE:
        tx.queue.delete_job(job.job_id)
        return
    where = _stored(found.filter)
    limit = settings.bulk_batch_size
    runs = tx.bulk.bulk_runs(
        function_id=where.function_id, statuses=[s.value for s in where.status],
        since=where.since, until=float(where.until or found.created_at), after=found.cursor,
        limit=limit, attributes=where.attributes,
    )  # fmt: skip
    matched = [run for run in runs if not _own(run, found) and where.matches(run)]
    if found.action == "cancel":
        _read_ahead(tx, [run.run_id for run in matched])
    for run in matched:
        found.matched += 1
        if _act(tx, transitions, found, run, now):
            found.applied += 1
        else:
            found.skipped += 1
    found.cursor = runs[-1].run_id if runs else found.cursor
    found.status, found.updated_at = ("running" if len(runs) == limit else "completed"), now
    tx.bulk.update_bulk(found)
    if found.status == "completed":
        tx.queue.delete_job(job.job_id)
    else:
        # a copy: the worker's own job stays as leased (a work may run twice: group commit)
        later = now + settings.bulk_pause
        tx.queue.update_job(
            dataclasses.replace(job, available_at=later, lease_owner=None, lease_expires=None)
        )


def _read_ahead(tx: Tx, run_ids: list[str]) -> None:
    """What cancelling each of ``run_ids`` reads, read for all of them at once: their rows
    (locked), steps and pauses, their attributes and claims (singletons, buckets), and
    whether a wait listens for the events a cancelled run emits. Each run's cancel then
    sends only its writes, and none where there is nothing to delete."""
    if run_ids:
        tx.lock_runs(run_ids)
        tx.attributes.read_ahead(run_ids)
        tx.flow.read_ahead(run_ids)
        tx.note_event_names((_events.FINISHED, _events.CANCELLED))


def _act(tx: Tx, transitions: RunTransitions, action: BulkAction, run: Run, now: float) -> bool:
    """Cancel or replay one run; False when it does not apply (ended, live, unregistered)."""
    if action.action == "cancel":
        return transitions.cancel(tx, run.run_id, now, f"cancelled by bulk action {action.bulk_id}")
    fn = transitions.registry.get(run.function_id)
    if fn is None or not run.status.terminal:
        return False
    replay.start(tx, fn, run, now)
    return True


def _own(run: Run, action: BulkAction) -> bool:
    """A run this very action started (a replay, at or after the action's creation)."""
    ours = action.action == "replay" and (run.origin or "").startswith(replay.PREFIX)
    return ours and run.created_at >= action.created_at


def _stored(raw: Mapping[str, Any]) -> BulkFilter:
    statuses = tuple(RunStatus(s) for s in raw.get("status") or ())
    return BulkFilter(
        function_id=raw.get("function_id"), status=statuses, since=raw.get("since"),
        until=raw.get("until"), event=raw.get("event"), expression=raw.get("if"),
        attributes=dict(raw.get("attributes") or {}),
    )  # fmt: skip
