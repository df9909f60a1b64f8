"""Persisting an inline run's steps as they complete, under the lease on its call.

Each completed step is posted to the engine before the handler goes on, so a step's
effects are never visible before the steps it follows are recorded. Meanwhile a
heartbeat keeps the lease alive through long steps. If the engine says the lease is
lost (it lapsed and the call went back to the queue) or cannot be reached, the handler
stops at its next step boundary (``HandedBack``): the engine finishes the run from what
was recorded, and the request answers 202.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from stepline._api import runs as _runs
from stepline._execution.call import Interrupt
from stepline._protocol.execution import Op
from stepline._transport import effects as _effects

if TYPE_CHECKING:
    from stepline._client import Client

__all__ = ["Checkpoints", "HandedBack", "Lease", "Performers"]

logger = logging.getLogger("stepline.endpoints")

#: Seconds between tries of a checkpoint the engine did not answer (then hand back).
_BACKOFF = (0.05, 0.2, 0.5)


class HandedBack(Interrupt):
    """The request stops executing: the engine goes on with the run (answer 202)."""


class Lease:
    """The lease on a run's call that the request holds (from the inline start)."""

    __slots__ = ("job_id", "owner", "run_id", "seconds")

    def __init__(self, run_id: str, job_id: str, owner: str, seconds: float) -> None:
        self.run_id = run_id
        self.job_id = job_id
        self.owner = owner
        self.seconds = seconds


class Performers(Protocol):
    """Who performs the engine requests (the endpoint: in process when it can)."""

    def perform_sync(self, effect: object) -> Any:
        """Perform ``effect`` (blocking)."""
        ...

    async def perform_async(self, effect: object) -> Any:
        """Perform ``effect``."""
        ...


class Checkpoints:
    """The ``Checkpointer`` of one inline execution (blocking and async faces)."""

    #: a failed function's last steps are flushed by ``execute_*`` before its answer
    persists_on_failure = True

    def __init__(self, client: Client, lease: Lease, performers: Performers) -> None:
        self.client = client
        self.lease = lease
        self._performers = performers
        #: set once the engine refused the lease or could not be reached
        self.lost: str | None = None

    # -- the flow, once ---------------------------------------------------------------

    def _flow(self, ops: list[Op]) -> _effects.Flow[None]:
        if self.lost is not None:
            raise HandedBack(self.lost)
        lease = self.lease
        body = {
            "job_id": lease.job_id,
            "owner": lease.owner,
            "steps": [op.to_wire() for op in ops],
        }
        path = f"/v1/runs/{lease.run_id}/inline/checkpoint"
        for pause in (*_BACKOFF, None):
            try:
                yield from _runs.call(self.client.settings, "POST", path, body, what=lease.run_id)
                return
            except _runs.RunNotStartedError as exc:  # 409: the lease is lost
                self.lost = exc.message
                break
            except _runs.ManagementError as exc:
                if exc.http_status not in (0, 502, 503, 504) or pause is None:
                    self.lost = exc.message
                    break
                yield _effects.Sleep(pause)
        logger.warning("run %s: handed back to the engine: %s", lease.run_id, self.lost)
        raise HandedBack(self.lost or "")

    # -- Checkpointer -------------------------------------------------------------------

    def flush_sync(self, ops: list[Op]) -> None:
        """Persist ``ops`` before the handler goes on (blocking)."""
        _effects.drive_sync(self._flow(ops), self._performers.perform_sync)

    async def flush_async(self, ops: list[Op]) -> None:
        """Persist ``ops`` before the handler goes on."""
        await _effects.drive_async(self._flow(ops), self._performers.perform_async)

    # -- heartbeats ---------------------------------------------------------------------

    @contextlib.contextmanager
    def kept_sync(self) -> Iterator[None]:
        """Extend the lease every third of its length while the block runs (a thread)."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.lease.seconds / 3) and self.lost is None:
                with contextlib.suppress(HandedBack):
                    self.flush_sync([])

        thread = threading.Thread(target=beat, name="stepline-lease", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()

    @contextlib.asynccontextmanager
    async def kept_async(self) -> AsyncIterator[None]:
        """Async twin of ``kept_sync``: a timer on the running loop, and a task from the
        first heartbeat on (most requests end before one is due, and a timer costs less
        to make and cancel than a task)."""
        loop = asyncio.get_running_loop()
        every = self.lease.seconds / 3
        beating: list[asyncio.Task[None]] = []

        async def beat() -> None:
            while self.lost is None:
                with contextlib.suppress(HandedBack):
                    await self.flush_async([])
                await asyncio.sleep(every)

        def start() -> None:
            beating.append(loop.create_task(beat(), name="stepline-lease"))

        timer = loop.call_later(every, start)
        try:
            yield
        finally:
            timer.cancel()
            for task in beating:
                task.cancel()
