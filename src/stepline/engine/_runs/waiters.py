"""Callers waiting for runs to end, answered by one shared check per commit.

A caller of ``Engine.wait_for_run`` does not re-read its run after every commit: with many
callers waiting (every ``result()`` of a busy web app long-polls), each commit would cost one
read per waiter. Here each commit schedules at most one read covering every waited-for run, and a
commit that lands while that read is in flight schedules one more, so none is missed.

Callers on other threads of the process (the embedded engine's client, in a web request's
thread) wait with ``wait_blocking``: they are answered by the same check, on a
``threading.Event`` instead of a future, and never cross to the event loop themselves.

A web request that starts a run and then waits for it (``start_sync(...).result()``: two
requests) would read the run once more when it starts waiting, to know it has not ended
meanwhile. A run started from a blocking caller is watched from its start's commit on
instead (``fresh``, the last ``FRESH`` of them, outside the checks after each commit), so
the wait that claims it needs no read, as ``watch`` spares an async caller one.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Sequence

from stepline.engine._errors import EngineStopped
from stepline.engine._model import Run

#: Waiters re-check this often even without a commit here (another process may end the
#: run and SQLite has no notifications).
RECHECK_SECONDS = 0.25

#: Runs started by blocking callers watched for a wait to claim (the oldest let go first).
FRESH = 256

ReadRuns = Callable[[Sequence[str]], Awaitable[list[Run]]]


class _Blocked:
    """A caller on another thread: its event is set once ``run`` holds the ended run."""

    __slots__ = ("event", "run")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.run: Run | None = None


class RunWaiters:
    """Futures for runs' ends, resolved by ``changed`` (call it after every commit).

    Every method but ``wait_blocking`` runs on the event loop.
    """

    def __init__(self, read: ReadRuns) -> None:
        self._read = read
        self._waiting: dict[str, list[asyncio.Future[Run]]] = {}
        self._blocked: dict[str, list[_Blocked]] = {}  # guarded by _lock
        #: runs started by blocking callers, watched until a wait claims them (``fresh``);
        #: guarded by _lock, in start order
        self._fresh: dict[str, _Blocked] = {}
        self._lock = threading.Lock()
        self._closed = False  # the engine stopped: blocked callers are let go
        self._dirty = False
        self._checking: asyncio.Task[None] | None = None

    @property
    def count(self) -> int:
        """How many callers are waiting."""
        with self._lock:
            blocked = sum(len(callers) for callers in self._blocked.values())
        return blocked + sum(len(futures) for futures in self._waiting.values())

    def watch(self, run_id: str) -> asyncio.Future[Run]:
        """Register a caller for a run whose start just committed, before anything could
        end it (its first call is not dispatched yet): ``wait(watched=)`` then needs no
        read to know it has not ended meanwhile."""
        future: asyncio.Future[Run] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(run_id, []).append(future)
        return future

    def fresh(self, run_id: str) -> None:
        """Watch a run whose start just committed on this thread, before anything could
        end it (its first call is not dispatched yet): the ``wait_blocking`` that claims
        it reads nothing first. Any thread; the oldest of more than ``FRESH`` is dropped
        (its wait reads, as any other)."""
        with self._lock:
            if self._closed:
                return
            self._fresh[run_id] = _Blocked()
            if len(self._fresh) > FRESH:
                del self._fresh[next(iter(self._fresh))]

    async def wait(
        self,
        run_id: str,
        timeout: float,
        now: Callable[[], Awaitable[Run]] | None = None,
        *,
        watched: asyncio.Future[Run] | None = None,
    ) -> Run:
        """The run once it has ended.

        Args:
            run_id: the run.
            timeout: seconds to wait at most.
            now: reads the run as it is now. Called once this caller is registered, so
                an end committed meanwhile is not missed; a run already ended is
                returned at once. Without it the first check is a batched read.
            watched: this caller's registration by ``watch``, made when the run started;
                ``now`` is then not called.

        Raises:
            TimeoutError: it did not end within ``timeout`` seconds.
            Exception: what ``now`` raised (``NotFoundError``: no such run).
        """
        loop = asyncio.get_running_loop()
        future = watched if watched is not None else self.watch(run_id)
        deadline = loop.time() + timeout
        try:
            if watched is not None:
                pass  # registered from its start's commit on: no end was missed
            elif now is None:
                self.changed()  # it may have ended already
            else:
                found = await now()
                if found.status.terminal:
                    return found
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    raise asyncio.TimeoutError(f"run {run_id} did not end within {timeout:g} s")
                done, _ = await asyncio.wait({future}, timeout=min(left, RECHECK_SECONDS))
                if done:
                    return future.result()
                self.changed()
        finally:
            self._forget(run_id, future)

    def wait_blocking(self, run_id: str, timeout: float, now: Callable[[], Run]) -> Run:
        """``wait`` for a thread that may block (never the event loop's).

        Args:
            run_id: the run.
            timeout: seconds to wait at most.
            now: reads the run as it is now, on the calling thread; called once this
                caller is registered, and again every ``RECHECK_SECONDS`` without news.

        Raises:
            TimeoutError: it did not end within ``timeout`` seconds.
            EngineStopped: the engine stopped (``close``) before it ended.
            Exception: what ``now`` raised (``NotFoundError``: no such run).
        """
        with self._lock:
            if self._closed:
                raise EngineStopped("the engine stopped")
            claimed = self._fresh.pop(run_id, None)
            caller = _Blocked() if claimed is None else claimed
            self._blocked.setdefault(run_id, []).append(caller)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if claimed is None:  # else watched from its start: no end was missed here
                    found = self._now_blocking(now)
                    if found.status.terminal:
                        return found
                claimed = None  # a recheck reads (another process may have ended it)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"run {run_id} did not end within {timeout:g} s")
                if caller.event.wait(min(left, RECHECK_SECONDS)):
                    if caller.run is None:
                        raise EngineStopped("the engine stopped")
                    return caller.run
        finally:
            with self._lock:
                callers = self._blocked.get(run_id, [])
                with contextlib.suppress(ValueError):
                    callers.remove(caller)
                if not callers:
                    self._blocked.pop(run_id, None)

    def _now_blocking(self, now: Callable[[], Run]) -> Run:
        """``now()``; once the engine stops, its failure (the store closed) is ``EngineStopped``."""
        try:
            return now()
        except Exception:
            if self._closed:
                raise EngineStopped("the engine stopped") from None
            raise

    def open(self) -> None:
        """The engine (re)starts: ``wait_blocking`` waits again."""
        with self._lock:
            self._closed = False

    def close(self) -> None:
        """The engine stops: callers blocked in ``wait_blocking`` raise ``EngineStopped``."""
        with self._lock:
            self._closed = True
            callers = [caller for waiting in self._blocked.values() for caller in waiting]
            self._fresh.clear()  # a restarted engine's waits read first
        for caller in callers:
            caller.event.set()

    def concern(self, ended: Sequence[Run] | None) -> bool:
        """Whether a commit made on another thread, ending ``ended`` (None: unknown which),
        has callers to tell: ``changed`` or ``ended`` on the loop would do something.

        Any thread, after the commit: a caller registering later reads its run once
        registered (or is watched from its start, before the run could end), so it sees
        the commit without being told.
        """
        if ended is None:
            return bool(self._waiting or self._blocked)
        if not (self._waiting or self._blocked or self._fresh):
            return False
        with self._lock:  # a claim of a fresh run moves it to ``_blocked`` under the lock
            return any(
                run.run_id in self._waiting
                or run.run_id in self._blocked
                or run.run_id in self._fresh
                for run in ended
            )

    def changed(self) -> None:
        """Something was committed: check the waited-for runs (once, however many call)."""
        if not (self._waiting or self._blocked):
            return
        self._dirty = True
        if self._checking is None or self._checking.done():
            self._checking = asyncio.get_running_loop().create_task(self._check())

    def ended(self, run: Run) -> None:
        """``run`` has ended (its commit is known): answer its waiters without a read."""
        for future in self._waiting.pop(run.run_id, []):
            if not future.done():
                future.set_result(run)
        if self._blocked or self._fresh:
            self.ended_blocking(run)

    def ended_blocking(self, run: Run) -> None:
        """``ended`` for the callers on other threads only, from the thread that committed
        the end (a run's calls on the SDK's thread): they need not wait for the loop to
        hear of it. Any thread; ``ended`` on the loop still answers the futures."""
        with self._lock:
            callers = self._blocked.pop(run.run_id, [])
            self._fresh.pop(run.run_id, None)  # not claimed: a wait reads it ended
        for caller in callers:
            caller.run = run
            caller.event.set()

    async def _check(self) -> None:
        while self._dirty and (self._waiting or self._blocked):
            self._dirty = False
            with self._lock:
                run_ids = list({**self._waiting, **self._blocked})
            try:
                runs = await self._read(run_ids)
            except Exception:  # the store is failing: the recheck timer tries again
                return
            for run in runs:
                if run.status.terminal:
                    self.ended(run)

    def _forget(self, run_id: str, future: asyncio.Future[Run]) -> None:
        futures = self._waiting.get(run_id)
        if futures is None:
            return
        with contextlib.suppress(ValueError):
            futures.remove(future)
        if not futures:
            del self._waiting[run_id]
