"""The engine's reads: runs, steps, events, functions and apps as the store holds them.

A part of ``Engine`` (the REST API, the CLI and ``stepline.testing`` call these through
it); each is one read transaction, and none changes anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stepline.engine._errors import NotFoundError
from stepline.engine._model import (
    AppRecord,
    EventRecord,
    EventRunLink,
    FunctionRecord,
    Run,
    StepRecord,
    stack_of,
)
from stepline.engine._observe import attempts as _attempts
from stepline.engine._store import EventFilter, RunFilter, Store, Tx
from stepline.engine._store.attempts import StepAttempt


class Reads:
    """Read-only queries over ``store``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def get_run(self, run_id: str) -> Run:
        """A run by id, with its ``stack`` (read from its steps' index, not their rows).

        Raises:
            NotFoundError: no such run.
        """
        found = await self.store.read(lambda tx: whole_runs(tx, [run_id]), small=True)
        return _found(run_id, found)

    def get_run_blocking(self, run_id: str) -> Run:
        """``get_run`` from a thread that may block (never the event loop's)."""
        return _found(run_id, self.store.read_blocking(lambda tx: whole_runs(tx, [run_id])))

    async def list_runs(self, where: RunFilter | None = None) -> list[Run]:
        """Runs, newest first, filtered and paginated, with their attributes."""
        query = where or RunFilter()
        return await self.store.read(lambda tx: _with_attributes(tx, tx.list_runs(query)))

    async def run_steps(self, run_id: str) -> list[StepRecord]:
        """A run's step timeline, in completion order (pending steps last)."""
        await self.get_run(run_id)
        return await self.store.read(lambda tx: tx.get_steps(run_id))

    async def run_retries(self, run_id: str) -> tuple[Run, list[StepRecord], dict[str, float]]:
        """A run, its step timeline (as ``run_steps``) and when each of its steps that
        waits to be retried is due again (step id -> time; the step's last failed
        attempt's ``retry_at``). The attempts are read only if a step waits.

        Raises:
            NotFoundError: no such run.
        """

        def read(tx: Tx) -> tuple[Run, list[StepRecord], dict[str, float]] | None:
            run = tx.get_run(run_id)
            if run is None:
                return None
            steps = tx.get_steps(run_id)
            waiting = {s.step_id for s in steps if s.attempts and not s.status.ended}
            due: dict[str, float] = {}
            for attempt in tx.attempts.get_attempts(run_id) if waiting else ():
                if attempt.step_id in waiting and attempt.retry_at is not None:
                    due[attempt.step_id] = attempt.retry_at  # by attempt: the last one wins
            return run, steps, due

        found = await self.store.read(read)
        if found is None:
            raise NotFoundError(f"run {run_id!r} not found")
        return found

    async def run_attempts(self, run_id: str) -> list[StepAttempt]:
        """Every attempt of the run's steps that failed at least once, oldest first.

        With the attempt that then succeeded (``_observe.attempts.history``); attempts of
        calls that failed outside any step are under step id ``"step"``.
        """

        def read(tx: Tx) -> list[StepAttempt] | None:
            if tx.get_run(run_id) is None:
                return None
            # usually none: the steps are not needed then
            recorded = tx.attempts.get_attempts(run_id)
            steps = tx.get_steps(run_id) if recorded else []
            return [a for tries in _attempts.history(steps, recorded).values() for a in tries]

        found = await self.store.read(read)
        if found is None:
            raise NotFoundError(f"run {run_id!r} not found")
        return sorted(found, key=lambda a: (a.ended_at is None, a.ended_at or 0.0, a.attempt))

    # -- events, functions, apps ------------------------------------------------------------

    async def get_event(self, event_id: str) -> EventRecord:
        """An event by internal id (or by its own ``id``)."""
        event = await self.store.read(lambda tx: tx.get_event(event_id))
        if event is None:
            raise NotFoundError(f"event {event_id!r} not found")
        return event

    async def list_events(self, where: EventFilter | None = None) -> list[EventRecord]:
        """Events, newest first."""
        query = where or EventFilter()
        return await self.store.read(lambda tx: tx.list_events(query))

    async def event_runs(self, event_id: str) -> list[EventRunLink]:
        """The runs an event started, and why it started none for other functions."""
        event = await self.get_event(event_id)
        return await self.store.read(lambda tx: tx.event_links(event.internal_id))

    async def list_functions(self) -> list[FunctionRecord]:
        """Every registered function."""
        return await self.store.read(lambda tx: tx.apps.list_functions())

    async def list_apps(self) -> list[AppRecord]:
        """Every synced app."""
        return await self.store.read(lambda tx: tx.apps.list_apps())

    # -- large payloads (SDK-facing) -------------------------------------------------------------

    async def run_batch(self, run_id: str) -> list[dict[str, Any]]:
        """``GET /v0/runs/{id}/batch``: the run's trigger events."""
        return (await self.get_run(run_id)).events

    async def run_actions(self, run_id: str) -> dict[str, Any]:
        """``GET /v0/runs/{id}/actions``: the memos of the run's finished steps."""
        await self.get_run(run_id)  # NotFoundError for a run that is not there
        steps = await self.store.read(lambda tx: tx.get_steps(run_id))
        done = {s.step_id: s.memo for s in steps if s.status.done}
        return {k: done[k] for k in stack_of(steps) if k in done}


def _with_attributes(tx: Tx, runs: Sequence[Run | None]) -> list[Run]:
    """The runs found (None dropped), each with its attributes (one query for all)."""
    found = [run for run in runs if run is not None]
    attributes = tx.attributes.get_attributes([run.run_id for run in found]) if found else {}
    for run in found:
        run.attributes = attributes.get(run.run_id, {})
    return found


def whole_runs(tx: Tx, run_ids: Sequence[str]) -> list[Run]:
    """The runs as a reader sees them, each with its ``stack`` and attributes (those that
    do not exist are left out)."""
    runs = list(map(tx.get_run, run_ids))
    for run in runs:
        if run is not None:
            run.stack = tx.stack(run.run_id)
    return _with_attributes(tx, runs)


def _found(run_id: str, runs: list[Run]) -> Run:
    if not runs:
        raise NotFoundError(f"run {run_id!r} not found")
    return runs[0]
