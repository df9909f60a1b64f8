"""Browsing what an engine holds: functions, events, runs by time or event, a run's details.

The reads a browsing UI (the Django admin) needs beyond the client's: written once as
flows over the engine's REST API (``_runs.call``), run by ``Catalog`` on the client's
``EngineConnection``, blocking. Nothing here writes; actions go through the client and
its handles.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from stepline import _settings
from stepline._api import run_info
from stepline._api import runs as _runs
from stepline._api.runs import RunInfo, RunStatus, StepInfo
from stepline._transport import effects

if TYPE_CHECKING:
    from stepline._api.connection import EngineConnection

__all__ = ["Catalog", "EventInfo", "FunctionInfo", "ListedRun", "Page", "RunDetail", "RunQuery"]

T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class FunctionInfo:
    """A function the engine has registered, and its pause (``{"at", "crons", "reason"}``)."""

    function_id: str
    app_id: str
    name: str
    triggers: tuple[Mapping[str, Any], ...] = ()
    paused: Mapping[str, Any] | None = None

    @property
    def trigger_text(self) -> str:
        """Its triggers, as ``event a, cron b``."""
        parts = [
            f"event {t['event']}" if "event" in t else f"cron {t.get('cron', '')}"
            for t in self.triggers
        ]
        return ", ".join(parts)

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> FunctionInfo:
        """Read the engine's JSON view of a function."""
        triggers = tuple(t for t in raw.get("triggers") or () if isinstance(t, Mapping))
        paused = raw.get("paused")
        return cls(
            function_id=str(raw.get("function_id", "")),
            app_id=str(raw.get("app_id", "")),
            name=str(raw.get("name") or raw.get("function_id", "")),
            triggers=triggers,
            paused=paused if isinstance(paused, Mapping) else None,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class EventInfo:
    """An event the engine received: ``internal_id`` is its id in the engine's lists."""

    internal_id: str
    id: str
    name: str
    data: Any = None
    received_at: dt.datetime | None = None
    user: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> EventInfo:
        """Read the engine's JSON view of an event."""
        user = raw.get("user")
        return cls(
            internal_id=str(raw.get("internal_id") or raw.get("id", "")),
            id=str(raw.get("id", "")),
            name=str(raw.get("name", "")),
            data=raw.get("data"),
            received_at=run_info.parse_time(raw.get("received_at")),
            user=user if isinstance(user, Mapping) else {},
        )


@dataclasses.dataclass(frozen=True, slots=True)
class RunDetail:
    """A run with what its page shows beside ``RunInfo``: trigger events, origin, steps."""

    info: RunInfo
    events: tuple[Mapping[str, Any], ...] = ()
    origin: str | None = None
    parent_run_id: str | None = None
    replay_of: str | None = None
    replay_from_step: str | None = None
    steps: tuple[StepInfo, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class ListedRun:
    """A run of a list, and the names of its trigger events (engines that say them)."""

    info: RunInfo
    event_names: tuple[str, ...] = ()

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> ListedRun:
        """Read the engine's JSON view of a run in a list."""
        names = raw.get("event_names")
        named = tuple(str(n) for n in names) if isinstance(names, list) else ()
        return cls(RunInfo.from_wire(raw), named)


@dataclasses.dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list, and the cursor of the next (None at the end)."""

    items: tuple[T, ...]
    next_cursor: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RunQuery:
    """Filters of a runs list (every one given must hold), newest first."""

    function_id: str | None = None
    status: tuple[RunStatus, ...] = ()
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    event_id: str | None = None
    #: runs whose id starts with this (engines that know ``?run_id=``; others ignore it)
    run_id_prefix: str | None = None
    cursor: str | None = None
    limit: int = 50

    def path(self) -> str:
        """``/v1/runs?...`` for these filters."""
        query: dict[str, str] = {"limit": str(self.limit)}
        if self.function_id:
            query["function_id"] = self.function_id
        if self.status:
            query["status"] = ",".join(s.value for s in self.status)
        if self.since is not None:
            query["since"] = _iso(self.since)
        if self.until is not None:
            query["until"] = _iso(self.until)
        if self.event_id:
            query["event_id"] = self.event_id
        if self.run_id_prefix:
            query["run_id"] = self.run_id_prefix
        if self.cursor:
            query["cursor"] = self.cursor
        return "/v1/runs?" + urllib.parse.urlencode(query)


# -- flows --------------------------------------------------------------------------------


def functions_flow(settings: _settings.Settings) -> effects.Flow[list[FunctionInfo]]:
    """Every function the engine has registered, with its pause."""
    raw = yield from _runs.call(settings, "GET", "/v1/functions", what="functions")
    return [FunctionInfo.from_wire(item) for item in raw or () if isinstance(item, Mapping)]


def runs_flow(settings: _settings.Settings, query: RunQuery) -> effects.Flow[Page[ListedRun]]:
    """One page of runs."""
    page = yield from _runs.call(settings, "GET", query.path(), what="runs", whole=True)
    runs = tuple(ListedRun.from_wire(item) for item in page.get("data") or ())
    return Page(runs, (page.get("metadata") or {}).get("next_cursor"))


def run_flow(settings: _settings.Settings, run_id: str) -> effects.Flow[RunDetail]:
    """A run with its trigger events and steps."""
    path = f"/v1/runs/{_runs.quote(run_id)}"
    raw = yield from _runs.call(settings, "GET", path, what=run_id)
    steps = yield from _runs.steps_flow(settings, run_id)
    events = tuple(e for e in raw.get("events") or () if isinstance(e, Mapping))
    return RunDetail(
        info=RunInfo.from_wire(raw),
        events=events,
        origin=raw.get("origin"),
        parent_run_id=raw.get("parent_run_id"),
        replay_of=raw.get("replay_of"),
        replay_from_step=raw.get("replay_from_step"),
        steps=tuple(steps),
    )


def events_flow(
    settings: _settings.Settings,
    *,
    name: str | None = None,
    since: dt.datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> effects.Flow[Page[EventInfo]]:
    """One page of events, newest first: all, or those named ``name``."""
    query: dict[str, str] = {"limit": str(limit)}
    if name:
        query["name"] = name
    if since is not None:
        query["received_after"] = _iso(since)
    if cursor:
        query["cursor"] = cursor
    path = "/v1/events?" + urllib.parse.urlencode(query)
    page = yield from _runs.call(settings, "GET", path, what="events", whole=True)
    events = tuple(EventInfo.from_wire(item) for item in page.get("data") or ())
    return Page(events, (page.get("metadata") or {}).get("next_cursor"))


def event_flow(settings: _settings.Settings, event_id: str) -> effects.Flow[EventInfo]:
    """One event, by its id or internal id."""
    raw = yield from _runs.call(
        settings, "GET", f"/v1/events/{_runs.quote(event_id)}", what=event_id
    )
    return EventInfo.from_wire(raw)


def event_runs_flow(
    settings: _settings.Settings, event_id: str
) -> effects.Flow[tuple[list[RunInfo], list[Mapping[str, Any]]]]:
    """The runs an event started, and the functions it did not start (with the reason)."""
    path = f"/v1/events/{_runs.quote(event_id)}/runs"
    page = yield from _runs.call(settings, "GET", path, what=event_id, whole=True)
    runs = [RunInfo.from_wire(item) for item in page.get("data") or ()]
    skipped = (page.get("metadata") or {}).get("skipped") or []
    return runs, [s for s in skipped if isinstance(s, Mapping)]


# -- the blocking face ------------------------------------------------------------------------


class Catalog:
    """The reads above over a client's connection, blocking (for Django's sync views).

    Args:
        connection: the connection to the engine to read (embedded or remote).
    """

    def __init__(self, connection: EngineConnection) -> None:
        self.connection = connection

    def _run(self, flow: effects.Flow[T]) -> T:
        return self.connection.run_sync(flow)

    def functions(self) -> list[FunctionInfo]:
        """Every registered function."""
        return self._run(functions_flow(self.connection.settings))

    def runs(self, query: RunQuery) -> Page[ListedRun]:
        """One page of runs matching ``query``."""
        return self._run(runs_flow(self.connection.settings, query))

    def run(self, run_id: str) -> RunDetail:
        """A run with its trigger events and steps."""
        return self._run(run_flow(self.connection.settings, run_id))

    def events(
        self,
        *,
        name: str | None = None,
        since: dt.datetime | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page[EventInfo]:
        """One page of events."""
        settings = self.connection.settings
        return self._run(events_flow(settings, name=name, since=since, cursor=cursor, limit=limit))

    def event(self, event_id: str) -> EventInfo:
        """One event."""
        return self._run(event_flow(self.connection.settings, event_id))

    def event_runs(self, event_id: str) -> tuple[list[RunInfo], list[Mapping[str, Any]]]:
        """The runs an event started, and the functions it skipped."""
        return self._run(event_runs_flow(self.connection.settings, event_id))


def _iso(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
