"""The SQLite store: one writer at a time, WAL, readers on their own connections.

SQLite serialises writers anyway; giving the writer its own thread keeps the event
loop free and lets several engine processes share one file (``BEGIN IMMEDIATE`` plus
a busy timeout serialises them). Whoever holds the writer's role (``_draining``) runs
the queued transactions: the writer thread, a blocked caller's thread for its own
(``atomic_blocking``), or the event loop's thread for a small transaction when nothing
else is writing and a commit needs no fsync (``atomic(small=True)``: a run's start, a
call's answer; it saves the two thread wake-ups of a hand-off, ~15% of a run over HTTP).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import pathlib
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from stepline.engine._model import Job
from stepline.engine._store import sqlite_schema as schema
from stepline.engine._store import wal as _wal
from stepline.engine._store.outcomes import Slot, Waiter, deliver_all
from stepline.engine._store.part import LazyPart
from stepline.engine._store.queue import MOVE_JOB, MOVED_ROW, SqliteQueueSql
from stepline.engine._store.rows import read_job
from stepline.engine._store.sql import CALL_WIDTH, SqlTx, run_in
from stepline.engine._store.sqlite_fence import Fence, Fences

T = TypeVar("T")
_READERS = 2  # reader threads (each with its own connection)
_SQLITE_BUSY = 5  # another connection holds the lock
#: what SQLite says for ``SQLITE_BUSY`` (``sqlite3_errstr``)
_BUSY_MESSAGE = "database is locked"
#: The most transactions one group commit covers.
GROUP_MAX = 64
#: Bytes a page of a new database file (a file keeps the size it was created with).
#: A commit writes each page it changed, whole, to the log (and a checkpoint copies it
#: back): a step changes five pages, mostly to add or move one small entry (its row, an
#: index key). Against SQLite's 4,096, in paired runs (bench/README.md, "1 KB pages"):
#: +8.5% steps/s step by step with small outputs, +10% with 2 KB ones, even at 8 KB, and
#: -6.5% with 20 KB outputs (2,048 would gain 3%, 4% and 0%).
PAGE_SIZE = 1024


def _busy(exc: sqlite3.OperationalError) -> bool:
    """Whether ``exc`` is ``SQLITE_BUSY``: another connection holds the lock.

    Python 3.11+ gives the error's code; 3.10 only its message.
    """
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return bool(code == _SQLITE_BUSY)
    return str(exc) == _BUSY_MESSAGE


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
        known_schema: the newest schema version to apply and accept (None: every
            migration this release has; ``EngineSettings.known_schema``).
    """

    def __init__(
        self,
        path: str | pathlib.Path,
        *,
        synchronous: str = "NORMAL",
        busy_timeout: float = 10.0,
        wal_limit: int = _wal.LIMIT,
        wal_every: float = _wal.EVERY,
        known_schema: int | None = None,
    ) -> None:
        self._memory = str(path) == ":memory:"
        # absolute: connections opened later (a reader, a reopen after fork) must find
        # this file whatever the process's working directory has become since
        self.path = str(path) if self._memory else os.path.abspath(path)
        self.synchronous = synchronous
        self.known_schema = known_schema
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
        #: calls whose next answer may take them as the last transaction left them
        self._fences = Fences()
        self._queue: list[tuple[Callable[[SqliteTx], Any], Waiter]] = []
        self._queue_lock = threading.Lock()
        self._draining = False
        self._opened = 0  # bumped when ``suspend`` closes every connection
        self._lost: Exception | None = None  # why a reopen after a fork failed
        self._suspending = False  # guarded by _lock, as is:
        self._loop_reads = 0  # reads running on the loop's thread (``read(small=True)``)
        #: the busy timeout (ms) the writer's connection was last given by ``_begin``
        #: (None: unknown), so a run of transactions of one kind sets it once
        self._busy_now: tuple[sqlite3.Connection, int] | None = None
        #: small transactions may run on the loop's thread: a commit has no fsync to wait
        #: for (in WAL at NORMAL only a checkpoint syncs, and those stay on the writer's)
        self._inline = not self._memory and synchronous.upper() in ("OFF", "NORMAL") and _wal.COUNTS

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        conn.execute("PRAGMA foreign_keys = OFF")
        # savepoints (one per transaction of a group) keep the pages they change in a
        # sub-journal: in memory, not a temporary file (a first write to a table
        # cost ~75 µs of file work, ten times the write itself)
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # before WAL: a new file only
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
            versions = schema.migrate(conn, self.known_schema)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if self.wal is not None:
            self.wal.setup(conn, manual=self._inline)
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
        self._fences.clear()
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
        if self.wal is not None:
            self.wal.close()

    async def atomic(self, work: Callable[[SqliteTx], T], *, small: bool = False) -> T:
        """Run ``work`` atomically on the writer thread; its changes are committed on return.

        Group commit: transactions that queue up while the writer is busy are run together
        in one ``BEGIN IMMEDIATE`` ... ``COMMIT``, each inside its own savepoint, so one
        commit (one fsync with ``synchronous=FULL``) covers them all, and a failing
        ``work`` rolls back only its own changes.

        ``small``: a transaction of a few rows. When nothing else is writing, a commit
        needs no fsync (a file at ``synchronous=NORMAL``) and no other process holds the
        write lock, it runs here on the loop's thread, with no hand-off to the writer
        thread and back; else it queues like any other.
        """
        if small and self._inline and self._take_role():
            slot = Slot()
            try:
                self._commit_group([(work, slot)], wait=False)
            finally:
                self._hand_back()
            if slot.done:  # else another process held the write lock: queue and wait
                result: T = slot.result()
                return result
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        with self._queue_lock:
            self._queue.append((work, future))
            start, self._draining = not self._draining, True
        if start:
            self._writer.submit(self._drain)
        return await future

    def _take_role(self) -> bool:
        """Take the writer's role if it is free and nothing is queued."""
        with self._queue_lock:
            if self._draining or self._queue or self._write_conn is None:
                return False
            self._draining = True
            return True

    def _hand_back(self) -> None:
        """Give the writer's role back after an inline transaction; the writer thread
        takes it when transactions queued meanwhile or a WAL checkpoint is due."""
        due = self.wal is not None and self.wal.due()
        with self._queue_lock:
            if not (self._queue or due):
                self._draining = False
                return
        self._writer.submit(self._keep_then_drain)

    def _keep_then_drain(self) -> None:
        self._keep_wal()
        self._drain()

    def _keep_wal(self) -> None:
        if self.wal is not None and self._write_conn is not None:
            self.wal.check(self._write_conn)
            self._busy_now = None  # a truncating checkpoint sets its own

    def atomic_blocking(self, work: Callable[[SqliteTx], T]) -> T:
        """``atomic`` for a thread that may block (never the event loop's).

        When the writer is idle the transaction runs on the calling thread, with no
        hand-off to the writer thread and back (a step checkpoint's commit, from the
        thread its function runs on); else it joins the queue and this thread waits.
        """
        slot = Slot()
        with self._queue_lock:
            self._queue.append((work, slot))
            start, self._draining = not self._draining, True
        if start:
            self._drain(slot)  # the writer's role, taken on this thread for its own work
        result: T = slot.result()
        return result

    def _drain(self, mine: Slot | None = None) -> None:
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
                self._keep_wal()
        except BaseException:
            with self._queue_lock:
                self._draining = False
            raise

    def _commit_group(
        self, batch: list[tuple[Callable[[SqliteTx], Any], Waiter]], wait: bool = True
    ) -> None:
        """Run ``batch`` in one transaction and settle each waiter. With ``wait`` false,
        if another process holds the write lock, nothing runs and no waiter is settled."""
        conn = self._write_conn
        outcomes: list[tuple[bool, Any]] = []
        alone = len(batch) == 1  # no savepoint needed: its failure rolls back everything
        left: Fence | None = None
        try:
            if conn is None:  # closed, or its reopen after a fork failed
                raise self._lost or sqlite3.ProgrammingError("the store is not open")
            if not self._begin(conn, wait):
                return
            try:
                for work, _ in batch:
                    if not alone:
                        conn.execute("SAVEPOINT stepline_work")
                    tx = SqliteTx(conn)
                    tx.fences = self._fences
                    try:
                        outcomes.append((True, run_in(tx, work)))
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
                    if alone and not self._queue:  # else others commit before its next
                        left = tx.fence_left()
                    conn.execute("COMMIT")
            except BaseException:
                # a failed COMMIT (disk full, I/O) may leave the transaction open
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            if left is not None:
                self._fences.keep(left)
        except Exception as exc:  # the transaction itself failed: nothing was committed
            outcomes = [(False, exc) for _ in batch]
        deliver_all(batch, outcomes)

    def _begin(self, conn: sqlite3.Connection, wait: bool) -> bool:
        """``BEGIN IMMEDIATE``; without ``wait``, False at once if the lock is taken.

        The busy timeout is the store's with ``wait``, else zero, and stays so for the
        transaction and after it: once the write lock is held, no statement of the
        transaction waits for another lock (in WAL, a commit takes none, and the
        connection does not checkpoint by itself where transactions run without
        ``wait``). So consecutive transactions of one kind set it once, not twice each.
        """
        ms = self._busy_ms if wait else 0
        if self._busy_now != (conn, ms):
            self._busy_now = None  # unknown, should the statement fail
            conn.execute(f"PRAGMA busy_timeout = {ms}")
            self._busy_now = (conn, ms)
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if not wait and _busy(exc):
                return False
            raise
        return True

    def _read_sync(self, work: Callable[[SqliteTx], T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "opened", 0) != self._opened:
            conn = self._connect()
            self._local.conn, self._local.opened = conn, self._opened
        conn.execute("BEGIN")
        try:
            return run_in(SqliteTx(conn), work)
        finally:
            conn.execute("ROLLBACK")

    async def read(self, work: Callable[[SqliteTx], T], *, small: bool = False) -> T:
        """Run ``work`` on a reader connection (the writer's, for ``:memory:``).

        ``small``: a lookup by key, run on the loop's thread with a connection of its own
        (a WAL reader waits for no lock), with no hand-off to a reader thread and back.
        """
        if small and self._inline:
            with self._lock:  # ``suspend`` waits for the loop's read to end before closing
                here = self._write_conn is not None and not self._suspending
                self._loop_reads += here
            if here:
                try:
                    return self._read_sync(work)
                finally:
                    with self._lock:
                        self._loop_reads -= 1
        if self._memory:  # one connection: the writer's role serialises its users
            return await self.atomic(work)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._read_sync, work)

    def read_blocking(self, work: Callable[[SqliteTx], T]) -> T:
        """``read`` from a thread that may block: on a reader thread, which ``suspend`` holds."""
        if self._memory:
            return self.atomic_blocking(work)
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
        deadline = time.monotonic() + timeout
        # The writer's role is taken here, not by a hold on the writer's thread: the
        # thread that last drained (the loop's, or a blocked caller's) may have handed
        # the rest of the queue to the writer's thread, behind such a hold, which would
        # then wait for a role only its own thread could give back.
        while not self._take_role():
            if time.monotonic() > deadline:
                return lambda: None  # a transaction would not end: fork with the file open
            time.sleep(0.0005)
        release = threading.Event()
        parked = threading.Semaphore(0)

        def hold() -> None:
            parked.release()
            release.wait()

        def let_go() -> None:
            self._resumed()
            release.set()
            self._hand_back()  # what queued meanwhile runs on the writer's thread

        try:
            holds = [self._readers.submit(hold) for _ in range(_READERS)]
            with self._lock:
                self._suspending = True
            if not all(parked.acquire(timeout=_left(deadline)) for _ in holds):
                let_go()  # a read would not end: fork with the file open, as before
                return lambda: None
            while self._loop_reads and time.monotonic() < deadline:  # ends within µs
                time.sleep(0.0005)
            with self._lock:
                conns, self._conns = self._conns, []
            self._fences.clear()
            for conn in conns:
                conn.close()
            if self.wal is not None:
                self.wal.close()
            self._opened += 1  # a thread's reader connection was closed: it opens another
            self._write_conn = None
        except BaseException:  # e.g. interrupted by a signal: never leave the threads held
            let_go()
            raise

        def resume() -> None:
            try:
                self._write_conn = self._connect()
                if self.wal is not None:
                    self.wal.setup(self._write_conn, manual=self._inline)
            except Exception as exc:
                # what each transaction then fails with: the driver's own error, which
                # the guard names (a fault the engine retries quietly while it stops)
                self._lost = exc
                raise
            finally:  # a failed reopen still lets the threads go (their work then fails)
                let_go()

        return resume

    def _resumed(self) -> None:
        with self._lock:
            self._suspending = False


def _left(deadline: float) -> float:
    """Seconds until ``deadline`` (``time.monotonic``), never below zero."""
    return max(0.0, deadline - time.monotonic())


class SqliteTx(SqlTx):
    """``Tx`` over one SQLite connection with a ``BEGIN IMMEDIATE`` transaction open.

    With ``fences`` (the writer's transactions), a call read with its run may be taken
    from what the store's last transaction left of it (``sqlite_fence``), and this one
    says what it leaves (``fence_left``)."""

    queue = LazyPart(SqliteQueueSql)

    # each a default, until a transaction sets its own (no ``__init__`` of this class:
    # a frame less a transaction)
    #: the store's fences, given to the writer's transactions
    fences: Fences | None = None
    #: the job row of the call read with its run's, no function paused (``get_call``)
    _called: Sequence[Any] | None = None
    _version: int | None = None
    #: whether the queue's statements wrote ``jobs``; the row of the job they last
    #: moved, as written, while none wrote ``jobs`` since (``execute_jobs``)
    _jobs_written = False
    _moved: Sequence[Any] | None = None

    def get_call(self, job_id: str) -> Job | None:
        fence = self.fences.pop(job_id, None) if self.fences else None
        # nothing written since: not through this connection, nor committed by another
        if (
            fence is not None
            and fence.conn is self._c
            and fence.changes == self._c.total_changes
            and fence.version == self.data_version()
        ):
            run_id = str(fence.job[3])
            self._run_rows[run_id] = fence.run
            self._revisions[run_id] = fence.revision
            self.controls.none_paused()
            self._called = fence.job
            return read_job(fence.job)
        return super().get_call(job_id)

    def _call_row(self, job_id: str) -> Sequence[Any] | None:
        row = super()._call_row(job_id)
        if row is not None and not row[-1]:  # and no function paused
            self._called = row[:CALL_WIDTH]
        return row

    def execute_jobs(self, sql: str, args: Sequence[Any] = ()) -> Any:
        """``execute`` for the queue's statements (``SqliteQueueSql``)."""
        cur = self.execute(sql, args)
        if sql is MOVE_JOB and cur.rowcount == 1:
            self._moved, self._jobs_written = MOVED_ROW(args), True
        elif not sql.startswith("SELECT"):  # a write: the row moved may be another now
            self._moved, self._jobs_written = None, True
        return cur

    def execute_many_jobs(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """``execute_many`` for the queue's statements: each a write."""
        self._moved, self._jobs_written = None, True
        self.execute_many(sql, rows)

    def data_version(self) -> int:
        """``PRAGMA data_version`` in this transaction: another connection's commit
        since an earlier read of it changes it (this one's never do)."""
        if self._version is None:
            self._version = int(self.execute("PRAGMA data_version").fetchone()[0])
        return self._version

    def fence_left(self) -> Fence | None:
        """What this transaction, once committed, leaves of the call it read, or of the
        run's next call it moved that call's job to (``sqlite_fence``); None when it
        read none, or wrote the job otherwise, or changed its run but through its row."""
        called = self._called
        if called is None:
            return None
        left = self._moved if self._jobs_written else called
        if left is None or left[3] != called[3]:
            return None
        run_id = str(called[3])
        run, revision = self._run_rows.get(run_id), self._revisions.get(run_id)
        if run is None or revision is None:
            return None
        changes = self._c.total_changes
        return Fence(self._c, changes, self.data_version(), left, run, revision)
