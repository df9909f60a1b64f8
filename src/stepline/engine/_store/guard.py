"""The store's guard: database faults become ``StoreUnavailable``, and are watched.

``GuardedStore`` wraps the engine's store (``Engine`` wraps whatever store it is given).
A failed operation whose error ``faults.classify`` names is raised again as
``StoreUnavailable`` and noted in ``StoreHealth``: one log line naming the cause (no
traceback; then at most one a minute while the fault lasts, with a count), a counter per
cause (``stepline_store_faults_total``), and, for a failed write, the degraded state
``/ready`` answers 503 with until a write succeeds again (logged once, with how long it
lasted). Anything else passes through untouched.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from stepline.engine._store import Store, Tx
from stepline.engine._store.faults import ADVICE, Cause, StoreUnavailable, classify

T = TypeVar("T")
logger = logging.getLogger("stepline.engine")
#: At most one log line per cause in this many seconds while a fault lasts.
REPEAT_SECONDS = 60.0
#: Faults that any committed transaction shows are over (it got the lock, a connection).
_ACCESS: frozenset[Cause | None] = frozenset({"locked", "unreachable", "schema missing"})


class StoreHealth:
    """What the engine knows of its database's faults (event-loop thread only).

    Args:
        scrub: removes secrets (the database URL's password) from a driver's message.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        scrub: Callable[[str], str] = str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._scrub = scrub
        self._clock = clock
        #: the cause of the last failed write, while no write has succeeded since
        self.cause: Cause | None = None
        self.detail = ""
        self.since: float | None = None
        #: faults seen, per cause (every operation, read or write)
        self.counts: dict[Cause, int] = {}
        #: told of every fault (the metrics' counter)
        self.listeners: list[Callable[[Cause], None]] = []
        self._logged: dict[Cause, float] = {}
        self._unlogged: dict[Cause, int] = {}
        self._announced = False
        #: the size of SQLite's write-ahead log (None for other stores)
        self.wal_bytes: Callable[[], int | None] = lambda: None

    @property
    def degraded(self) -> bool:
        """Whether the last write failed with a fault and none has succeeded since."""
        return self.cause is not None

    def failed(self, cause: Cause, exc: BaseException, *, write: bool) -> StoreUnavailable:
        """Note a fault; returns the ``StoreUnavailable`` to raise."""
        detail = self._scrub(str(exc).strip() or type(exc).__name__).splitlines()[0]
        self.counts[cause] = self.counts.get(cause, 0) + 1
        for listener in self.listeners:
            listener(cause)
        now = self._clock()
        if write:
            if self.since is None:
                self.since = now
            self.cause, self.detail = cause, detail
        last = self._logged.get(cause)
        if last is None or now - last >= REPEAT_SECONDS:
            more = self._unlogged.pop(cause, 0)
            again = f" ({more} more since the last report)" if more else ""
            logger.warning(
                "database fault (%s): %s%s; answering 503 and retrying until it clears: %s",
                cause, detail, again, ADVICE[cause],
            )  # fmt: skip
            self._logged[cause] = now
            self._announced = True
        else:
            self._unlogged[cause] = self._unlogged.get(cause, 0) + 1
        return StoreUnavailable(cause, detail)

    def wrote(self, *, changed: bool = True) -> None:
        """A transaction committed: the database is writable again, if it wrote a row.

        A commit that changed nothing needs no disk space and no write access: it ends a
        ``locked`` or ``unreachable`` fault, not a ``disk full`` or ``read-only`` one.
        """
        if self.since is None or not (changed or self.cause in _ACCESS):
            return
        if self._announced:
            lasted = self._clock() - self.since
            logger.info("the database accepts writes again after %.1f s (%s)", lasted, self.cause)
        self.cause, self.detail, self.since, self._announced = None, "", None, False

    def report(self) -> dict[str, Any] | None:
        """What ``/ready`` says while degraded (None when not)."""
        if self.cause is None or self.since is None:
            return None
        return {
            "cause": self.cause,
            "detail": self.detail,
            "seconds": round(self._clock() - self.since, 1),
            "what_to_do": ADVICE[self.cause],
        }


class GuardedStore:
    """A ``Store`` raising ``StoreUnavailable`` for database faults and noting them.

    Args:
        store: the store to guard.
        health: where faults are noted (a new one by default).
    """

    def __init__(self, store: Store, health: StoreHealth | None = None) -> None:
        self.inner = store
        self.health = health or StoreHealth()
        self.health.wal_bytes = self._wal_bytes

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # e.g. SqliteStore.suspend, .wal

    async def open(self) -> None:
        """Open the store (its errors as they are: the CLI reports them)."""
        await self.inner.open()

    async def close(self) -> None:
        """Close the store."""
        await self.inner.close()

    async def migrate(self) -> tuple[int, int]:
        """Migrate the store."""
        return await self.inner.migrate()

    def subscribe(self, notify: Callable[[str], None]) -> None:
        """Subscribe to other nodes' commits."""
        self.inner.subscribe(notify)

    def subscribe_streams(self, notify: Callable[[str], None]) -> None:
        """Subscribe to other nodes' stream publishes."""
        self.inner.subscribe_streams(notify)

    async def atomic(self, work: Callable[[Tx], T], *, small: bool = False) -> T:
        """Run ``work`` in a write transaction; a fault raises ``StoreUnavailable``."""
        changed = [True]
        try:
            counted = functools.partial(_counted, work, changed)
            result = await self.inner.atomic(counted, small=small)
        except Exception as exc:
            self._fault(exc)
            raise
        self.health.wrote(changed=changed[0])
        return result

    def atomic_blocking(self, work: Callable[[Tx], T]) -> T:
        """``atomic`` from a thread that may block; a fault raises ``StoreUnavailable``."""
        changed = [True]
        try:
            result = self.inner.atomic_blocking(functools.partial(_counted, work, changed))
        except Exception as exc:
            self._fault(exc)
            raise
        self.health.wrote(changed=changed[0])
        return result

    def _fault(self, exc: Exception) -> None:
        """Raise ``StoreUnavailable`` for a database fault (noted); else return."""
        cause = classify(exc)
        if cause is not None:
            raise self.health.failed(cause, exc, write=True) from exc

    async def read(self, work: Callable[[Tx], T], *, small: bool = False) -> T:
        """Run ``work`` on a read snapshot; a fault raises ``StoreUnavailable``."""
        try:
            return await self.inner.read(work, small=small)
        except Exception as exc:
            fault = self._read_fault(exc)
            if fault is None:
                raise
            raise fault from exc

    def read_blocking(self, work: Callable[[Tx], T]) -> T:
        """``read`` from a thread that may block; a fault raises ``StoreUnavailable``."""
        try:
            return self.inner.read_blocking(work)
        except Exception as exc:
            fault = self._read_fault(exc)
            if fault is None:
                raise
            raise fault from exc

    def _read_fault(self, exc: Exception) -> StoreUnavailable | None:
        """``StoreUnavailable`` (noted) if a failed read was a database fault, else None."""
        cause = classify(exc)
        return None if cause is None else self.health.failed(cause, exc, write=False)

    def _wal_bytes(self) -> int | None:
        size: Callable[[], int | None] | None = getattr(self.inner, "wal_bytes", None)
        return None if size is None else size()


def _counted(work: Callable[[Tx], T], changed: list[bool], tx: Tx) -> T:
    """Run ``work``; ``changed[0]``: whether it changed any row (True if unknown).

    What tells is the rows changed so far on a SQLite transaction's connection (its
    ``total_changes``); another store's transaction has none."""
    conn: Any = getattr(tx, "_c", None)
    before = getattr(conn, "total_changes", None)
    result = work(tx)
    changed[0] = not isinstance(before, int) or conn.total_changes != before
    return result
