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
from collections.abc import Callable
from typing import TypeVar

from stepline.engine import _sqlite_schema as schema
from stepline.engine._sqltx import SqlTx

T = TypeVar("T")


class SqliteStore:
    """A ``Store`` on one SQLite file (or ``:memory:``).

    Args:
        path: the database file; parent directories are created.
        synchronous: SQLite's ``synchronous`` pragma. ``NORMAL`` (default) survives a
            process crash; ``FULL`` also survives power loss, at an fsync per commit.
    """

    def __init__(self, path: str | pathlib.Path, *, synchronous: str = "NORMAL") -> None:
        self.path = str(path)
        self.synchronous = synchronous
        self._memory = self.path == ":memory:"
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="stepline-db")
        self._readers = concurrent.futures.ThreadPoolExecutor(
            2, thread_name_prefix="stepline-db-read"
        )
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._write_conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA foreign_keys = OFF")
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
        """Run ``work`` in one ``BEGIN IMMEDIATE`` transaction on the writer thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, self._atomic_sync, work)

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

    def subscribe(self, notify: Callable[[str], None]) -> None:
        """SQLite has no notifications: processes sharing a file poll."""


class SqliteTx(SqlTx):
    """``Tx`` over one SQLite connection with a ``BEGIN IMMEDIATE`` transaction open."""
