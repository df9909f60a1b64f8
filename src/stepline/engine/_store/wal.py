"""SQLite's write-ahead log: checkpointed when readers let go, its size reported.

Every commit is appended to ``<db>-wal``; a checkpoint copies the pages back into the
database file. SQLite checkpoints by itself every 1,000 pages (~4 MB), but a checkpoint
cannot copy past the snapshot of the oldest open read transaction, and the log starts
over from its beginning only once no reader needs it. A reader held open for long (a
dashboard's connection inside a transaction, a ``sqlite3`` shell, a file copy posing as
a backup) pins the log, which then grows by every commit (on 4 KB pages ~150 KB per run:
44.9 MB for 300 runs during a 20 s read, against 4.2 MB without; 57-115 KB a 10-step run
on the 1 KB pages of a file made now) and stays that size on disk.

``WalKeeper`` runs on the store's writer thread between transactions (so it never waits
for this engine's own writes), at most every ``every`` seconds, and, where the writer's
connection does not checkpoint by itself (``manual``: its small transactions may commit
on the event loop's thread, which must not wait for a checkpoint's fsyncs), once
``LOG_BYTES`` of pages in the log wait to be copied back, as SQLite's own checkpoints do
at 1,000 pages (the frames waiting are read from the ``-shm`` file's WAL-index header:
``mxFrame`` less ``nBackfill``, in the documented layout of
https://www.sqlite.org/walformat.html, ~1 µs):

* ``PRAGMA wal_checkpoint(PASSIVE)``: copies what no reader pins, waits for no one;
* when the log file is over ``limit`` bytes and that checkpoint copied every frame (the
  readers have let go), ``PRAGMA wal_checkpoint(TRUNCATE)`` with a zero busy timeout:
  the file goes back to zero bytes, or, if a reader still holds an old snapshot, nothing
  happens and the next round tries again;
* ``journal_size_limit`` is ``limit`` too, so SQLite trims an oversized log itself when it
  starts it over.

It logs once when the log is over the limit and pinned (at most every ``REPEAT_SECONDS``)
and once when it is truncated. ``size`` (a ``stat``) feeds ``stepline_sqlite_wal_bytes``
and ``/ready``. See docs/operations.md.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import struct
import time

logger = logging.getLogger("stepline.engine")
#: The WAL size above which the engine truncates the log once readers let go.
LIMIT = 16 * 1024 * 1024
#: Seconds between two checks.
EVERY = 5.0
#: Bytes of pages in the log not yet copied back that make a checkpoint due when SQLite
#: does not checkpoint by itself: three times its own threshold at 4 KB pages (~12 MB of
#: log, under ``LIMIT``). A checkpoint copies each page once however often it changed,
#: and a step-by-step run rewrites the same few pages (the queue's, the run's): 3,000
#: frames of 4 KB cost a third as many checkpoints (and their fsyncs) as 1,000 for about
#: the same pages copied each (the checkpoint's share of a step: 4.2% -> 1.5%). In bytes,
#: not frames: a file of 1 KB pages (``sqlite.PAGE_SIZE``) waits for 12,288 frames, one of
#: 4 KB pages made before still for 3,072 (at 3,000 frames of 1 KB: -2% steps/s paired).
LOG_BYTES = 12 * 1024 * 1024
#: Seconds between two reads of the frame counts by ``due`` (a ``pread`` each).
PEEK = 0.002
#: Whether this platform can read the frame counts (``os.pread``: not on Windows, where
#: SQLite keeps checkpointing by itself and every commit stays on the writer thread).
COUNTS = hasattr(os, "pread")
#: At most one "pinned" log line in this many seconds.
REPEAT_SECONDS = 300.0


class WalKeeper:
    """Checkpoints one SQLite file's WAL (called on its writer thread).

    Args:
        path: the database file.
        limit: bytes above which the log is truncated when no reader pins it.
        every: seconds between two checks.
        busy_ms: the writer connection's busy timeout, restored after a truncation attempt.
    """

    def __init__(
        self, path: str, *, limit: int = LIMIT, every: float = EVERY, busy_ms: int = 10_000
    ) -> None:
        self.wal_path = f"{path}-wal"
        self.limit = limit
        self.every = every
        self.busy_ms = busy_ms
        self._next = 0.0
        self._peek = 0.0  # when ``due`` reads the frame counts again
        self._full = False  # they made a checkpoint due: until it runs
        self._warned = -REPEAT_SECONDS
        self.manual = False
        self._shm_path = f"{path}-shm"
        self._shm: int | None = None  # the -shm file, open to read the log's frame counts
        self.page = 4096  # the database's page size (``setup`` reads it)
        #: checkpoints that truncated the log (tests and the metrics read it)
        self.truncations = 0

    def setup(self, conn: sqlite3.Connection, *, manual: bool = False) -> None:
        """Settings of a new writer connection; ``manual``: SQLite does not checkpoint
        after its commits, ``check`` does once ``frames`` wait."""
        conn.execute(f"PRAGMA journal_size_limit = {int(self.limit)}")
        self.page = int(conn.execute("PRAGMA page_size").fetchone()[0])
        self.manual = manual
        self.close()  # a new connection: the -shm file may be another by now
        if manual:
            conn.execute("PRAGMA wal_autocheckpoint = 0")

    def close(self) -> None:
        """Let go of the ``-shm`` file."""
        if self._shm is not None:
            os.close(self._shm)
            self._shm = None

    def due(self) -> bool:
        """Whether ``check`` would checkpoint now (after each commit: the frame counts
        are read at most every ``PEEK`` seconds, a commit adds a few frames, the threshold
        is thousands)."""
        now = time.monotonic()
        if self._full or now >= self._next:
            return True
        if not self.manual or now < self._peek:
            return False
        self._peek = now + PEEK
        self._full = self.pending() >= self.frames  # until ``check`` checkpoints
        return self._full

    @property
    def frames(self) -> int:
        """Frames waiting to be copied back that make a checkpoint due (``LOG_BYTES``)."""
        return max(LOG_BYTES // self.page, 1)

    def pending(self) -> int:
        """Frames of the log not yet copied back into the database (0 if unknown)."""
        try:
            if self._shm is None:
                self._shm = os.open(self._shm_path, os.O_RDONLY)
            header = os.pread(self._shm, 100, 0)
        except OSError:
            return 0
        if len(header) < 100:
            return 0
        (frames,) = struct.unpack_from("=I", header, 16)  # mxFrame
        (copied,) = struct.unpack_from("=I", header, 96)  # nBackfill
        return max(int(frames) - int(copied), 0)

    def size(self) -> int:
        """The log file's size in bytes (0 when there is none)."""
        try:
            return os.stat(self.wal_path).st_size
        except OSError:
            return 0

    def check(self, conn: sqlite3.Connection) -> None:
        """Checkpoint if one is due; never raises (a failed checkpoint is tried again)."""
        if conn.in_transaction or not self.due():
            return
        now = time.monotonic()
        self._full = False
        self._next = now + self.every
        try:
            self._checkpoint(conn, now)
        except sqlite3.Error as exc:  # busy, full, read-only: the guard reports those
            logger.debug("WAL checkpoint failed: %s", exc)

    def _checkpoint(self, conn: sqlite3.Connection, now: float) -> None:
        row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        size = self.size()
        if size <= self.limit:
            return
        frames, copied = (int(row[1]), int(row[2])) if row else (-1, -2)
        if frames >= 0 and copied == frames:  # every frame is in the database: try to reset
            conn.execute("PRAGMA busy_timeout = 0")
            try:
                row = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                conn.execute(f"PRAGMA busy_timeout = {self.busy_ms}")
            if row is not None and int(row[0]) == 0:
                self.truncations += 1
                logger.info(
                    "checkpointed the SQLite WAL: %.1f MB -> %.1f MB (its readers let go)",
                    size / 1e6, self.size() / 1e6,
                )  # fmt: skip
                return
        if now - self._warned >= REPEAT_SECONDS:
            self._warned = now
            logger.warning(
                "the SQLite WAL is %.1f MB (limit %.1f MB): a long-lived reader keeps it from "
                "being checkpointed; it is truncated once readers let go (docs/operations.md)",
                size / 1e6, self.limit / 1e6,
            )  # fmt: skip
