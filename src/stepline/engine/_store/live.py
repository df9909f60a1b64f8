"""The SQL of what is happening now (``tx.live``): the event stream, the queue's counts by
function and concurrency key, and the queued cron ticks.

A part of both stores' transactions (``part``). Every read is one aggregate query over an
index, never a scan of ``runs``: the stream follows ``events_received`` from a position
(``received_at``, ``internal_id``); the runs an event started come through
``event_runs_event`` and the runs' primary key; live runs are counted through
``runs_status`` (only Queued and Running entries); calls in flight are the leased jobs,
whose ``available_at`` is their lease's expiry (``jobs_due``, a range of one lease);
parked calls are the rows of the partial ``jobs_parked``; slots are held only while a
call runs; cron ticks are a range of the jobs' primary key (``cron:...``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from stepline._protocol.event_names import ENGINE_PREFIX, STEPLINE_PREFIX
from stepline._status import RunStatus
from stepline.engine._model import EventRecord, JobKind
from stepline.engine._store.part import Part
from stepline.engine._store.rows import EVENT_COLUMNS, parsed_or_none, read_event

_CHUNK = 200  # bounded IN lists
#: names the engine and Stepline give their own events (``LIKE`` patterns)
INTERNAL_PATTERNS = (f"{ENGINE_PREFIX}%", f"{STEPLINE_PREFIX}%")
#: the clause that leaves the engine's own events out
EXTERNAL_ONLY = " AND ".join("name NOT LIKE ?" for _ in INTERNAL_PATTERNS)
#: a run held back by its function's throttle (``pacing.plan_start``'s compact JSON)
_THROTTLED = '{"reason":"throttled"%'
#: every cron job's id starts so (``starts.schedule_cron``); ";" sorts right after ":"
_CRON_FROM, _CRON_TO = "cron:", "cron;"


@dataclasses.dataclass(frozen=True, slots=True)
class LinkedRun:
    """A run an event started: enough to name and link it."""

    run_id: str
    function_id: str
    status: str


@dataclasses.dataclass(frozen=True, slots=True)
class FunctionLoad:
    """One function's live runs and calls.

    Attributes:
        queued: runs not started yet (their first call waits: for a worker, a limit, a time).
        running: runs started and not ended (sleeping and waiting ones too).
        throttled: queued runs whose first call waits for the function's throttle.
        in_flight: calls leased to a worker now.
    """

    queued: int = 0
    running: int = 0
    throttled: int = 0
    in_flight: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class QueuedTick:
    """A cron tick queued as a job: the schedule's next (or overdue) tick."""

    function_id: str
    cron: str
    tick: float
    fire_at: float
    leased: bool


class LiveSql(Part):
    """``Tx.live``: the reads behind the dashboard's stream, queue and crons pages."""

    __slots__ = ()

    def stream_events(
        self, after: tuple[float, str], *, internal: bool, name: str | None, limit: int
    ) -> list[EventRecord]:
        """Events received after the position ``after`` (``received_at``, ``internal_id``),
        oldest first; without the engine's own when ``internal`` is False."""
        at, last = after
        sql = (
            f"SELECT {EVENT_COLUMNS} FROM events "
            "WHERE (received_at > ? OR (received_at = ? AND internal_id > ?))"
        )
        args: list[object] = [at, at, last]
        if not internal:
            sql += f" AND {EXTERNAL_ONLY}"
            args.extend(INTERNAL_PATTERNS)
        if name is not None:
            sql += " AND name = ?"
            args.append(name)
        rows = self._x(f"{sql} ORDER BY received_at, internal_id LIMIT ?", (*args, limit))
        return [read_event(r) for r in rows]

    def started_runs(self, event_ids: Sequence[str], per_event: int) -> dict[str, list[LinkedRun]]:
        """The runs each of these events started (internal ids), oldest first, at most
        ``per_event`` each."""
        found: dict[str, list[LinkedRun]] = {}
        unique = sorted(set(event_ids))
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start : start + _CHUNK]
            rows = self._x(
                "SELECT l.event_id, r.run_id, r.function_id, r.status FROM event_runs l "
                "JOIN runs r ON r.run_id = l.run_id "
                f"WHERE l.event_id IN ({','.join('?' * len(chunk))}) AND l.reason IS NULL "
                "ORDER BY l.at, r.run_id",
                chunk,
            )
            for event_id, run_id, function_id, status in rows:
                runs = found.setdefault(str(event_id), [])
                if len(runs) < per_event:
                    runs.append(LinkedRun(str(run_id), str(function_id), str(status)))
        return found

    def function_load(self, now: float, lease_seconds: float) -> dict[str, FunctionLoad]:
        """Live runs by function and status, the throttled among them, calls in flight."""
        counts: dict[str, dict[str, int]] = {}
        live = (RunStatus.QUEUED.value, RunStatus.RUNNING.value)
        for function_id, status, n in self._x(
            "SELECT function_id, status, COUNT(*) FROM runs WHERE status IN (?, ?) "
            "GROUP BY function_id, status",
            live,
        ):
            field = "queued" if status == RunStatus.QUEUED.value else "running"
            counts.setdefault(str(function_id), {})[field] = int(n)
        for function_id, n in self._x(
            "SELECT function_id, COUNT(*) FROM runs WHERE status = ? AND waiting LIKE ? "
            "GROUP BY function_id",
            (RunStatus.QUEUED.value, _THROTTLED),
        ):
            counts.setdefault(str(function_id), {})["throttled"] = int(n)
        for function_id, n in self._x(
            "SELECT r.function_id, COUNT(*) FROM jobs j JOIN runs r ON r.run_id = j.run_id "
            "WHERE j.available_at > ? AND j.available_at <= ? AND j.lease_owner IS NOT NULL "
            "AND j.kind = ? GROUP BY r.function_id",
            (now, now + lease_seconds + 1.0, JobKind.EXECUTE.value),
        ):
            counts.setdefault(str(function_id), {})["in_flight"] = int(n)
        return {fid: FunctionLoad(**fields) for fid, fields in counts.items()}

    def held_slots(self, now: float) -> dict[str, int]:
        """Concurrency slots held now, by key (one per call in flight under the key)."""
        rows = self._x("SELECT key, COUNT(*) FROM slots WHERE expires_at > ? GROUP BY key", (now,))
        return {str(key): int(n) for key, n in rows}

    def parked_calls(self) -> dict[str, int]:
        """Calls parked on a full concurrency key, by key."""
        rows = self._x(
            "SELECT parked_on, COUNT(*) FROM jobs WHERE parked_on IS NOT NULL GROUP BY parked_on"
        )
        return {str(key): int(n) for key, n in rows}

    def cron_ticks(self) -> list[QueuedTick]:
        """Every queued cron tick, by job id (function, schedule, tick)."""
        rows = self._x(
            "SELECT available_at, payload, lease_owner FROM jobs "
            "WHERE job_id >= ? AND job_id < ? ORDER BY job_id",
            (_CRON_FROM, _CRON_TO),
        )
        ticks: list[QueuedTick] = []
        for available_at, payload, owner in rows:
            body = parsed_or_none(payload) or {}
            function_id, cron, tick = body.get("function_id"), body.get("cron"), body.get("tick")
            if isinstance(function_id, str) and isinstance(cron, str):
                when = float(tick) if isinstance(tick, int | float) else float(available_at)
                ticks.append(QueuedTick(function_id, cron, when, float(available_at), bool(owner)))
        return ticks
