"""The SQL of the dashboard's lists beyond their rows (``tx.browsing``): what a page of runs
waits on, a bounded scan of events by a predicate, and the links of replayed events.

A part of both stores' transactions (``part``). Each read is one query per page (never one
per row): the waiting steps of a page's runs come through the steps' primary key
``(run_id, step_id)``; a scan walks the events in pages of ``SCAN_BATCH`` through the same
query and index as ``list_events``; an event's ``replay_of`` is a column of its row
(migration "event replays"), so it goes with the event when retention deletes it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from stepline.engine._model import EventRecord, StepStatus
from stepline.engine._store import EventFilter, filters
from stepline.engine._store.part import Part
from stepline.engine._store.rows import parsed_or_none, read_event

#: events read per query of a scan
SCAN_BATCH = 200
#: the step states a live run waits in, as their ``waiting`` reasons' prefixes
_WAITING_STEPS = (StepStatus.SLEEPING.value, StepStatus.WAITING.value, StepStatus.INVOKING.value)
_CHUNK = 200  # bounded IN lists


@dataclasses.dataclass(frozen=True, slots=True)
class EventScan:
    """What a scan found: the matches (newest first) and how far it read.

    Attributes:
        found: matching events, at most the number asked for.
        scanned: events examined.
        last: the internal id of the last event examined (where a next scan goes on).
        complete: the scan reached the end of the filtered events.
    """

    found: list[EventRecord]
    scanned: int
    last: str | None
    complete: bool


@dataclasses.dataclass(frozen=True, slots=True)
class WaitingStep:
    """A step a live run waits in: sleeping, waiting for an event or signal, invoking."""

    run_id: str
    name: str | None
    status: str
    wait: dict[str, Any] | None


class BrowsingSql(Part):
    """``Tx.browsing``: the reads (and the replay link's write) of the dashboard's lists."""

    __slots__ = ()

    def waiting_steps(self, run_ids: Sequence[str]) -> list[WaitingStep]:
        """The sleeping, waiting and invoking steps of these runs, oldest first per run."""
        found: list[WaitingStep] = []
        unique = sorted(set(run_ids))
        marks = ",".join("?" * len(_WAITING_STEPS))
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start : start + _CHUNK]
            rows = self._x(
                "SELECT run_id, name, status, wait FROM steps "
                f"WHERE run_id IN ({','.join('?' * len(chunk))}) AND status IN ({marks}) "
                "ORDER BY run_id, started_at",
                (*chunk, *_WAITING_STEPS),
            )
            found.extend(
                WaitingStep(str(r[0]), r[1], str(r[2]), parsed_or_none(r[3])) for r in rows
            )
        return found

    def scan_events(
        self, where: EventFilter, match: Callable[[EventRecord], bool], scan: int, want: int
    ) -> EventScan:
        """Events that ``where`` selects and ``match`` accepts, newest first, from
        ``where.cursor`` on: up to ``want`` of them, examining at most ``scan`` events."""
        found: list[EventRecord] = []
        scanned, cursor = 0, where.cursor
        while scanned < scan and len(found) < want:
            batch = min(SCAN_BATCH, scan - scanned)
            # ``Tx.list_events``'s query
            sql, args = filters.events_query(dataclasses.replace(where, cursor=cursor, limit=batch))
            page = [read_event(r) for r in self._x(sql, args)]
            for event in page:
                scanned, cursor = scanned + 1, event.internal_id
                if match(event):
                    found.append(event)
                    if len(found) == want:
                        return EventScan(found, scanned, cursor, complete=False)
            if len(page) < batch:
                return EventScan(found, scanned, cursor, complete=True)
        return EventScan(found, scanned, cursor, complete=False)

    def set_replay_of(self, internal_id: str, original_id: str) -> None:
        """Mark the event ``internal_id`` as a replay of ``original_id`` (both internal ids)."""
        self._x("UPDATE events SET replay_of = ? WHERE internal_id = ?", (original_id, internal_id))

    def replays_of(self, internal_ids: Sequence[str]) -> dict[str, str]:
        """Which of these events are replays, and of which event: internal id -> original."""
        links: dict[str, str] = {}
        unique = sorted(set(internal_ids))
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start : start + _CHUNK]
            rows = self._x(
                "SELECT internal_id, replay_of FROM events "
                f"WHERE internal_id IN ({','.join('?' * len(chunk))}) AND replay_of IS NOT NULL",
                chunk,
            )
            links.update((str(r[0]), str(r[1])) for r in rows)
        return links

    def replayed_as(self, internal_id: str, limit: int) -> list[str]:
        """The newest replays of an event (their internal ids), at most ``limit``."""
        rows = self._x(
            "SELECT internal_id FROM events WHERE replay_of = ? ORDER BY internal_id DESC LIMIT ?",
            (internal_id, limit),
        )
        return [str(r[0]) for r in rows]
