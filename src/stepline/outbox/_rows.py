"""Outbox rows, decided without I/O: what a ``send`` or ``start`` writes, and the ids it returns.

Events are checked exactly as ``Client.send`` checks them (the same code builds the same
wire list); a start's function id is resolved as ``Client.start`` resolves it. The ids the
caller gets back are fixed here, before anything is written: event ids follow from the
row's seed (``stepline._protocol.event_ids.seeded``, the engine's algorithm), the run id is
a ULID the engine is asked to use.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from stepline import _errors
from stepline._api import management, ownership, sender
from stepline._event import Event
from stepline._json import dumps as json_dumps
from stepline._json import loads as json_loads
from stepline._protocol import event_ids, event_names

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._definition.function import Function

__all__ = ["OutboxError", "OutboxRow", "StartedRun", "event_row", "start_row"]

#: A row of ``send``: ``{"events": [...], "seed": "<ms>,<b64>"}``.
EVENT = "event"
#: A row of ``start``: ``{"function_id", "data", "run_id", "idempotency_key", "started_by"}``.
START = "start"
_MAX_KEY = 256


class OutboxError(_errors.SteplineError, ValueError):
    """What an outbox write was given cannot be delivered (refused before anything is written)."""

    code = "outbox_invalid"
    status = 400
    retriable = False


@dataclasses.dataclass(frozen=True, slots=True)
class OutboxRow:
    """One row to insert into ``stepline_outbox``.

    Attributes:
        kind: ``"event"`` or ``"start"``.
        body: the row's JSON body (see the module's constants).
        created_at: when it was written, in epoch seconds.
    """

    kind: str
    body: str
    created_at: float

    def params(self) -> dict[str, Any]:
        """The insert's named parameters."""
        return {"created_at": self.created_at, "kind": self.kind, "body": self.body}

    def positional(self) -> tuple[float, str, str]:
        """The insert's parameters in order (``created_at``, ``kind``, ``body``)."""
        return self.created_at, self.kind, self.body

    def decoded(self) -> dict[str, Any]:
        """The body as a dict."""
        body: dict[str, Any] = json_loads(self.body)
        return body


@dataclasses.dataclass(frozen=True, slots=True)
class StartedRun:
    """A run written to the outbox: its id is known now, the run exists once it is relayed.

    ``handle()``/``handle_sync()`` act on it as ``client.get_run(run_id)`` does; before the
    relay has delivered the row they raise ``RunNotFoundError``.

    Attributes:
        run_id: the run's id (the engine is asked to use it).
        function_id: the function's composite id.
        idempotency_key: the key given, if any. When it matches a run started earlier,
            the engine keeps that run and ``run_id`` names no run.
    """

    run_id: str
    function_id: str
    idempotency_key: str | None = None
    client: Client | None = dataclasses.field(default=None, repr=False, compare=False)

    def handle(self) -> management.RunHandle:
        """An async handle on the run (``await started.handle().result()``)."""
        return self._client().get_run(self.run_id)

    def handle_sync(self) -> management.SyncRunHandle:
        """A blocking handle on the run."""
        return self._client().get_run_sync(self.run_id)

    def _client(self) -> Client:
        if self.client is None:
            raise OutboxError("this StartedRun has no client: use client.get_run(run_id)")
        return self.client


def event_row(
    events: Event | Sequence[Event],
    *,
    now_ms: int | None = None,
    seed: str | None = None,
) -> tuple[OutboxRow, list[str]]:
    """The row sending ``events``, and the ids the engine will give them.

    Args:
        events: one event or several (``stepline.Event``), checked as ``Client.send``
            checks them; events without ``ts`` get ``now_ms``.
        now_ms: the time in ms (now if None).
        seed: an ``X-Inngest-Event-Id-Seed`` value (a fresh one if None).

    Raises:
        TypeError: something other than ``stepline.Event`` objects.
        SendEventError: no events, a reserved name, or data that is not JSON.
    """
    listed = sender.listed(events)
    stamp = int(time.time() * 1000) if now_ms is None else now_ms
    wire = json_loads(sender.body(listed, stamp))
    chosen = event_ids.new_seed(stamp) if seed is None else seed
    ids = event_ids.seeded(chosen, len(listed))
    body = json_dumps({"events": wire, "seed": chosen})
    return OutboxRow(EVENT, body, stamp / 1000), ids


def start_row(
    app_id: str,
    function: Function | str,
    data: Mapping[str, Any] | None = None,
    *,
    idempotency_key: str | None = None,
    started_by: str | None = None,
    run_id: str | None = None,
    now: float | None = None,
) -> tuple[OutboxRow, StartedRun]:
    """The row starting a run of ``function``, and that run (without a client).

    Args:
        app_id: the client's app id (a bare function id gets its prefix).
        function: the function, or its id.
        data: the run's ``event.data`` (a JSON object).
        idempotency_key: as ``Client.start``'s (1-256 characters).
        started_by: as ``Client.start``'s: the principal starting the run.
        run_id: the run's id (a fresh ULID if None).
        now: the time in epoch seconds (now if None).

    Raises:
        OutboxError: data that is not a JSON object, a bad key or principal, or a durable
            endpoint's function (only its endpoint starts it).
    """
    function_id = management.function_id(app_id, function)
    if not isinstance(function, str) and function.is_endpoint:  # the engine refuses it too
        raise OutboxError(event_names.endpoint_only_problem(function_id))
    payload = {} if data is None else data
    if not isinstance(payload, Mapping):
        raise OutboxError(f"data: want a JSON object (a mapping), got {type(payload).__name__}")
    if idempotency_key is not None and (
        not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= _MAX_KEY
    ):
        raise OutboxError(f"idempotency_key: want a string of 1-{_MAX_KEY} characters")
    if started_by is not None:
        problem = (
            ownership.principal_problem(started_by)
            if isinstance(started_by, str)
            else "want a string"
        )
        if problem is not None:
            raise OutboxError(f"started_by: {problem}")
    stamp = time.time() if now is None else now
    chosen = event_ids.new_run_id(int(stamp * 1000)) if run_id is None else run_id
    body = {
        "function_id": function_id,
        "data": dict(payload),
        "run_id": chosen,
        "idempotency_key": idempotency_key,
        "started_by": started_by,
    }
    try:
        text = json_dumps(body, finite=True)
    except (TypeError, ValueError) as exc:
        raise OutboxError(f"the data is not JSON-serializable: {exc}") from None
    return OutboxRow(START, text, stamp), StartedRun(chosen, function_id, idempotency_key)
