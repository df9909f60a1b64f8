"""The SQLite store: one writer thread, WAL, readers on their own connections.

SQLite serialises writers anyway; giving the writer its own thread keeps the event
loop free and lets several engine processes share one file (``BEGIN IMMEDIATE`` plus
a busy timeout serialises them).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import pathlib
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from stepline.engine._store import sqlite_schema as schema
from stepline.engine._store import wal as _wal
from stepline.engine._store.attempts import AttemptsTx
from stepline.engine._store.attributes import AttributesTx
from stepline.engine._store.browsing import BrowsingTx
from stepline.engine._store.bulk import BulkTx
from stepline.engine._store.controls import ControlsTx
from stepline.engine._store.function_metrics import FunctionMetricsTx
from stepline.engine._store.messages import MessagesTx
from stepline.engine._store.signals import SignalsTx
from stepline.engine._store.sql import SqlTx
from stepline.engine._store.versions import VersionsTx

T = TypeVar("T")
_READERS = 2  # reader threads (each with its own connection)
#: The most transactions one group commit covers.
GROUP_MAX = 64


class _Slot:
    """Where a blocked thread's transaction result goes (``atomic_blocking``): a lock held
    until the result is in, lighter than a ``concurrent.futures.Future``."""

    __slots__ = ("_lock", "done", "ok", "value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self.done, self.ok, self.value = False, False, None

    def settle(self, ok: bool, value: Any) -> None:
        self.ok, self.value, self.done = ok, value, True
        self._lock.release()

    def result(self) -> Any:
        self._lock.acquire()
        if not self.ok:
            assert isinstance(self.value, BaseException)
            raise self.value
        return self.value


#: Where a queued transaction's result goes: an awaiting coroutine's, or a thread's.
_Waiter = asyncio.Future[Any] | _Slot


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():  # the caller was cancelled; the work was done (or not) all the same
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def _deliver(waiter: _Waiter, ok: bool, value: Any) -> None:
    """Settle ``waiter`` from the thread that ran the transaction."""
    if isinstance(waiter, _Slot):
        waiter.settle(ok, value)
    else:
        waiter.get_loop().call_soon_threadsafe(_settle, waiter, ok, value)


class SqliteStore:
    """A ``Store`` on one SQLite file (or ``:memory:``).

    Args:
        path: the database file; parent directories are created.
        synchronous: SQLite's ``synchronous`` pragma. ``NORMAL`` (default) survives a
            process crash; ``FULL`` also survives power loss, at an fsync per commit.
        busy_timeout: seconds a transaction waits for another process's write lock
            before failing with ``database is locked``.
        wal_limit: bytes of WAL above which it is truncated once readers let go (``_wal``).
        wal_every: seconds between two WAL checkpoints.
    """

    def __init__(
        self,
        path: str | pathlib.Path,
        *,
        synchronous: str = "NORMAL",
        busy_timeout: float = 10.0,
        wal_limit: int = _wal.LIMIT,
        wal_every: float = _wal.EVERY,
    ) -> None:
        self.path = str(path)
        self.synchronous = synchronous
        self._memory = self.path == ":memory:"
        self._busy_ms = int(busy_timeout * 1000)
        #: the WAL's checkpoints and size (None in memory)
        self.wal = (
            None
            if self._memory
            else _wal.WalKeeper(self.path, limit=wal_limit, every=wal_every, busy_ms=self._busy_ms)
        )
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="stepline-db")
        self._readers = concurrent.futures.ThreadPoolExecutor(
            _READERS, thread_name_prefix="stepline-db-read"
        )
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._write_conn: sqlite3.Connection | None = None
        self._queue: list[tuple[Callable[[SqliteTx], Any], _Waiter]] = []
        self._queue_lock = threading.Lock()
        self._draining = False

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        conn.execute("PRAGMA foreign_keys = OFF")
        # savepoints (one per transaction of a group) keep the pages they change in a
        # sub-journal: in memory, not a temporary file (a first write to a table
        # cost ~75 µs of file work, ten times the write itself)
        conn.execute("PRAGMA temp_store = MEMORY")
        if not self._memory:
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        with self._lock:
            self._conns.append(conn)
        return conn

    def _open_sync(self) -> tuple[int, int]:
        if not self._memory:
            pathlib.Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            versions = schema.migrate(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if self.wal is not None:
            self.wal.setup(conn)
        self._write_conn = conn
        return versions

    async def open(self) -> None:
        """Create the file and schema; safe to call from several processes."""
        await asyncio.get_running_loop().run_in_executor(self._writer, self._open_sync)

    async def migrate(self) -> tuple[int, int]:
        """Create or upgrade the schema (SQLite always migrates on open)."""
        return await asyncio.get_running_loop().run_in_executor(self._writer, self._open_sync)

    async def close(self) -> None:
        """Close every connection and stop the threads."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer, lambda: None)
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()

    def _atomic_sync(self, work: Callable[[SqliteTx], T]) -> T:
        conn = self._write_conn
        assert conn is not None, "store is not open"
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(SqliteTx(conn))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    async def atomic(self, work: Callable[[SqliteTx], T]) -> T:
        """Run ``work`` atomically on the writer thread; its changes are committed on return.

        Group commit: transactions that queue up while the writer is busy are run together
        in one ``BEGIN IMMEDIATE`` ... ``COMMIT``, each inside its own savepoint, so one
        commit (one fsync with ``synchronous=FULL``) covers them all, and a failing
        ``work`` rolls back only its own changes.
        """
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        with self._queue_lock:
            self._queue.append((work, future))
            start, self._draining = not self._draining, True
        if start:
            self._writer.submit(self._drain)
        return await future

    def atomic_blocking(self, work: Callable[[SqliteTx], T]) -> T:
        """``atomic`` for a thread that may block (never the event loop's).

        When the writer is idle the transaction runs on the calling thread, with no
        hand-off to the writer thread and back (a step checkpoint's commit, from the
        thread its function runs on); else it joins the queue and this thread waits.
        """
        slot = _Slot()
        with self._queue_lock:
            self._queue.append((work, slot))
            start, self._draining = not self._draining, True
        if start:
            self._drain(slot)  # the writer's role, taken on this thread for its own work
        result: T = slot.result()
        return result

    def _drain(self, mine: _Slot | None = None) -> None:
        try:
            while True:
                with self._queue_lock:
                    if mine is not None and mine.done and self._queue:
                        self._writer.submit(self._drain)  # the rest: the writer's thread
                        return
                    batch, self._queue = self._queue[:GROUP_MAX], self._queue[GROUP_MAX:]
                    if not batch:
                        self._draining = False
                        return
                self._commit_group(batch)
                if self.wal is not None and self._write_conn is not None:
                    self.wal.check(self._write_conn)
        except BaseException:
            with self._queue_lock:
                self._draining = False
            raise

    def _commit_group(self, batch: list[tuple[Callable[[SqliteTx], Any], _Waiter]]) -> None:
        conn = self._write_conn
        outcomes: list[tuple[bool, Any]] = []
        alone = len(batch) == 1  # no savepoint needed: its failure rolls back everything
        try:
            assert conn is not None, "store is not open"
            conn.execute("BEGIN IMMEDIATE")
            try:
                for work, _ in batch:
                    if not alone:
                        conn.execute("SAVEPOINT stepline_work")
                    try:
                        outcomes.append((True, work(SqliteTx(conn))))
                    except Exception as exc:
                        if not conn.in_transaction:  # a fault (full, I/O) ended it: all fail
                            raise
                        conn.execute("ROLLBACK" if alone else "ROLLBACK TO stepline_work")
                        outcomes.append((False, exc))
                        if alone:
                            break
                    if not alone:
                        conn.execute("RELEASE stepline_work")
                if not (alone and not outcomes[0][0]):
                    conn.execute("COMMIT")
            except BaseException:
                # a failed COMMIT (disk full, I/O) may leave the transaction open
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except Exception as exc:  # the transaction itself failed: nothing was committed
            outcomes = [(False, exc) for _ in batch]
        for (ok, value), (_, future) in zip(outcomes, batch, strict=True):
            _deliver(future, ok, value)

    def _read_sync(self, work: Callable[[SqliteTx], T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        conn.execute("BEGIN")
        try:
            return work(SqliteTx(conn))
        finally:
            conn.execute("ROLLBACK")

    async def read(self, work: Callable[[SqliteTx], T]) -> T:
        """Run ``work`` on a reader connection (the writer's, for ``:memory:``)."""
        loop = asyncio.get_running_loop()
        if self._memory:
            return await loop.run_in_executor(self._writer, self._atomic_sync, work)
        return await loop.run_in_executor(self._readers, self._read_sync, work)

    def read_blocking(self, work: Callable[[SqliteTx], T]) -> T:
        """``read`` from a thread that may block: on a reader thread, which ``suspend`` holds."""
        if self._memory:
            return self._writer.submit(self._atomic_sync, work).result()
        return self._readers.submit(self._read_sync, work).result()

    def wal_bytes(self) -> int | None:
        """The size of the write-ahead log file (None in memory)."""
        return None if self.wal is None else self.wal.size()

    def subscribe(self, notify: Callable[[str], None]) -> None:
        """SQLite has no notifications: processes sharing a file poll."""

    def subscribe_streams(self, notify: Callable[[str], None]) -> None:
        """SQLite has no notifications: stream readers of other processes poll."""

    def suspend(self, timeout: float = 30.0) -> Callable[[], None]:
        """Close the file and hold the store's threads; the returned ``resume`` reopens it.

        For ``fork()``: SQLite keeps per-process bookkeeping of the locks on each open
        file, and a child forked while this process has the file open inherits it. The
        child may then see a lock taken mid-transaction as held forever, or hold no real
        lock at all, so that this process, closing the file later, deletes the WAL under
        it. With the file closed across the fork, the child starts clean.
        """
        if self._memory or self._write_conn is None:
            return lambda: None
        release, closed = threading.Event(), threading.Event()
        parked = threading.Semaphore(0)

        def hold(reader: bool) -> None:
            parked.release()
            release.wait()
            if reader and closed.is_set():
                self._local.conn = None  # its connection was closed: the next read reconnects

        holds = [self._readers.submit(hold, True) for _ in range(_READERS)]
        holds.append(self._writer.submit(hold, False))
        deadline = time.monotonic() + timeout
        if not all(parked.acquire(timeout=max(0.0, deadline - time.monotonic())) for _ in holds):
            release.set()  # a transaction would not end: fork with the file open, as before
            return lambda: None
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()
        self._write_conn = None
        closed.set()

        def resume() -> None:
            self._write_conn = self._connect()
            if self.wal is not None:
                self.wal.setup(self._write_conn)
            release.set()

        return resume


class SqliteTx(
    SqlTx,
    VersionsTx,
    MessagesTx,
    ControlsTx,
    AttributesTx,
    BulkTx,
    SignalsTx,
    AttemptsTx,
    FunctionMetricsTx,
    BrowsingTx,
):
    """``Tx`` over one SQLite connection with a ``BEGIN IMMEDIATE`` transaction open."""
