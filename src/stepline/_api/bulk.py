"""The client's methods for bulk cancel and replay over a filter, and replaying a run
from a step (async, and ``*_sync`` twins).

A bulk action runs in the engine, in batches: ``client.bulk_cancel(function=...,
status=[...])`` answers at once with a handle; ``await handle.wait()`` follows its
progress until it ends. ``client.replay(run_id, from_step="charge")`` starts a new run
that reuses the original's steps recorded before ``charge`` and runs from there.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar, cast

from typing_extensions import Unpack

from stepline import _settings
from stepline._api import management, run_info
from stepline._api import runs as _runs
from stepline._api.runs import RunStatus
from stepline._transport import effects, performers

if TYPE_CHECKING:
    from stepline._definition.function import Function

__all__ = ["BulkHandle", "BulkInfo", "BulkMixin", "SyncBulkHandle"]

T = TypeVar("T")
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


def replay_flow(
    settings: _settings.Settings, run_id: str, from_step: str | None
) -> effects.Flow[str]:
    """``POST /v1/runs/{id}/replay``; the new run's id."""
    body = {} if from_step is None else {"from_step": from_step}
    raw = yield from _runs.call(
        settings, "POST", f"/v1/runs/{_runs._quote(run_id)}/replay", body, what=run_id
    )
    return str(raw["run_id"])


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

    def __init__(self, client: BulkMixin, bulk_id: str, *, created: bool = True) -> None:
        self._client = client
        self.bulk_id = bulk_id
        self.created = created

    def __repr__(self) -> str:
        return f"<stepline.BulkHandle {self.bulk_id}>"

    async def _run(self, flow: effects.Flow[T]) -> T:
        return await effects.drive_async(flow, self._client._async_transport.perform)

    async def describe(self) -> BulkInfo:
        """The action's progress now."""
        return await self._run(get_flow(self._client.settings, self.bulk_id))

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
        settings = self._client.settings
        flow = wait_flow(settings, self.bulk_id, timeout, time.monotonic, on_progress)
        return await self._run(flow)

    async def cancel(self) -> BulkInfo:
        """Stop the action before its next batch; returns its progress then."""
        return await self._run(cancel_flow(self._client.settings, self.bulk_id))


class SyncBulkHandle:
    """Blocking twin of ``BulkHandle``."""

    def __init__(self, client: BulkMixin, bulk_id: str, *, created: bool = True) -> None:
        self._client = client
        self.bulk_id = bulk_id
        self.created = created

    def __repr__(self) -> str:
        return f"<stepline.SyncBulkHandle {self.bulk_id}>"

    def _run(self, flow: effects.Flow[T]) -> T:
        return effects.drive_sync(flow, self._client._sync_transport.perform)

    def describe(self) -> BulkInfo:
        """The action's progress now."""
        return self._run(get_flow(self._client.settings, self.bulk_id))

    def wait(
        self,
        timeout: float | None = None,
        *,
        on_progress: Callable[[BulkInfo], object] | None = None,
    ) -> BulkInfo:
        """Blocking twin of ``BulkHandle.wait``."""
        settings = self._client.settings
        return self._run(wait_flow(settings, self.bulk_id, timeout, time.monotonic, on_progress))

    def cancel(self) -> BulkInfo:
        """Stop the action before its next batch; returns its progress then."""
        return self._run(cancel_flow(self._client.settings, self.bulk_id))


class BulkMixin:
    """Mixed into ``Client``: bulk cancel and replay, and replaying a run from a step."""

    settings: _settings.Settings
    _sync_transport: performers.SyncTransport
    _async_transport: performers.AsyncTransport

    def _bulk(
        self, action: str, key: str | None, where: BulkFilterArgs
    ) -> effects.Flow[tuple[BulkInfo, bool]]:
        return start_flow(self.settings, action, filter_body(self.settings.app_id, **where), key)

    async def bulk_cancel(
        self, *, idempotency_key: str | None = None, **where: Unpack[BulkFilterArgs]
    ) -> BulkHandle:
        """Cancel every run the filter matches, in the background; returns its handle.

        Every criterion given (``BulkFilterArgs``) must hold: the function, one of the
        statuses, created in ``[since, until]`` (datetimes or epoch seconds), the trigger
        event's name, the CEL expression ``if_exp`` over the trigger event
        (``event.data.plan == "free"``) and the run attributes. Only runs created before
        the action was asked are matched. Give at least one.

        Args:
            idempotency_key: a second call with the same key returns the first action
                (``handle.created`` False) instead of starting another.
            **where: the filter (``BulkFilterArgs``).

        Raises:
            ManagementError: an invalid filter (the message says why, e.g. where the
                expression failed to parse), or the engine is unreachable.
        """
        flow = self._bulk("cancel", idempotency_key, where)
        info, created = await effects.drive_async(flow, self._async_transport.perform)
        return BulkHandle(self, info.bulk_id, created=created)

    def bulk_cancel_sync(
        self, *, idempotency_key: str | None = None, **where: Unpack[BulkFilterArgs]
    ) -> SyncBulkHandle:
        """Blocking twin of ``bulk_cancel``."""
        flow = self._bulk("cancel", idempotency_key, where)
        info, created = effects.drive_sync(flow, self._sync_transport.perform)
        return SyncBulkHandle(self, info.bulk_id, created=created)

    async def bulk_replay(
        self, *, idempotency_key: str | None = None, **where: Unpack[BulkFilterArgs]
    ) -> BulkHandle:
        """Replay every ended run the filter matches (a new linked run each), in the
        background; the filter as for ``bulk_cancel``. Live runs matched are skipped."""
        flow = self._bulk("replay", idempotency_key, where)
        info, created = await effects.drive_async(flow, self._async_transport.perform)
        return BulkHandle(self, info.bulk_id, created=created)

    def bulk_replay_sync(
        self, *, idempotency_key: str | None = None, **where: Unpack[BulkFilterArgs]
    ) -> SyncBulkHandle:
        """Blocking twin of ``bulk_replay``."""
        flow = self._bulk("replay", idempotency_key, where)
        info, created = effects.drive_sync(flow, self._sync_transport.perform)
        return SyncBulkHandle(self, info.bulk_id, created=created)

    def get_bulk(self, bulk_id: str) -> BulkHandle:
        """A handle on an existing bulk action (no request until you use it)."""
        return BulkHandle(self, bulk_id)

    def get_bulk_sync(self, bulk_id: str) -> SyncBulkHandle:
        """A blocking handle on an existing bulk action."""
        return SyncBulkHandle(self, bulk_id)

    async def replay(self, run_id: str, *, from_step: str | None = None) -> management.RunHandle:
        """Start a new run of an ended run's function with its trigger events.

        With ``from_step`` (a step's id as you wrote it, ``"charge"``, or its hashed id),
        the new run reuses the original's results of the steps that completed before
        that one and runs from it on. The original is left as it was; the new run's
        REST view names it (``replay_of``).

        Raises:
            RunNotFoundError: no such run, or no such step in it.
            RunNotStartedError: the run has not ended yet (409).
        """
        flow = replay_flow(self.settings, run_id, from_step)
        new = await effects.drive_async(flow, self._async_transport.perform)
        return management.RunHandle(self._runs(), new)

    def replay_sync(self, run_id: str, *, from_step: str | None = None) -> management.SyncRunHandle:
        """Blocking twin of ``replay``."""
        new = effects.drive_sync(
            replay_flow(self.settings, run_id, from_step), self._sync_transport.perform
        )
        return management.SyncRunHandle(self._runs(), new)

    def _runs(self) -> management.RunsMixin:
        return cast(management.RunsMixin, self)  # ``Client`` is both


def _wire_time(value: Time | None) -> str | float | None:
    if value is None or isinstance(value, float | int):
        return value
    if value.tzinfo is None:
        raise ValueError("since/until: give a timezone-aware datetime (or epoch seconds)")
    return value.isoformat()
