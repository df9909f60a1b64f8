"""Bulk cancel and replay over a filter: the flows, the filter and the handles.

A bulk action runs in the engine, in batches: ``client.bulk_cancel(function=...,
status=[...])`` answers at once with a ``BulkHandle``; ``await handle.wait()`` follows its
progress until it ends.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

from typing_extensions import Unpack

from stepline import _settings
from stepline._api import management, run_info
from stepline._api import runs as _runs
from stepline._api.connection import EngineConnection
from stepline._api.runs import RunStatus
from stepline._transport import effects

if TYPE_CHECKING:
    from stepline._definition.function import Function

__all__ = ["BulkFilterArgs", "BulkHandle", "BulkInfo", "SyncBulkHandle", "filter_body"]

Time = dt.datetime | float
#: seconds between two looks at an action's progress while waiting for it
POLL_SECONDS = 0.5


@dataclasses.dataclass(frozen=True, slots=True)
class BulkInfo:
    """A bulk action's progress.

    Attributes:
        action: ``cancel`` or ``replay``.
        status: ``queued``, ``running``, ``completed``, ``cancelled`` or ``failed``.
        filter: the filter, as the engine stored it (``until`` capped at the creation).
        matched: runs the filter matched so far; ``applied`` were cancelled or replayed,
            ``skipped`` were not (already ended; for a replay, still live).
    """

    bulk_id: str
    action: str
    status: str
    filter: Mapping[str, Any]
    matched: int = 0
    applied: int = 0
    skipped: int = 0
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    idempotency_key: str | None = None
    error: str | None = None

    @property
    def done(self) -> bool:
        """Whether the action has ended (completed, cancelled or failed)."""
        return self.status not in ("queued", "running")

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> BulkInfo:
        """Read the engine's JSON view of an action."""
        return cls(
            bulk_id=str(raw["bulk_id"]),
            action=str(raw.get("action")),
            status=str(raw.get("status")),
            filter=dict(raw.get("filter") or {}),
            matched=int(raw.get("matched") or 0),
            applied=int(raw.get("applied") or 0),
            skipped=int(raw.get("skipped") or 0),
            created_at=run_info.parse_time(raw.get("created_at")),
            updated_at=run_info.parse_time(raw.get("updated_at")),
            idempotency_key=raw.get("idempotency_key"),
            error=raw.get("error"),
        )


# -- flows --------------------------------------------------------------------------------


def start_flow(
    settings: _settings.Settings, action: str, where: Mapping[str, Any], key: str | None
) -> effects.Flow[tuple[BulkInfo, bool]]:
    """``POST /v1/bulk/{action}``: ``(info, created)``; False: the key's earlier action."""
    body: dict[str, Any] = {"filter": dict(where)}
    if key is not None:
        body["idempotency_key"] = key
    raw = yield from _runs.call(settings, "POST", f"/v1/bulk/{action}", body, what=action)
    return BulkInfo.from_wire(raw), bool(raw.get("created", True))


def get_flow(settings: _settings.Settings, bulk_id: str) -> effects.Flow[BulkInfo]:
    """An action's progress now."""
    raw = yield from _runs.call(settings, "GET", f"/v1/bulk/{bulk_id}", what=bulk_id)
    return BulkInfo.from_wire(raw)


def cancel_flow(settings: _settings.Settings, bulk_id: str) -> effects.Flow[BulkInfo]:
    """Stop an action before its next batch; an ended one keeps its status."""
    raw = yield from _runs.call(settings, "POST", f"/v1/bulk/{bulk_id}/cancel", {}, what=bulk_id)
    return BulkInfo.from_wire(raw)


def wait_flow(
    settings: _settings.Settings,
    bulk_id: str,
    timeout: float | None,
    clock: Callable[[], float],
    on_progress: Callable[[BulkInfo], object] | None = None,
) -> effects.Flow[BulkInfo]:
    """Look at an action every ``POLL_SECONDS`` until it ends; tell ``on_progress`` each time."""
    deadline = None if timeout is None else clock() + timeout
    while True:
        info = yield from get_flow(settings, bulk_id)
        if on_progress is not None:
            on_progress(info)
        if info.done:
            return info
        if deadline is not None and clock() >= deadline:
            raise _runs.RunTimeoutError(
                f"bulk action {bulk_id} still {info.status} after {timeout:g}s "
                f"({info.applied} of {info.matched} matched runs done)"
            )
        yield effects.Sleep(POLL_SECONDS)


class BulkFilterArgs(TypedDict, total=False):
    """Which runs a bulk action acts on, as keywords; every criterion given must hold.

    Attributes:
        function: the function (or its id).
        status: one of these statuses.
        since: created at or after (a datetime or epoch seconds).
        until: created at or before.
        event: the trigger event's name.
        if_exp: a CEL expression over the trigger event (``event.data.plan == "free"``).
        attributes: every one of these run attributes (name -> value).
    """

    function: Function | str | None
    status: Sequence[RunStatus | str]
    since: Time | None
    until: Time | None
    event: str | None
    if_exp: str | None
    attributes: Mapping[str, str] | None


def filter_body(app_id: str, **where: Unpack[BulkFilterArgs]) -> dict[str, Any]:
    """The REST filter of a bulk action (pure)."""
    function = where.get("function")
    found: dict[str, Any] = {
        "function_id": management.function_id(app_id, function) if function else None,
        "status": [RunStatus(s).value for s in where.get("status", ())] or None,
        "since": _wire_time(where.get("since")),
        "until": _wire_time(where.get("until")),
        "event": where.get("event"),
        "if": where.get("if_exp"),
        "attributes": dict(where.get("attributes") or {}) or None,
    }
    return {k: v for k, v in found.items() if v is not None}


# -- handles --------------------------------------------------------------------------------


class BulkHandle:
    """A bulk action, seen from async code (``await handle.wait()``).

    Attributes:
        bulk_id: the action's id.
        created: False when an ``idempotency_key`` matched an earlier action.
    """

    def __init__(self, connection: EngineConnection, bulk_id: str, *, created: bool = True) -> None:
        self.connection = connection
        self.bulk_id = bulk_id
        self.created = created

    def __repr__(self) -> str:
        return f"<stepline.BulkHandle {self.bulk_id}>"

    async def describe(self) -> BulkInfo:
        """The action's progress now."""
        return await self.connection.run_async(get_flow(self.connection.settings, self.bulk_id))

    async def wait(
        self,
        timeout: float | None = None,
        *,
        on_progress: Callable[[BulkInfo], object] | None = None,
    ) -> BulkInfo:
        """Wait until the action ends and return its last progress.

        Args:
            timeout: give up after this many seconds (``RunTimeoutError``).
            on_progress: called with each look at the progress (a progress bar).
        """
        settings = self.connection.settings
        flow = wait_flow(settings, self.bulk_id, timeout, time.monotonic, on_progress)
        return await self.connection.run_async(flow)

    async def cancel(self) -> BulkInfo:
        """Stop the action before its next batch; returns its progress then."""
        return await self.connection.run_async(cancel_flow(self.connection.settings, self.bulk_id))


class SyncBulkHandle:
    """Blocking twin of ``BulkHandle``."""

    def __init__(self, connection: EngineConnection, bulk_id: str, *, created: bool = True) -> None:
        self.connection = connection
        self.bulk_id = bulk_id
        self.created = created

    def __repr__(self) -> str:
        return f"<stepline.SyncBulkHandle {self.bulk_id}>"

    def describe(self) -> BulkInfo:
        """The action's progress now."""
        return self.connection.run_sync(get_flow(self.connection.settings, self.bulk_id))

    def wait(
        self,
        timeout: float | None = None,
        *,
        on_progress: Callable[[BulkInfo], object] | None = None,
    ) -> BulkInfo:
        """Blocking twin of ``BulkHandle.wait``."""
        settings = self.connection.settings
        return self.connection.run_sync(
            wait_flow(settings, self.bulk_id, timeout, time.monotonic, on_progress)
        )

    def cancel(self) -> BulkInfo:
        """Stop the action before its next batch; returns its progress then."""
        return self.connection.run_sync(cancel_flow(self.connection.settings, self.bulk_id))


def _wire_time(value: Time | None) -> str | float | None:
    if value is None or isinstance(value, float | int):
        return value
    if value.tzinfo is None:
        raise ValueError("since/until: give a timezone-aware datetime (or epoch seconds)")
    return value.isoformat()
