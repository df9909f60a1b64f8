"""SQLite small transactions inline: ``atomic(small=True)`` commits on the loop's thread
when the writer's role is free and a commit needs no fsync, else queues for the writer
thread; the loop never waits for another connection's write lock; in that mode SQLite
does not checkpoint by itself and the writer thread does once ``wal.LOG_BYTES`` of pages
are pending. A new file gets ``sqlite.PAGE_SIZE`` pages; an existing one keeps its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from stepline.engine._store import Tx
from stepline.engine._store.faults import classify
from stepline.engine._store.sqlite import PAGE_SIZE, SqliteStore, _busy
from stepline.engine._store.wal import LOG_BYTES, WalKeeper
from tests._support.aio import arun
from tests._support.polling import await_until

from .test_store_contract import run_record


class Boom(Exception):
    pass


@contextlib.asynccontextmanager
async def opened_at(path: str, **options: Any) -> AsyncIterator[SqliteStore]:
    """An open store past its first WAL check (due at once after opening), role free."""
    store = SqliteStore(path, wal_every=600.0, **options)
    await store.open()
    try:
        await store.atomic(lambda tx: None)
        await idle(store)
        yield store
    finally:
        await store.close()


async def idle(store: SqliteStore) -> None:
    await await_until(lambda: not store._draining, timeout=10, message="the writer role free")


def insert(run_id: str, threads: list[threading.Thread]) -> Callable[[Tx], bool]:
    def work(tx: Tx) -> bool:
        threads.append(threading.current_thread())
        return tx.insert_run(run_record(run_id))

    return work


def on_writer(thread: threading.Thread) -> bool:
    name = thread.name
    return name.startswith("stepline-db") and not name.startswith("stepline-db-read")


async def stored(store: SqliteStore, *ids: str) -> list[bool]:
    def read(tx: Tx) -> list[bool]:
        return [tx.get_run(i) is not None for i in ids]

    return await store.read(read)


@contextlib.asynccontextmanager
async def role_held(store: SqliteStore, run_id: str) -> AsyncIterator[None]:
    """A thread inside ``atomic_blocking`` (holding the writer's role) until exit."""
    entered, release = threading.Event(), threading.Event()
    ran: list[threading.Thread] = []

    def slow(tx: Tx) -> bool:
        entered.set()
        assert release.wait(10)
        return insert(run_id, ran)(tx)

    worker = threading.Thread(target=store.atomic_blocking, args=(slow,))
    worker.start()
    try:
        await await_until(entered.is_set, timeout=10, message="the blocking work")
        yield
    finally:
        release.set()
        await asyncio.to_thread(worker.join, 10)
    assert ran == [worker]  # it committed on its own thread


def writer_conn(store: SqliteStore) -> sqlite3.Connection | None:
    return store._write_conn


def busy(store: SqliteStore) -> bool:
    return bool(store._write_conn and store._write_conn.in_transaction)


async def pragma(store: SqliteStore, name: str) -> int:
    """A pragma of the writer connection, read on the writer thread (between its drains)."""
    conn = writer_conn(store)
    assert conn is not None
    value = await asyncio.get_running_loop().run_in_executor(
        store._writer, lambda: conn.execute(f"PRAGMA {name}").fetchone()[0]
    )
    return int(value)


def test_small_runs_on_the_loop_thread_at_normal_and_others_on_the_writer(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with opened_at(str(tmp_path / "s.db")) as store:
            threads: list[threading.Thread] = []
            assert await store.atomic(insert("R1", threads), small=True)
            assert threads == [threading.current_thread()]  # the loop's own thread
            assert not store._draining
            assert await store.atomic(insert("R2", threads))
            assert on_writer(threads[1]), threads[1].name
            assert await stored(store, "R1", "R2", "R3") == [True, True, False]

    arun(scenario())


@pytest.mark.parametrize(("where", "synchronous"), [("file", "FULL"), ("memory", "NORMAL")])
def test_small_goes_to_the_writer_at_full_and_in_memory(
    tmp_path: Path, where: str, synchronous: str
) -> None:
    path = str(tmp_path / "s.db") if where == "file" else ":memory:"

    async def scenario() -> None:
        async with opened_at(path, synchronous=synchronous) as store:
            threads: list[threading.Thread] = []
            for n in range(3):
                assert await store.atomic(insert(f"R{n}", threads), small=True)
            assert all(on_writer(t) for t in threads), [t.name for t in threads]
            assert await stored(store, "R0", "R1", "R2") == [True, True, True]

    arun(scenario())


def test_a_held_write_lock_never_blocks_the_loop(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")

    async def scenario() -> None:
        async with opened_at(path) as store:
            loop = asyncio.get_running_loop()
            other = sqlite3.connect(path, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")  # another process's writer, say
                threads: list[threading.Thread] = []
                started = loop.time()
                task = asyncio.create_task(store.atomic(insert("R1", threads), small=True))
                for _ in range(5):  # the loop keeps turning while the transaction waits
                    await asyncio.sleep(0.01)
                # with the loop blocked in BEGIN IMMEDIATE these ticks would only come
                # after the 10 s busy timeout, and the transaction would have failed
                assert loop.time() - started < 5.0
                assert not task.done()
                assert threads == []
                other.execute("COMMIT")
            finally:
                other.close()
            assert await asyncio.wait_for(task, 10)
            assert len(threads) == 1
            assert on_writer(threads[0]), threads[0].name
            assert await stored(store, "R1") == [True]
            await idle(store)
            assert not busy(store)

    arun(scenario())


def test_small_transactions_in_a_row_set_no_busy_timeout_and_the_writer_still_waits(
    tmp_path: Path,
) -> None:
    """The busy timeout is zero for small transactions on the loop's thread (set once for
    a run of them, not around each) and the store's for the writer thread's, which still
    waits out another connection's write lock."""
    path = str(tmp_path / "s.db")

    async def scenario() -> None:
        async with opened_at(path) as store:
            conn = writer_conn(store)
            assert conn is not None
            sent: list[str] = []
            conn.set_trace_callback(sent.append)
            threads: list[threading.Thread] = []
            for n in range(4):
                assert await store.atomic(insert(f"S{n}", threads), small=True)
            assert threads == [threading.current_thread()] * 4
            pragmas = [sql for sql in sent if sql.startswith("PRAGMA")]
            assert pragmas == ["PRAGMA busy_timeout = 0"], pragmas
            assert sent.count("BEGIN IMMEDIATE") == 4
            other = sqlite3.connect(path, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")  # another process's writer
                task = asyncio.create_task(store.atomic(insert("W", threads)))
                await await_until(
                    lambda: "PRAGMA busy_timeout = 10000" in sent,
                    timeout=10,
                    message="the writer thread's own busy timeout",
                )
                await asyncio.sleep(0.2)  # within its busy timeout: it waits, not fails
                assert not task.done()
                other.execute("COMMIT")
            finally:
                other.close()
            assert await asyncio.wait_for(task, 10)
            assert on_writer(threads[-1]), threads[-1].name
            conn.set_trace_callback(None)
            assert await stored(store, "S0", "S3", "W") == [True, True, True]

    arun(scenario())


def test_busy_is_told_by_its_code_or_else_its_message() -> None:
    # sqlite3's errors carry their code from Python 3.11; on 3.10 the message tells
    assert _busy(sqlite3.OperationalError("database is locked"))
    assert not _busy(sqlite3.OperationalError("database table is locked"))  # SQLITE_LOCKED
    conn = sqlite3.connect(":memory:")
    try:
        with pytest.raises(sqlite3.OperationalError, match="no such table") as caught:
            conn.execute("SELECT * FROM nowhere")
    finally:
        conn.close()
    assert not _busy(caught.value)


def test_a_small_transaction_queues_while_a_blocked_thread_holds_the_role(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with opened_at(str(tmp_path / "s.db")) as store:
            threads: list[threading.Thread] = []
            async with role_held(store, "B"):
                assert store._draining
                task = asyncio.create_task(store.atomic(insert("L", threads), small=True))
                # queued behind the role, where it would have run by now were it free
                await await_until(lambda: bool(store._queue), timeout=10, message="queued")
                assert not task.done()
                assert threads == []
            assert await asyncio.wait_for(task, 10)
            assert len(threads) == 1
            assert threads[0] is not threading.current_thread()
            assert on_writer(threads[0]), threads[0].name
            assert await stored(store, "B", "L") == [True, True]
            await idle(store)

    arun(scenario())


def test_suspend_waits_for_the_role_held_by_a_blocked_thread(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with opened_at(str(tmp_path / "s.db")) as store:
            async with role_held(store, "B"):
                # the role is held mid-transaction: suspend gives up, the file stays open
                resume = await asyncio.to_thread(store.suspend, 0.3)
                try:
                    assert writer_conn(store) is not None
                finally:
                    resume()  # a no-op here
            await idle(store)
            resume = await asyncio.to_thread(store.suspend, 10.0)
            assert writer_conn(store) is None
            assert store._draining
            threads: list[threading.Thread] = []
            task = asyncio.create_task(store.atomic(insert("L", threads), small=True))
            await await_until(lambda: bool(store._queue), timeout=10, message="queued")
            assert not task.done()
            assert threads == []
            resume()
            assert await asyncio.wait_for(task, 10)
            assert len(threads) == 1
            assert on_writer(threads[0]), threads[0].name
            assert await stored(store, "B", "L") == [True, True]
            await idle(store)

    arun(scenario())


def test_suspend_takes_the_role_once_a_drain_handed_to_the_writer_ends(tmp_path: Path) -> None:
    """A blocked thread holds the role with another transaction queued behind it: when it
    commits it hands the queue to the writer's thread. Suspend (a fork) then closes the
    file as soon as that drain ends. Were it to wait for the role on the writer's thread
    itself, ahead of that drain, it would deadlock until its timeout, then fork with the
    file open (a hang of ``test_a_forked_child_starts_its_own_engine`` on CI)."""

    async def scenario() -> None:
        async with opened_at(str(tmp_path / "s.db")) as store:
            behind: list[threading.Thread] = []
            async with role_held(store, "B"):
                queued = threading.Thread(target=store.atomic_blocking, args=(insert("Q", behind),))
                queued.start()
                await await_until(lambda: bool(store._queue), timeout=10, message="queued")
                suspending = asyncio.create_task(asyncio.to_thread(store.suspend, 20.0))
                await asyncio.sleep(0.1)  # suspend is waiting for the role
            resume = await asyncio.wait_for(suspending, 5)  # not its 20 s timeout
            try:
                assert writer_conn(store) is None  # the file was closed for the fork
            finally:
                resume()
            await asyncio.to_thread(queued.join, 10)
            assert len(behind) == 1
            assert on_writer(behind[0]), behind  # the drain it was handed
            assert await stored(store, "B", "Q") == [True, True]
            await idle(store)

    arun(scenario())


def test_a_failing_small_transaction_keeps_nothing_and_gives_the_role_back(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with opened_at(str(tmp_path / "s.db")) as store:
            threads: list[threading.Thread] = []

            def failing(tx: Tx) -> None:
                insert("LOST", threads)(tx)
                raise Boom("no")

            with pytest.raises(Boom, match="no"):
                await store.atomic(failing, small=True)
            assert threads == [threading.current_thread()]
            assert not store._draining  # the role was given back
            assert not busy(store)
            assert await store.atomic(insert("KEPT", threads), small=True)
            assert threads[1] is threading.current_thread()  # inline again
            assert await stored(store, "LOST", "KEPT") == [False, True]

    arun(scenario())


@pytest.mark.slow
def test_the_wal_stays_bounded_under_inline_commits(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")

    async def scenario() -> None:
        async with opened_at(path) as store:
            wal = store.wal
            assert wal is not None
            assert wal.manual
            assert await pragma(store, "wal_autocheckpoint") == 0
            page = await pragma(store, "page_size")
            frames = wal.frames
            assert frames == LOG_BYTES // page
            # each run is ~8 frames (table and index pages), ~48,000 in all: without a
            # checkpoint the log would pass 50 MB. With one once ``frames`` are pending
            # (wal_every is 600 s here: only the frame count can make one due), the log
            # restarts and holds that many plus the commits made meanwhile; twice that is
            # a generous bound (frame: page plus a 24-byte header; 32-byte header)
            bound = 2 * frames * (page + 24) + 32
            threads: list[threading.Thread] = []
            prev, drops, most = wal.pending(), 0, 0
            for n in range(6000):
                assert await store.atomic(insert(f"R{n:04}", threads), small=True)
                now = wal.pending()
                drops, most, prev = drops + (now < prev), max(most, now), now
                assert os.path.getsize(f"{path}-wal") < bound, n
            assert drops >= 3  # checkpoints copied the log back (only they lower it)
            assert most < 2 * frames
            assert sum(t is threading.current_thread() for t in threads) > 4000  # inline
            await idle(store)
            assert wal.pending() < frames
            assert await pragma(store, "wal_autocheckpoint") == 0
            assert (await stored(store, "R0000", "R5999")) == [True, True]

        async with opened_at(str(tmp_path / "full.db"), synchronous="FULL") as full:
            assert full.wal is not None
            assert not full.wal.manual
            assert await pragma(full, "wal_autocheckpoint") == 1000  # SQLite's own default

    arun(scenario())


def test_pending_matches_the_frames_sqlite_reports(tmp_path: Path) -> None:
    path = str(tmp_path / "plain.db")
    conn = sqlite3.connect(path, isolation_level=None)
    reader = sqlite3.connect(path, isolation_level=None)
    keeper = WalKeeper(path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("CREATE TABLE t (x TEXT)")

        def commits(count: int) -> None:
            for _ in range(count):
                conn.execute("INSERT INTO t VALUES (?)", ("x" * 3000,))

        def checkpoint() -> tuple[int, int]:
            busy, log, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            assert busy == 0
            return int(log), int(copied)

        for count in (20, 5):  # then the log starts over: every frame was copied back
            commits(count)
            before = keeper.pending()
            log, copied = checkpoint()
            assert count <= before == log < 10 * count  # not counting the first round
            assert copied == log
            assert keeper.pending() == 0
        # a reader's snapshot pins part of the log: only the older frames are copied
        commits(3)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM t").fetchone()
        commits(4)
        log, copied = checkpoint()
        assert 0 < copied < log
        assert keeper.pending() == log - copied
        reader.execute("COMMIT")
        log, copied = checkpoint()
        assert copied == log
        assert keeper.pending() == 0
    finally:
        keeper.close()
        reader.close()
        conn.close()


def test_a_new_file_gets_small_pages_and_an_existing_one_keeps_its_own(tmp_path: Path) -> None:
    old = str(tmp_path / "old.db")
    conn = sqlite3.connect(old, isolation_level=None)
    conn.execute("PRAGMA page_size = 4096")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE made_before (x)")  # the page size is fixed from here on
    conn.close()

    async def scenario() -> None:
        async with opened_at(str(tmp_path / "new.db")) as new:
            assert await pragma(new, "page_size") == PAGE_SIZE == 1024
        async with opened_at(old) as existing:
            assert await pragma(existing, "page_size") == 4096
            assert await existing.atomic(insert("R1", []), small=True)
            assert await stored(existing, "R1") == [True]

    arun(scenario())


def test_a_relative_path_is_the_same_file_after_the_working_directory_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store opened as ``data/s.db`` reopens that file after a fork (``suspend`` and
    ``resume``) even if the process changed its working directory meanwhile."""
    first, elsewhere = tmp_path / "first", tmp_path / "elsewhere"
    first.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(first)

    async def scenario() -> None:
        async with opened_at(os.path.join("data", "s.db")) as store:
            assert await store.atomic(insert("A", []))
            await idle(store)
            os.chdir(elsewhere)
            resume = await asyncio.to_thread(store.suspend, 10.0)
            resume()  # reopens first/data/s.db, not elsewhere/data/s.db
            assert writer_conn(store) is not None
            assert await store.atomic(insert("B", []))
            assert await stored(store, "A", "B") == [True, True]
            await idle(store)

    arun(scenario())
    assert (first / "data" / "s.db").exists()
    assert not (elsewhere / "data").exists()


def test_a_failed_reopen_after_a_fork_fails_each_transaction_with_the_drivers_fault(
    tmp_path: Path,
) -> None:
    """A reopen that failed leaves no half-open store: every transaction then fails with
    the reopen's own error, which ``faults.classify`` names (the worker rides it out
    quietly while the embedded engine stops), not a bare assertion."""
    folder = tmp_path / "gone"
    folder.mkdir()

    async def go() -> None:
        async with opened_at(str(folder / "e.db")) as store:
            resume = store.suspend()
            for path in folder.iterdir():
                path.unlink()
            folder.rmdir()
            with pytest.raises(sqlite3.OperationalError):
                resume()
            for small in (False, True):
                with pytest.raises(sqlite3.OperationalError) as caught:
                    await store.atomic(lambda tx: None, small=small)
                assert classify(caught.value) == "unreachable"

    arun(go())
