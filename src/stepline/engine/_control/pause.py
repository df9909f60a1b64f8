"""Pausing a function: its calls wait in the queue until it is resumed.

A paused function's runs are still created (events are not lost), but none of its calls
runs: each is parked on ``paused:<function_id>`` when it is leased, by the worker's lease
(``hold``), by the fast paths that lease a call without a queue turn (``let``: a new
run's first call, a run's next step, a durable endpoint's inline call), so a run that is
mid-way stops before its next step. Timers (sleeps, waits, retries) keep running; a call
they make due parks in turn. Cron ticks start runs that queue, or none, per the pause's
``crons``. Resuming unparks the function's calls, oldest first: they come due at the
time they first did, so the lease takes them in that order, with concurrency and
throttle admission applied as for any call.

The paused set lives in the database (``function_controls``), so every node sees it;
see ``_store.controls`` for why a resume never misses a call parked concurrently.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from stepline.engine._apps import registry
from stepline.engine._errors import NotFoundError
from stepline.engine._model import EventRecord, EventRunLink, Job, JobKind
from stepline.engine._runs import starts
from stepline.engine._store import Store, Tx
from stepline.engine._store.controls import CronPolicy, FunctionPause

if TYPE_CHECKING:
    from stepline.engine._apps.sync import Registered
    from stepline.engine._clock import Clock

__all__ = ["CronPolicy", "FunctionPause", "PauseControl", "hold", "key", "let", "start_cron"]

#: a parked call is looked at again this often in any case (a resume unparks it at once)
RECHECK = 300.0
#: the calls that run a step: an SDK call, and a step the engine runs (AI gateway)
_CALLS = (JobKind.EXECUTE, JobKind.GATEWAY)
_ALL = 2**31 - 1


def key(function_id: str) -> str:
    """The parking key of a paused function's calls."""
    return f"paused:{function_id}"


def hold(tx: Tx, jobs: Sequence[Job], now: float) -> tuple[list[Job], int]:
    """Park the leased calls of paused functions; returns the others and how many parked.

    One read of the paused set per transaction; the runs of the leased calls are read
    only when some function is paused.
    """
    if not jobs:
        return list(jobs), 0
    paused = tx.controls.paused_functions()
    if not paused:
        return list(jobs), 0
    kept: list[Job] = []
    for job in jobs:
        function_id = _function_of(tx, job)
        if function_id is not None and function_id in paused:
            tx.queue.park_job(job.job_id, key(function_id), now + RECHECK)
            tx.set_waiting(str(job.run_id), {"reason": "paused", "since": now})
        else:
            kept.append(job)
    return kept, len(jobs) - len(kept)


def let(tx: Tx, job: Job | None, now: float) -> Job | None:
    """``job`` (a call leased without a queue turn), or None if it was parked instead."""
    if job is None:
        return None
    kept, _held = hold(tx, [job], now)
    return kept[0] if kept else None


def start_cron(tx: Tx, fn: registry.FunctionSpec, event: EventRecord, now: float) -> None:
    """Start a cron tick's run, unless its function is paused with ``crons="skip"``."""
    pause = tx.controls.paused_functions().get(fn.function_id)
    if pause is not None and pause.crons == "skip":
        tx.link_event(EventRunLink(event.internal_id, fn.function_id, None, "paused", now))
        return
    starts.start_run(tx, fn, [event], now, origin="cron")


def resume(tx: Tx, function_id: str) -> bool:
    """Unpark a paused function's calls (oldest first); False if it was not paused."""
    if not tx.controls.resume_function(function_id):
        return False
    for run_id in tx.queue.unpark_jobs(key(function_id), _ALL):
        tx.set_waiting(run_id, None)
    return True


def _function_of(tx: Tx, job: Job) -> str | None:
    if job.kind not in _CALLS or job.run_id is None:
        return None
    run = tx.get_run(job.run_id)
    return None if run is None else run.function_id


class PauseControl:
    """A part of ``Engine``: pause and resume functions, and what is paused.

    Args:
        store: the engine's store.
        clock: the engine's clock.
        apps: the registry, in step with app changes.
        reload: rebuilds the registry from the store (another node may have synced a
            function this one has not seen yet).
        committed: told of a resume's commit (whether it unparked calls).
    """

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        apps: Registered,
        reload: Callable[[], Awaitable[None]],
        committed: Callable[[bool], None],
    ) -> None:
        self.store = store
        self.clock = clock
        self._apps = apps
        self._reload = reload
        self._committed = committed

    async def pause(
        self, function_id: str, *, crons: CronPolicy = "queue", reason: str | None = None
    ) -> FunctionPause:
        """Pause a function: its runs are created but none of its calls runs until resumed.

        Pausing a paused function changes its ``crons`` and ``reason`` (not since when).

        Raises:
            NotFoundError: the function is not registered.
            ValueError: ``crons`` is neither "queue" nor "skip".
        """
        if crons not in ("queue", "skip"):
            raise ValueError(f'crons: want "queue" or "skip", got {crons!r}')
        await self._known(function_id)
        now = self.clock.now()

        def work(tx: Tx) -> FunctionPause:
            earlier = tx.controls.paused_functions().get(function_id)
            at = earlier.paused_at if earlier is not None else now
            pause = FunctionPause(function_id, at, crons, reason)
            tx.controls.pause_function(pause)
            return pause

        return await self.store.atomic(work)

    async def resume(self, function_id: str) -> bool:
        """Resume a paused function: its parked calls run, oldest first.

        Returns:
            Whether the function was paused.

        Raises:
            NotFoundError: the function is not registered.
        """
        await self._known(function_id)
        resumed = await self.store.atomic(lambda tx: resume(tx, function_id))
        self._committed(resumed)
        return resumed

    async def paused(self) -> dict[str, FunctionPause]:
        """The paused functions, by id."""
        return await self.store.read(lambda tx: tx.controls.paused_functions())

    async def _known(self, function_id: str) -> None:
        if (await self._apps.settled()).get(function_id) is None:
            await self._reload()  # another node may have synced it
            if self._apps.current.get(function_id) is None:
                raise NotFoundError(f"function {function_id!r} is not registered")
