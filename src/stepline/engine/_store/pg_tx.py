"""One transaction on Postgres: the ``Tx`` the Postgres store's work runs on.

Postgres differs from SQLite where it pays: a statement is a round trip, so where the
dialect allows, writes ride together (a step with its run, a run's end in one
statement, a lease extension a table at a time), and a write of several rows never
pipelines (``execute_many``).

A write transaction (``Pending``) that sends nothing sends no ``BEGIN``. A write of
several rows goes with the transaction's next statement or its ``COMMIT``. Behind a
transaction pooler, where no statement is prepared, so do the ``BEGIN`` (with the first
statement) and every write whose answer nobody reads (``SqlTx.write``: a run's row
written back, a step, an event's link to a run, the events a run's end emits): one
simple query each message, the values bound here. A write sent that way fails where it
is sent, not where it was asked for: only writes no caller checks go so.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from typing import Any, ClassVar

import psycopg
import psycopg.errors
from psycopg import pq

from stepline.engine._errors import QueryTimeoutError
from stepline.engine._model import Run
from stepline.engine._store import RunFilter
from stepline.engine._store.function_metrics import PostgresMetricsSql
from stepline.engine._store.messages import PostgresMessagesSql
from stepline.engine._store.part import LazyPart
from stepline.engine._store.queue import REPLACE_JOB, PostgresQueueSql
from stepline.engine._store.sql import CALL_SQL, SqlTx
from stepline.engine._store.tokens import PostgresTokensSql

_ROWS = pq.ExecStatus.TUPLES_OK
_IDLE = pq.TransactionStatus.IDLE
#: ``CALL_SQL`` in a write transaction, with the transaction's own id first (``xid``)
_CALL_XID = CALL_SQL.replace("SELECT ", "SELECT pg_current_xact_id()::text, ", 1) + " FOR UPDATE"
#: Milliseconds a runs list's query may take (its planning included): the server stops
#: it there, so a list whose client has gone cannot keep a connection and a core busy.
LIST_TIMEOUT_MS = 30_000


class Pending:
    """What a write transaction has not sent yet: its ``BEGIN`` until a statement goes,
    and the writes whose answer nobody reads. Shared by the ``PostgresTx`` of each work
    of a group.

    A write of several rows (``execute_many``, bound here anyway) goes with the
    transaction's next statement or its ``COMMIT`` (``commit``), as does the store's
    ``NOTIFY`` (``add``). ``batched`` (behind a transaction pooler: no prepared
    statements there): so does every write nobody reads (``PostgresTx.write``), and the
    ``BEGIN`` and the store's first statement go with the transaction's first statement,
    each message one simple query bound here. Otherwise a
    single statement goes alone, bound by the server and prepared once psycopg has seen
    it a few times: one bound here is parsed and planned at each use, which on this
    machine's loopback cost the server more than the round trips saved
    (``bench/README.md``). Either way a transaction that sends nothing sends no ``BEGIN``.
    """

    __slots__ = ("_begin", "_conn", "_literal", "batched", "begun", "texts")

    def __init__(self, conn: psycopg.Connection[Any], begin: str | None, *, batched: bool) -> None:
        self._conn = conn
        self._literal: psycopg.ClientCursor[Any] | None = None
        self._begin = ["BEGIN"] if begin is None else ["BEGIN", begin]
        self.batched = batched
        self.texts: list[str] = []
        self.begun = False

    @property
    def literal(self) -> psycopg.ClientCursor[Any]:
        """The cursor binding values into statements' text (made when first needed)."""
        literal = self._literal
        if literal is None:
            literal = self._literal = psycopg.ClientCursor(self._conn)
        return literal

    def add(self, text: str, args: Sequence[Any] = ()) -> None:
        """Queue a statement (``%s`` placeholders) whose answer nobody reads."""
        self.texts.append(self.literal.mogrify(text, args))

    def open(self) -> None:
        """Send the ``BEGIN`` (and the store's first statement) if they have not gone:
        before a statement sent alone."""
        if not self.begun:
            self.begun = True
            self._conn.execute(";\n".join(self._begin))

    def send(self, text: str) -> psycopg.ClientCursor[Any]:
        """Send what waits with ``text`` (bound already) last, in one simple query; the
        cursor, on ``text``'s answer."""
        texts = self.texts if self.begun else [*self._begin, *self.texts]
        texts.append(text)
        query = ";\n".join(texts)
        self.texts = []
        self.begun = True
        literal = self.literal
        literal.execute(query)
        while literal.nextset():  # each statement's answer in turn: text's is the last
            pass
        return literal

    def commit(self) -> None:
        """Send what waits and ``COMMIT``; nothing when the transaction sent nothing."""
        if self.begun or self.texts:
            self.send("COMMIT")

    def rollback(self) -> None:
        """End the transaction without its writes (after an error), if it began and the
        connection is alive; what waits is dropped."""
        self.texts = []
        conn = self._conn
        if self.begun and not conn.broken and conn.pgconn.transaction_status != _IDLE:
            conn.execute("ROLLBACK")


class Rows:
    """A statement's answer, read off the transaction's one cursor (which then takes the
    next statement: a cursor per statement cost ~8 µs of the ~40 of psycopg's side)."""

    __slots__ = ("_at", "_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows, self._at, self.rowcount = rows, 0, rowcount

    def fetchone(self) -> Any:
        if self._at >= len(self._rows):
            return None
        self._at += 1
        return self._rows[self._at - 1]

    def fetchall(self) -> list[Any]:
        rest, self._at = self._rows[self._at :], len(self._rows)
        return rest

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class PostgresTx(SqlTx):
    """``Tx`` over one psycopg connection with a transaction open."""

    skip_locked = " FOR UPDATE SKIP LOCKED"
    step_with_run = True
    _converted: ClassVar[dict[str, str]] = {}

    queue = LazyPart(PostgresQueueSql)
    messages = LazyPart(PostgresMessagesSql)
    metrics = LazyPart(PostgresMetricsSql)
    tokens = LazyPart(PostgresTokensSql)

    def __init__(
        self, conn: psycopg.Connection[Any], *, write: bool = True, pending: Pending | None = None
    ) -> None:
        super().__init__(conn, write=write)
        self._cur = conn.cursor()
        #: the transaction's ``BEGIN`` and writes not sent yet (None: each statement goes
        #: at once, inside a transaction its owner opened)
        self._pending = pending
        self.apps_changed = False
        #: runs whose streams this transaction appended to
        self.streamed: set[str] = set()
        #: the call ``get_call`` read, this transaction's id (read with it, when
        #: writing and no function is paused), and the last job it moved to a run's
        #: next call (``REPLACE_JOB``'s parameters): what ``pg_fence`` needs to answer
        #: the next call in one statement
        self.called: str | None = None
        self.xid: str | None = None
        self.moved: Sequence[Any] | None = None

    @classmethod
    def _pg(cls, sql: str) -> str:
        text = cls._converted.get(sql)
        if text is None:
            text = cls._converted[sql] = sql.replace("?", "%s")
        return text

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        if sql is REPLACE_JOB:
            self.moved = args
        pending = self._pending
        if pending is not None and (pending.texts or (pending.batched and not pending.begun)):
            cur: psycopg.Cursor[Any] = pending.send(pending.literal.mogrify(self._pg(sql), args))
        else:
            if pending is not None:
                pending.open()
            cur = self._cur
            cur.execute(self._pg(sql), args)
        answer = cur.pgresult
        rows = cur.fetchall() if answer is not None and answer.status == _ROWS else []
        return Rows(rows, cur.rowcount)

    def write(self, sql: str, args: Sequence[Any] = ()) -> None:
        pending = self._pending
        if pending is None or not pending.batched:
            self.execute(sql, args)
            return
        if sql is REPLACE_JOB:
            self.moved = args
        pending.add(self._pg(sql), args)

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        # Never psycopg's executemany: that is a pipeline whose Sync goes in a write of
        # its own, and a client cut off between the two leaves a backend holding the rows
        # it wrote, which idle_in_transaction_session_timeout does not end (the server
        # arms it only after a Sync). One row is one statement; several are one simple
        # query, the rows bound here: one message, one round trip, the Sync implied.
        pending = self._pending
        if pending is not None and (pending.batched or len(rows) > 1):
            # nobody reads the answer: it waits for the next statement or the COMMIT
            # (several rows are bound here anyway: no prepared statement is lost)
            text = self._pg(sql)
            for row in rows:
                pending.add(text, row)
            return
        if pending is not None and rows:
            pending.open()
        if len(rows) == 1:
            self._cur.execute(self._pg(sql), rows[0])
        elif rows:  # several rows in a transaction its owner opened (no ``Pending``)
            text = self._pg(sql)
            literal = psycopg.ClientCursor(self._c)
            literal.execute(";\n".join([literal.mogrify(text, row) for row in rows]))

    def _call_row(self, job_id: str) -> Sequence[Any] | None:
        self.called = job_id
        if not self._write:
            return super()._call_row(job_id)
        row = self.execute(_CALL_XID, (job_id,)).fetchone()
        if row is None:
            return None
        self.xid = row[0] if not row[-1] else None  # no fence while a function is paused
        return row[1:]  # type: ignore[no-any-return]

    def lock(self, name: str) -> None:
        if self._write:
            # the schema is part of the name: engines on other schemas never contend
            self.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || ':' || %s, 0))",
                (name,),
            )

    def row_lock(self) -> str:
        return " FOR UPDATE" if self._write else ""

    def list_runs(self, where: RunFilter) -> list[Run]:
        """``SqlTx.list_runs`` under ``LIST_TIMEOUT_MS``, the transaction's own limit kept.

        Raises:
            QueryTimeoutError: the database stopped the query at the limit.
        """
        row = self.execute(
            "SELECT current_setting('statement_timeout'), set_config('statement_timeout', ?, true)",
            (str(LIST_TIMEOUT_MS),),
        ).fetchone()
        try:
            found = super().list_runs(where)
        except psycopg.errors.QueryCanceled:  # the transaction is aborted: nothing to restore
            raise QueryTimeoutError(
                f"listing runs took over {LIST_TIMEOUT_MS / 1000:g} s and was stopped; "
                "narrow the filter (function_id, status, since, until)"
            ) from None
        self.execute("SELECT set_config('statement_timeout', ?, true)", (row[0],))
        return found

    def close_run(self, run_id: str, event_names: Collection[str]) -> dict[str, str]:
        """``SqlTx.close_run`` in one statement: the deletes as data-modifying ``WITH``
        clauses, with the run's attributes and which of ``event_names`` a wait listens
        for (as ``note_event_names``) read by its ``SELECT``.

        The ``SELECT`` sees the tables as they were before the statement: the run's own
        waits are left out of the names by ``run_id``, and none of the deletes touches
        ``run_attributes``. A table with nothing to delete (``lock_runs`` and
        ``read_ahead`` read it already) has no clause.
        """
        self.queue.forget_run_jobs(run_id)
        deletes = ["jobs"]
        if run_id not in self._pauseless:
            deletes.append("pauses")
        if self.flow.may_hold_claims(run_id):
            deletes += ("singletons", "buckets")
        attributes = self.attributes.read_already(run_id)
        names = sorted(set(event_names) - self._names_known)
        reads: list[str] = []
        args: list[Any] = [run_id] * len(deletes)
        if attributes is None:
            reads.append("SELECT 0, name, value FROM run_attributes WHERE run_id = ?")
            args.append(run_id)
        if names:
            reads.append(
                "SELECT DISTINCT 1, event_name, NULL FROM pauses WHERE correlation_id IS NULL "
                f"AND run_id <> ? AND event_name IN ({','.join('?' * len(names))})"
            )
            args += (run_id, *names)
        clauses = [f"d{i} AS (DELETE FROM {t} WHERE run_id = ?)" for i, t in enumerate(deletes)]
        if reads:
            sql = f"WITH {', '.join(clauses)} {' UNION ALL '.join(reads)} ORDER BY 1, 2"
        else:  # the last delete is the statement itself
            sql = f"DELETE FROM {deletes[-1]} WHERE run_id = ?"
            if clauses[:-1]:
                sql = f"WITH {', '.join(clauses[:-1])} {sql}"
        found: dict[str, str] = {}
        waited: set[str] = set()
        for kind, name, value in self.execute(sql, args).fetchall():
            if kind == 0:
                found[str(name)] = str(value)
            else:
                waited.add(str(name))
        if names:
            self._names_waited.update(waited)
            self._names_known.update(names)
        return found if attributes is None else attributes

    def note_apps_changed(self) -> None:
        self.apps_changed = True

    def note_streamed(self, run_id: str) -> None:
        self.streamed.add(run_id)
