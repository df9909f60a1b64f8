"""The Postgres store: several engine processes on one database, no coordinator.

Transactions run on a psycopg 3 connection pool, each on a worker thread, in READ
COMMITTED. What keeps concurrent nodes correct:

* a write transaction reads a run ``FOR UPDATE``, so everything touching one run is
  serialised (the SQLite store gets the same from its single writer);
* flow-control state (rate and throttle cells, singletons, debounce and batch buckets,
  concurrency slots) is guarded by transaction-scoped advisory locks on its key;
* leasing takes due jobs ``FOR UPDATE SKIP LOCKED``, so nodes never wait on each other;
* deadlocks and serialization failures roll back and retry the whole unit of work;
* a commit that queued work sends ``NOTIFY``; every other node ``LISTEN``s and wakes
  its worker at once (polling stays as the fallback). The payload names the sending
  store, which ignores its own: the engine already knows what its commits queued and
  ended, and answering its own echo cost two transactions per step.

Behind a connection pooler (PgBouncer) ``pooler`` says what goes where: the transactions
to the pool, ``LISTEN`` and migrations to a session of their own, and what each
connection or transaction sends first.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import psycopg
import psycopg.errors
import psycopg_pool

from stepline.engine._store import pg_fence, pg_writers, schema_version
from stepline.engine._store import pooler as _pooler
from stepline.engine._store import postgres_schema as schema
from stepline.engine._store.pg_tx import Pending, PostgresTx
from stepline.engine._store.sql import run_in

T = TypeVar("T")
logger = logging.getLogger("stepline.engine")
CHANNEL = "stepline_jobs"
#: the channel a commit that published to a run's stream notifies, with the run id
STREAMS = "stepline_streams"
_RETRIES = 8
#: Seconds a transaction waits for a pooled connection, and for a new one to connect:
#: with the database gone, a request gets its 503 after this, not after psycopg's 30 s
#: (a pool this busy for that long is overloaded: a 503 says so too).
CHECKOUT_TIMEOUT = 5
#: Seconds the pool keeps trying to replace a lost connection before that try gives up
#: (the next checkout starts another). psycopg_pool doubles its wait after each failed
#: connect (1, 2, 4 ... s): a database back after n seconds away (a failover) could wait
#: up to n more for the pool's next try. Tries that end after a second keep the attempts
#: about a second apart however long the database was away.
RECONNECT_TIMEOUT = 1.0
#: Seconds a checkout waits at a time (``PostgresStore._connection``): psycopg_pool
#: starts a try to connect only when a checkout begins to wait, so a checkout waiting all
#: of ``CHECKOUT_TIMEOUT`` would outlast its one try and miss the database's return by up
#: to four seconds. Waiting in slices a little longer than a try, each slice starts the
#: next.
CHECKOUT_SLICE = RECONNECT_TIMEOUT + 0.25
_RETRYABLE = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)
_NOTIFY = "SELECT pg_notify(%s, %s)"
#: Logged when a connection dies during COMMIT: whether it committed is unknown, so the
#: error goes to the caller (a job's lease lapses and it runs again; an API call fails).
COMMIT_LOST = "database connection lost while committing; the outcome is unknown"


class PostgresStore:
    """A ``Store`` on a Postgres database.

    Args:
        url: a libpq URL or DSN (``postgresql://user@host:5432/db``).
        pool_size: connections kept open (the engine's transactions run on as many threads).
        writers: the most of them running write transactions at once; each commits the
            transactions queued meanwhile as one (``pg_writers``). Two keep the engine's
            process off its GIL's queue with many runs in flight and let a slow
            transaction never hold up every other.
        migrate: apply pending migrations on ``open`` (``stepline migrate`` does it alone).
        known_schema: the newest schema version to apply and accept (None: every
            migration this release has; ``EngineSettings.known_schema``).
        direct_url: Postgres itself, for ``LISTEN`` and migrations, when ``url`` is a
            pooler's (``pooler``: its pool mode; ``db_schema``: the tables' schema, set on
            each connection, or in each transaction behind a transaction pooler).
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        writers: int = 2,
        migrate: bool = True,
        known_schema: int | None = None,
        direct_url: str | None = None,
        pooler: _pooler.Pooler = "none",
        db_schema: str | None = None,
    ) -> None:
        self.url = url
        self.connections = _pooler.Connections(url, direct_url, pooler, db_schema)
        problem = _pooler.problem(self.connections, migrate=migrate)
        if problem is not None:
            raise ValueError(problem)
        #: what each transaction sends first (None, unless a schema behind a transaction
        #: pooler: a round trip more per transaction)
        self._begin = self.connections.on_begin
        self.migrate_on_open = migrate
        self.known_schema = known_schema
        self._pool = psycopg_pool.ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            timeout=CHECKOUT_TIMEOUT,
            reconnect_timeout=RECONNECT_TIMEOUT,
            kwargs={
                "autocommit": True,
                "connect_timeout": CHECKOUT_TIMEOUT,
                **self.connections.pool_options,
            },
            configure=self._configure,
            open=False,
            name="stepline",
        )
        self._threads = concurrent.futures.ThreadPoolExecutor(
            pool_size, thread_name_prefix="stepline-pg"
        )
        self._listener: threading.Thread | None = None
        self._subscribers: dict[str, list[Callable[[str], None]]] = {CHANNEL: [], STREAMS: []}
        self._closing = threading.Event()
        #: names this store's notifications, so that its listener skips their echo
        self._origin = secrets.token_hex(6)
        #: calls whose next answer may go as one statement (``pg_fence``)
        self._fences = pg_fence.Fences()
        self._writers = pg_writers.Writers(
            self._transaction, self._connection, self._threads, min(writers, pool_size)
        )

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection, waiting ``CHECKOUT_TIMEOUT`` seconds at most, in
        ``CHECKOUT_SLICE`` slices: each starts the pool's next try when it is below its
        size (a lost connection being replaced, the database away), so a transaction
        already waiting when the database comes back gets its connection within about a
        second of it. No more threads than connections check out (``_threads``): a
        slice waits for a connection being made, not for one in use.
        """
        pool = self._pool
        deadline = time.monotonic() + CHECKOUT_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            try:
                conn = pool.getconn(timeout=min(max(left, 0.001), CHECKOUT_SLICE))
                break
            except psycopg_pool.PoolTimeout:
                if left <= CHECKOUT_SLICE:
                    raise psycopg_pool.PoolTimeout(
                        f"couldn't get a connection after {CHECKOUT_TIMEOUT:.2f} sec"
                    ) from None
        try:
            with conn:  # as the pool's own checkout: ROLLBACK after an error
                yield conn
        finally:
            pool.putconn(conn)

    # -- lifecycle ------------------------------------------------------------------------

    def _open_sync(self) -> None:
        # one direct connection first: an unreachable database or an old schema fails in
        # seconds with libpq's own message, before the pool starts retrying
        with self._first() as conn:
            if self.migrate_on_open:
                schema.migrate(conn, self.known_schema)
            else:
                self._check_version(conn)
        self._pool.open(wait=True, timeout=30)
        if self.connections.session_url is not None:
            self._probe()

    @contextlib.contextmanager
    def _first(self) -> Iterator[psycopg.Connection[Any]]:
        """The connection ``open`` migrates or checks the schema on: a session, or
        (behind a transaction pooler with no direct URL, never migrating) one transaction."""
        if self.connections.session_url is not None:
            with self._session(connect_timeout=10) as conn:
                yield conn
            return
        options = self.connections.pool_options
        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10, **options)
        with conn, conn.transaction():
            if self._begin is not None:
                conn.execute(self._begin)
            yield conn

    def _session(self, **options: Any) -> psycopg.Connection[Any]:
        """A connection of its own to ``connections.session_url`` (Postgres, or a pooler
        lending whole sessions), in autocommit, with the schema set."""
        url = self.connections.session_url
        if url is None:  # a transaction pooler and no direct URL: no session to have
            raise RuntimeError(_pooler.problem(self.connections, migrate=True))
        conn = psycopg.connect(url, autocommit=True, **options)
        setup = self.connections.on_session
        if setup is not None:
            conn.execute(setup)
        return conn

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        """A new pooled connection's session settings (none behind a transaction pooler)."""
        setup = self.connections.on_connect
        if setup is not None:
            conn.execute(setup)

    def _probe(self) -> None:
        """Check that a ``NOTIFY`` committed on the pool reaches a ``LISTEN`` on the
        session URL: one behind a transaction pooler never does (nor one on another
        database), and nodes would wait for wake-ups that never come."""
        token = secrets.token_hex(8)
        with self._session(connect_timeout=10) as listener:
            listener.execute(f"LISTEN {_pooler.PROBE_CHANNEL}")
            with self._connection() as conn, conn.transaction():
                if self._begin is not None:
                    conn.execute(self._begin)
                conn.execute("SELECT pg_notify(%s, %s)", (_pooler.PROBE_CHANNEL, token))
            # closed before the connection: the generator holds its lock while open
            with contextlib.closing(listener.notifies(timeout=_pooler.PROBE_SECONDS)) as heard:
                if not any(message.payload == token for message in heard):
                    raise RuntimeError(_pooler.unheard(self.connections))

    def _check_version(self, conn: psycopg.Connection[Any]) -> None:
        try:
            row = conn.execute(schema_version.POSTGRES_QUERY).fetchone()
        except psycopg.errors.UndefinedTable:
            row = (0,)
        version = int(row[0]) if row else 0
        latest = schema_version.newest(len(schema.MIGRATIONS), self.known_schema)
        schema_version.check(version, latest)
        if version < latest:
            raise RuntimeError(
                f"the database schema is at version {version}, this engine needs "
                f"{latest}: run `stepline migrate --db ...` first"
            )

    async def open(self) -> None:
        """Open the pool and bring the schema up to date (unless ``migrate=False``)."""
        await asyncio.get_running_loop().run_in_executor(self._threads, self._open_sync)

    async def migrate(self) -> tuple[int, int]:
        """Apply pending migrations; returns ``(version before, version after)``."""

        def run() -> tuple[int, int]:
            with self._session() as conn:
                return schema.migrate(conn, self.known_schema)

        return await asyncio.get_running_loop().run_in_executor(self._threads, run)

    async def close(self) -> None:
        """Stop listening, close every connection and the threads."""
        self._closing.set()
        loop = asyncio.get_running_loop()
        listener = self._listener
        if listener is not None:
            await loop.run_in_executor(None, listener.join, 5)
        await loop.run_in_executor(self._threads, self._pool.close)
        self._threads.shutdown(wait=True)

    # -- transactions ---------------------------------------------------------------------

    def _transaction(
        self, conn: psycopg.Connection[Any], works: Sequence[Callable[[PostgresTx], Any]]
    ) -> list[Any]:
        """Run ``works`` in one transaction on ``conn``, each on a ``PostgresTx`` of its
        own; their results. Retried whole on deadlock. ``Reconnect`` when the connection
        is lost before ``COMMIT``; lost during ``COMMIT``, the error is raised (whether it
        committed is unknown)."""
        if len(works) == 1 and self._fences and self._begin is None:
            try:
                return [self._fences.answer(conn, works[0])]
            except pg_fence.Refused:
                pass  # nothing written: in a transaction, as ever
            except psycopg.OperationalError as exc:
                logger.warning("%s: %s", COMMIT_LOST, exc)  # the statement was its commit
                raise
        for attempt in range(_RETRIES):
            committing = False
            pending = Pending(conn, self._begin, batched=self.connections.binds_here)
            try:
                results, jobs, apps, streamed = [], False, False, set()
                try:
                    for work in works:
                        tx = PostgresTx(conn, pending=pending)
                        results.append(run_in(tx, work))
                        # jobs this node leased in the same transaction wake no one else
                        jobs = jobs or any(job not in tx.claimed for job in tx.queued)
                        apps = apps or tx.apps_changed
                        streamed |= tx.streamed
                    for what, changed in (("jobs", jobs), ("apps", apps)):
                        if changed:
                            pending.add(_NOTIFY, (CHANNEL, f"{what} {self._origin}"))
                    for run_id in sorted(streamed):
                        pending.add(_NOTIFY, (STREAMS, run_id))
                    committing = True
                    pending.commit()
                except BaseException:
                    pending.rollback()
                    raise
                if len(works) == 1:
                    self._fences.after(tx)
                return results
            except _RETRYABLE as exc:
                if attempt == _RETRIES - 1:
                    raise
                logger.debug("retrying a transaction after %s", type(exc).__name__)
            except psycopg.OperationalError as exc:
                # Lost before the commit was sent (a restart, a failover, a terminated
                # backend): nothing was written, so the work runs again on a healthy
                # connection. Lost during the commit, the outcome is unknown: raised.
                if committing and conn.broken:
                    logger.warning("%s: %s", COMMIT_LOST, exc)
                if committing or not conn.broken:
                    raise
                self._lost(exc)
                raise pg_writers.Reconnect(exc) from exc
        raise AssertionError("unreachable")

    def _lost(self, exc: Exception) -> None:
        """A pooled connection died: drop every dead one before trying again."""
        logger.warning("database connection lost (%s); retrying on a new one", exc)
        self._pool.check()

    async def atomic(self, work: Callable[[PostgresTx], T], *, small: bool = False) -> T:
        """Run ``work`` in one transaction on a writer thread; retried on deadlock.

        Group commit: transactions queued while the writers are busy commit together
        (``pg_writers``). ``small`` changes nothing: a commit waits for the server, never
        on the loop."""
        return await self._writers.run(work)

    def atomic_blocking(self, work: Callable[[PostgresTx], T]) -> T:
        """``atomic`` from a thread that may block (never the event loop's): run on it
        when a writer's place is free, else in the group of the writer that takes it."""
        return self._writers.run_blocking(work)

    def _read_sync(self, work: Callable[[PostgresTx], T]) -> T:
        for attempt in range(_RETRIES):
            with self._connection() as conn:
                conn.read_only = True  # "BEGIN READ ONLY": no round trip of its own
                try:
                    with conn.transaction():
                        if self._begin is not None:
                            conn.execute(self._begin)
                        return run_in(PostgresTx(conn, write=False), work)
                except psycopg.OperationalError as exc:
                    if not conn.broken or attempt == _RETRIES - 1:
                        raise
                    self._lost(exc)
                finally:
                    if not conn.broken:
                        conn.read_only = None  # back in the pool for writes too
        raise AssertionError("unreachable")

    async def read(self, work: Callable[[PostgresTx], T], *, small: bool = False) -> T:
        """Run ``work`` in a read-only transaction (``small`` changes nothing)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, self._read_sync, work)

    def read_blocking(self, work: Callable[[PostgresTx], T]) -> T:
        """``read`` on the calling thread (one that may block, never the event loop's)."""
        return self._read_sync(work)

    # -- wake-ups -------------------------------------------------------------------------

    def subscribe(self, notify: Callable[[str], None]) -> None:
        """Call ``notify("jobs" | "apps")`` (from a thread) when any node commits such work."""
        self._subscribe(CHANNEL, notify)

    def subscribe_streams(self, notify: Callable[[str], None]) -> None:
        """Call ``notify(run_id)`` (from a thread) when any node publishes to a run's stream."""
        self._subscribe(STREAMS, notify)

    def _subscribe(self, channel: str, notify: Callable[[str], None]) -> None:
        # one listening connection for every subscriber of both channels
        self._subscribers[channel].append(notify)
        if self._listener is None:
            thread = threading.Thread(target=self._listen, name="stepline-pg-listen", daemon=True)
            self._listener = thread
            thread.start()

    def _tell(self, channel: str, payload: str) -> None:
        for notify in list(self._subscribers[channel]):
            notify(payload)

    def _heard(self, channel: str, payload: str) -> None:
        if channel == CHANNEL:  # "jobs <origin>": another node's commit (older nodes: "jobs")
            what, _, origin = payload.partition(" ")
            if origin == self._origin:
                return
            payload = what
        self._tell(channel, payload)

    def _listen(self) -> None:
        if self.connections.session_url is None:
            self._poll_apps()
            return
        lost = False
        while not self._closing.is_set():
            try:
                with self._session() as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    conn.execute(f"LISTEN {STREAMS}")
                    if lost:  # what was missed while disconnected: reload and look again
                        self._tell(CHANNEL, "apps")
                        self._tell(CHANNEL, "jobs")
                        self._tell(STREAMS, "*")
                        lost = False
                    while not self._closing.is_set():
                        for message in conn.notifies(timeout=0.5, stop_after=1):
                            self._heard(message.channel, message.payload)
            except psycopg.Error as exc:  # the database went away: poll until it is back
                logger.warning("LISTEN connection lost (%s); polling until it returns", exc)
                lost = True
                self._closing.wait(1.0)

    def _poll_apps(self) -> None:
        """With no session to ``LISTEN`` on: the worker and stream readers poll on their
        own; the registry is reloaded every few seconds, for other nodes' app syncs."""
        logger.info(
            "no LISTEN behind a transaction pooler without STEPLINE_DATABASE_DIRECT_URL: "
            "polling for other nodes' work"
        )
        while not self._closing.wait(_pooler.APPS_POLL_SECONDS):
            self._tell(CHANNEL, "apps")
