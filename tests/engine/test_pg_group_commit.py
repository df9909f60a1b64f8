"""Group commit on Postgres: write transactions queued while the writers are busy commit as
one, and one caller's failure never fails another's (``_store/pg_writers.py``).

With 8 runs in flight a transaction per answer, each on a thread of its own, spends most of
its time waiting for the GIL between statements: grouping cuts the engine's CPU a step by
a quarter.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
import pytest

from stepline.engine._model import Job, JobKind
from stepline.engine._store.pg_tx import PostgresTx
from stepline.engine._store.pg_writers import Reconnect, Writers
from stepline.engine._store.postgres import PostgresStore
from tests._support.aio import arun
from tests._support.databases import postgres_schema

pytestmark = [pytest.mark.postgres]

Work = Callable[[PostgresTx], Any]


def _txid(tx: PostgresTx) -> int:
    return int(tx.execute("SELECT txid_current()").fetchone()[0])


def _enqueue(job_id: str) -> Work:
    def work(tx: PostgresTx) -> int:
        tx.queue.enqueue(Job(job_id=job_id, kind=JobKind.EXECUTE, available_at=0.0))
        return _txid(tx)

    return work


class Gate:
    """Works that hold a writer each until ``open``: what queues meanwhile forms a group."""

    def __init__(self) -> None:
        self.entered = threading.Semaphore(0)
        self._open = threading.Event()

    def work(self, tx: PostgresTx) -> int:
        self.entered.release()
        assert self._open.wait(10), "the gate was never opened"
        return _txid(tx)

    def open(self) -> None:
        self._open.set()


async def _with_writers_held(
    store: PostgresStore, works: Sequence[Work], writers: int = 2
) -> tuple[list[Any], list[Any]]:
    """Hold every writer, queue ``works``, let go: (the gates' results, the works')."""
    gate = Gate()
    held = []
    for _ in range(writers):  # one at a time: queued together, they would form one group
        held.append(asyncio.ensure_future(store.atomic(gate.work)))
        assert await asyncio.to_thread(gate.entered.acquire, True, 10)
    queued = [asyncio.ensure_future(store.atomic(work)) for work in works]
    await asyncio.sleep(0.05)
    gate.open()
    gates = await asyncio.gather(*held)
    return gates, list(await asyncio.gather(*queued, return_exceptions=True))


def _jobs(store: PostgresStore) -> set[str]:
    def read(tx: PostgresTx) -> set[str]:
        return {str(row[0]) for row in tx.execute("SELECT job_id FROM jobs").fetchall()}

    return store.read_blocking(read)


def _scenario(body: Callable[[PostgresStore], Any]) -> None:
    async def run(url: str) -> None:
        store = PostgresStore(url, writers=2)
        await store.open()
        try:
            await body(store)
        finally:
            await store.close()

    with postgres_schema("group") as url:
        arun(run(url))


def test_transactions_queued_behind_busy_writers_commit_as_one() -> None:
    async def body(store: PostgresStore) -> None:
        gates, txids = await _with_writers_held(store, [_enqueue(f"j{i}") for i in range(6)])
        assert len(set(txids)) == 1, f"6 queued transactions committed as {len(set(txids))}"
        assert not set(txids) & set(gates)
        assert _jobs(store) == {f"j{i}" for i in range(6)}

    _scenario(body)


def test_a_failing_work_fails_alone_and_the_rest_of_its_group_commits() -> None:
    attempts: dict[str, int] = {"a": 0, "b": 0}

    def counted(name: str) -> Work:
        inner = _enqueue(name)

        def work(tx: PostgresTx) -> int:
            attempts[name] += 1
            return inner(tx)

        return work

    def bad(tx: PostgresTx) -> None:
        _enqueue("bad")(tx)  # written, then rolled back with its error
        raise ValueError("this caller's mistake")

    async def body(store: PostgresStore) -> None:
        _, (a, failed, b) = await _with_writers_held(store, [counted("a"), bad, counted("b")])
        assert isinstance(failed, ValueError)
        assert str(failed) == "this caller's mistake"
        assert isinstance(a, int)
        assert isinstance(b, int)
        assert a != b  # each alone, committed
        # a ran in the group (rolled back with it), then alone; b's turn never came in it
        assert attempts == {"a": 2, "b": 1}
        assert _jobs(store) == {"a", "b"}

    _scenario(body)


def test_at_most_writers_transactions_run_at_once() -> None:
    lock, running, most = threading.Lock(), [0], [0]

    def slow(tx: PostgresTx) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        return _txid(tx)

    async def body(store: PostgresStore) -> None:
        txids = await asyncio.gather(*(store.atomic(slow) for _ in range(20)))
        assert most[0] <= 2
        assert len(set(txids)) < 20  # some of them grouped

    _scenario(body)


# -- the fallbacks, on a transaction that can fail on demand ------------------------------


class FakeTransaction:
    """Runs works in order. ``fail_commit``: loses the COMMIT of every group of more than
    one, with psycopg's own error (``faults.classify``: unreachable); ``lose``: that many
    transactions lose their connection before COMMIT (``Reconnect``)."""

    def __init__(self, fail_commit: bool = False, lose: int = 0) -> None:
        self.calls: list[tuple[int, int]] = []  # (connection, works)
        self.fail_commit = fail_commit
        self.lose = lose

    def __call__(self, conn: int, works: Sequence[Callable[[Any], Any]]) -> list[Any]:
        self.calls.append((conn, len(works)))
        if self.lose:
            self.lose -= 1
            raise Reconnect(psycopg.OperationalError("terminating connection"))
        results = [work(None) for work in works]
        if self.fail_commit and len(works) > 1:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return results


class Connections:
    """A pool handing out numbered connections."""

    def __init__(self) -> None:
        self.given = 0

    @contextlib.contextmanager
    def checkout(self) -> Iterator[int]:
        self.given += 1
        yield self.given


def _run_queued(
    transaction: FakeTransaction, works: list[Callable[[Any], Any]], lose: int = 0
) -> list[Any]:
    """Queue ``works`` while the one writer is held, then let it go; the ``lose`` next
    transactions after the held one lose their connection before COMMIT."""
    release = threading.Event()
    writers = Writers(transaction, Connections().checkout, _executor(), writers=1)

    async def run() -> list[Any]:
        held = asyncio.ensure_future(writers.run(lambda _: release.wait(10)))
        await asyncio.sleep(0.05)
        transaction.lose = lose
        queued = [asyncio.ensure_future(writers.run(work)) for work in works]
        release.set()
        await held
        return list(await asyncio.gather(*queued, return_exceptions=True))

    return arun(run())


def _executor() -> Any:
    return concurrent.futures.ThreadPoolExecutor(2)


def test_a_database_fault_in_a_group_fails_every_caller_and_runs_nothing_again() -> None:
    # a COMMIT lost (outcome unknown), or a cut database (each alone would wait out the
    # pool's checkout timeout again): every caller gets the fault, once
    transaction = FakeTransaction(fail_commit=True)
    ran: list[int] = []
    outcomes = _run_queued(transaction, [lambda _, i=i: ran.append(i) for i in range(3)])
    assert [type(o) for o in outcomes] == [psycopg.OperationalError] * 3
    assert ran == [0, 1, 2]  # once each: whether they committed is unknown
    assert transaction.calls == [(1, 1), (2, 3)]


def test_a_group_whose_connection_was_lost_before_commit_runs_again_on_a_new_one() -> None:
    transaction = FakeTransaction()
    ran: list[int] = []
    works = [lambda _, i=i: ran.append(i) or i for i in range(3)]
    outcomes = _run_queued(transaction, works, lose=2)  # the group, then its first retry
    assert outcomes == [0, 1, 2]
    assert transaction.calls == [(1, 1), (2, 3), (3, 3), (4, 3)]  # a new connection each
    assert ran == [0, 1, 2]


def test_one_work_alone_gets_its_own_error_once() -> None:
    transaction, calls = FakeTransaction(), [0]

    def bad(_: object) -> None:
        calls[0] += 1
        raise KeyError("nope")

    (outcome,) = _run_queued(transaction, [bad])
    assert isinstance(outcome, KeyError)
    assert calls == [1]


def test_callers_go_on_before_their_connection_is_back_in_the_pool() -> None:
    # returning a connection to the pool is not on the callers' path: a started run's
    # first call goes out while the writer hands its connection back
    answered = threading.Event()
    seen: list[bool] = []

    @contextlib.contextmanager
    def checkout() -> Iterator[int]:
        yield 1
        seen.append(answered.wait(2))  # the caller already has its result

    executor = _executor()
    writers = Writers(FakeTransaction(), checkout, executor, writers=1)

    async def run() -> Any:
        result = await writers.run(lambda _: 7)
        answered.set()
        return result

    assert arun(run()) == 7
    executor.shutdown(wait=True)
    assert seen == [True]


def test_writers_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Writers(FakeTransaction(), Connections().checkout, _executor(), writers=0)


def test_a_blocking_caller_runs_its_transaction_on_its_own_thread_when_a_writer_is_free() -> None:
    async def body(store: PostgresStore) -> None:
        def where(tx: PostgresTx) -> str:
            _enqueue("mine")(tx)
            return threading.current_thread().name

        caller = threading.Thread(target=lambda: ran.append(store.atomic_blocking(where)))
        ran: list[str] = []
        caller.start()
        await asyncio.to_thread(caller.join, 10)
        assert ran == [caller.name]  # no hand-off to a pool thread and back
        assert _jobs(store) == {"mine"}

    _scenario(body)


def test_a_blocking_caller_joins_the_group_of_a_busy_writer() -> None:
    async def body(store: PostgresStore) -> None:
        txids: list[int] = []

        def blocked() -> None:
            txids.append(store.atomic_blocking(_enqueue("from a thread")))

        async def queued_with_a_thread() -> list[Any]:
            caller = threading.Thread(target=blocked)
            caller.start()
            await asyncio.sleep(0.05)  # queued behind the held writers
            loop_side = await store.atomic(_enqueue("from the loop"))
            await asyncio.to_thread(caller.join, 10)
            return [loop_side]

        gate = Gate()
        held = []
        for _ in range(2):
            held.append(asyncio.ensure_future(store.atomic(gate.work)))
            assert await asyncio.to_thread(gate.entered.acquire, True, 10)
        waiting = asyncio.ensure_future(queued_with_a_thread())
        await asyncio.sleep(0.1)
        gate.open()
        await asyncio.gather(*held)
        (loop_side,) = await waiting
        assert txids == [loop_side]  # one transaction for both
        assert _jobs(store) == {"from a thread", "from the loop"}

    _scenario(body)


# -- the same faults on a real Postgres: the backend terminated from another connection ----


def _terminate_when(
    url: str, pid: list[int], query: str, stop: threading.Event
) -> threading.Thread:
    """A thread that terminates the backend ``pid[0]`` once it shows ``query`` running
    (alone, or as one statement of a simple query of several: a ``COMMIT`` goes with the
    writes nobody reads)."""

    def watch() -> None:
        with psycopg.connect(url, autocommit=True) as admin:
            while not stop.is_set():
                if pid:
                    row = admin.execute(
                        "SELECT query FROM pg_stat_activity WHERE pid = %s AND state = 'active'",
                        (pid[0],),
                    ).fetchone()
                    texts = [] if row is None else row[0].upper().split(";")
                    if any(text.strip().startswith(query) for text in texts):
                        admin.execute("SELECT pg_terminate_backend(%s)", (pid[0],))
                        return
                time.sleep(0.005)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_a_real_commit_lost_fails_every_caller_of_its_group_once() -> None:
    """COMMIT takes a second (a deferred constraint trigger sleeps), and the backend is
    terminated while it runs: whether it committed is unknown to the engine, so every
    caller of the group gets the driver's error and no work runs again."""
    stop = threading.Event()
    ran: list[int] = []
    pid: list[int] = []

    def slow_commit(tx: PostgresTx) -> None:
        pid.append(int(tx.execute("SELECT pg_backend_pid()").fetchone()[0]))
        tx.execute("INSERT INTO slow_commit VALUES (1)")
        ran.append(-1)

    def work(i: int) -> Work:
        def enqueue(tx: PostgresTx) -> int:
            ran.append(i)
            return int(_enqueue(f"lost{i}")(tx))

        return enqueue

    async def body(store: PostgresStore, url: str) -> None:
        watcher = _terminate_when(url, pid, "COMMIT", stop)
        try:
            _, outcomes = await _with_writers_held(store, [slow_commit, work(0), work(1)])
        finally:
            stop.set()
            watcher.join(5)
        assert all(isinstance(o, psycopg.OperationalError) for o in outcomes), outcomes
        assert len({id(o) for o in outcomes}) == 1, "the one lost COMMIT's error, for each"
        assert sorted(ran) == [-1, 0, 1], "each work ran once: none ran again"
        assert len(pid) == 1
        assert _jobs(store) == set(), "the terminated COMMIT wrote nothing"

    _real_scenario(body)


def test_a_real_connection_lost_before_commit_runs_the_group_again_on_a_new_one() -> None:
    """The first work of a group has its backend terminated before COMMIT: nothing was
    written, so the whole group runs again on a new connection and every caller gets its
    result; each job is written once."""
    stop = threading.Event()
    pids: list[int] = []
    attempts: list[int] = []

    def first(tx: PostgresTx) -> int:
        pids.append(int(tx.execute("SELECT pg_backend_pid()").fetchone()[0]))
        attempts.append(pids[-1])
        if len(attempts) == 1:  # the first attempt: wait for the backend to be gone
            tx.execute("SELECT pg_sleep(5)")
        return int(_enqueue("again0")(tx))

    async def body(store: PostgresStore, url: str) -> None:
        watcher = _terminate_when(url, pids, "SELECT PG_SLEEP", stop)
        try:
            works = [first, _enqueue("again1"), _enqueue("again2")]
            _, outcomes = await _with_writers_held(store, works)
        finally:
            stop.set()
            watcher.join(5)
        assert all(isinstance(o, int) for o in outcomes), outcomes
        assert len(set(outcomes)) == 1, "the group committed as one transaction"
        assert len(attempts) == 2, attempts
        assert attempts[0] != attempts[1], "the group ran again on a new connection"
        assert _jobs(store) == {"again0", "again1", "again2"}

    _real_scenario(body)


def _real_scenario(body: Callable[[PostgresStore, str], Any]) -> None:
    async def run(url: str) -> None:
        store = PostgresStore(url, writers=2)
        await store.open()
        try:
            await body(store, url)
        finally:
            await store.close()

    with postgres_schema("lost") as url:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("CREATE TABLE slow_commit (n int)")
            admin.execute(
                "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$"
            )
            admin.execute(
                "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON slow_commit "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()"
            )
        arun(run(url))
