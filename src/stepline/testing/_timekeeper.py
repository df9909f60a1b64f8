"""``Timekeeper``: moves a test engine's virtual time, only when the engine waits for it.

Every timer of the engine (sleeps, wait and invoke timeouts, debounce and batch windows,
throttle and concurrency re-checks, retry backoff, cron ticks) is a job with a due time,
so "what happens next" is the earliest job. Time moves to it only when the engine is
idle: the worker parked on the clock, nothing in flight, nothing due. A job is never
skipped over, and a call never sees its lease expire under it.

Every coroutine here runs on the engine's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import json

from stepline.engine import Engine, NotFoundError, RunStatus
from stepline.engine._model import Run
from stepline.testing._clock import VirtualClock

#: How often the idle check runs when nothing signals it (a call in flight for a while).
_POLL = 0.02


class RunWaitingError(RuntimeError):
    """A run cannot end without time moving (or an event), and the test env will not move it.

    Raised by ``TestRun.result`` when auto-skip is off and the run waits on a timer, or
    when nothing at all is scheduled that could let it end.

    Attributes:
        run_id: the run.
    """

    def __init__(self, message: str, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id


class Timekeeper:
    """Settles the engine and moves its clock.

    Args:
        engine: the running engine.
        clock: its virtual clock.
    """

    def __init__(self, engine: Engine, clock: VirtualClock) -> None:
        self.engine = engine
        self.clock = clock

    async def idle(self) -> tuple[bool, float | None]:
        """Whether nothing can happen before time moves, and when the next job is due."""
        clock, worker = self.clock, self.engine.worker
        if not clock.parked or worker.busy or worker.wake.is_set():
            return False, None
        cycles = clock.cycles
        nxt = await self.engine.store.read(lambda tx: tx.queue.next_job_at())
        unchanged = (
            clock.parked and clock.cycles == cycles and not worker.busy and not worker.wake.is_set()
        )
        return bool(unchanged) and (nxt is None or nxt > clock.now()), nxt

    async def settle(self) -> float | None:
        """Wait (in real time) until the engine is idle; returns when the next job is due."""
        while True:
            self.clock.on_park.clear()
            idle, nxt = await self.idle()
            if idle:
                return nxt
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.clock.on_park.wait(), _POLL)

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, running every job due on the way, then settle."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        target = self.clock.now() + seconds
        while True:
            nxt = await self.settle()
            if nxt is None or nxt > target:
                break
            self.clock.set(nxt)
        self.clock.set(target)
        await self.settle()

    async def finish(self, run_id: str, *, auto_skip: bool) -> Run:
        """The run once it has ended, moving time to each next job if ``auto_skip``.

        Raises:
            RunWaitingError: it cannot end without time moving and ``auto_skip`` is off,
                or nothing is scheduled that could end it.
        """
        while True:
            run = await self.engine.get_run(run_id)
            if run.status.terminal:
                return run
            nxt = await self.settle()
            run = await self.engine.get_run(run_id)
            if run.status.terminal:
                return run
            if nxt is None or not auto_skip:
                raise RunWaitingError(await self._stalled(run, nxt), run_id)
            self.clock.set(nxt)

    async def skip_for(self, run_id: str, seconds: float) -> None:
        """For a client's long poll of a run (``handle.result()``, in a test or in the
        app's own route): move time to each next job, as ``finish`` with auto-skip does,
        for at most ``seconds`` of real time; return sooner once the run ended, or once
        nothing scheduled could end it (an event or a signal still may: the poll then
        waits for it as on any engine)."""
        with contextlib.suppress(asyncio.TimeoutError, RunWaitingError, NotFoundError):
            await asyncio.wait_for(self.finish(run_id, auto_skip=True), seconds)

    async def _stalled(self, run: Run, nxt: float | None) -> str:
        steps = await self.engine.run_steps(run.run_id)
        pending = [
            f"{s.name or s.step_id} ({s.status.value}"
            + (f" {json.dumps(s.wait, default=str)}" if s.wait else "")
            + ")"
            for s in steps
            if not s.status.ended
        ]
        held = f"held back: {json.dumps(run.waiting)}" if run.waiting else ""
        what = "; ".join(filter(None, [", ".join(pending), held])) or "nothing it reported"
        state = "queued" if run.status is RunStatus.QUEUED else "running"
        if nxt is None:
            return (
                f"run {run.run_id} ({run.function_id}) is {state} and waits for {what}, "
                "but nothing is scheduled that could end it"
            )
        due = _dt.datetime.fromtimestamp(nxt, _dt.timezone.utc)
        return (
            f"run {run.run_id} ({run.function_id}) is {state} and waits for {what}; "
            f"the engine's next timer is due at {due.isoformat()} (virtual): advance the "
            "clock (env.advance) or use TestEnv(..., auto_skip=True)"
        )
