"""The relay's side of ``stepline_outbox``: claim pending rows, mark them, purge old ones.

One class over a DB-API connection (sqlite3, psycopg, PyMySQL, or the raw connection behind
Django's), left in its driver's default, non-autocommit mode. What keeps several relays
safe differs by dialect:

- Postgres and MariaDB/MySQL: a batch is one transaction that takes the relay lock
  (``pg_try_advisory_xact_lock`` / ``GET_LOCK``) and locks its rows with
  ``FOR UPDATE SKIP LOCKED``. One relay delivers at a time, the others stand by: rows go
  out in ``id`` order, so a transaction's rows keep their order.
- SQLite has one writer: the batch is read without a lock and marked in a short write
  transaction after delivery (the app's writers are never held up by a delivery). Two
  relays on one file may deliver a row twice; delivery is idempotent (seeded event ids,
  proposed run ids), so the engine still stores one event and starts one run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import urllib.parse
from collections.abc import Callable
from typing import Any

from stepline.outbox import _schema

__all__ = ["OutboxDb", "Pending", "connect", "dialect_of_url", "open_url"]

#: The relay lock of one outbox table: on Postgres an advisory lock keyed by this prefix
#: and the table's OID (advisory locks are database-wide: two schemas' outboxes must not
#: hold up each other's relays); on MySQL a named lock (server-wide) with the database's name.
PG_LOCK = (
    "SELECT pg_try_advisory_xact_lock("
    f"{0x5354_4F42} * 4294967296 + '{_schema.TABLE}'::regclass::oid::bigint)"
)
MYSQL_LOCK = "CONCAT('stepline_outbox_relay:', DATABASE())"
_COLUMNS = "id, kind, body, attempts"


@dataclasses.dataclass(frozen=True, slots=True)
class Pending:
    """A committed, not yet delivered row."""

    id: int
    kind: str
    body: str
    attempts: int


def dialect_of_url(url: str) -> str:
    """The outbox dialect of a database URL (a bare path is a SQLite file).

    Raises:
        ValueError: a scheme the relay cannot read.
    """
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if not scheme or len(scheme) == 1:  # "C:\\..." on Windows
        return "sqlite"
    base = scheme.split("+", 1)[0]  # postgresql+psycopg, mysql+pymysql (SQLAlchemy URLs)
    return _schema.canonical(base)


def connect(url: str) -> tuple[Any, str]:
    """A DB-API connection to ``url`` and its dialect.

    Accepts ``postgresql://``, ``mysql://`` / ``mariadb://`` (PyMySQL), ``sqlite:///path``
    or a bare SQLite path; SQLAlchemy's ``+driver`` suffixes are ignored.

    Raises:
        ValueError: an unknown scheme.
    """
    dialect = dialect_of_url(url)
    parts = urllib.parse.urlsplit(url)
    if dialect == "sqlite":
        import sqlite3

        path = url
        if parts.scheme and len(parts.scheme) > 1:  # sqlite:///relative, sqlite:////absolute
            rest = url.split(":", 1)[1].split("?", 1)[0]
            path = rest[3:] if rest.startswith("///") else rest.removeprefix("//")
        conn = sqlite3.connect(path, timeout=30.0)
        conn.execute("PRAGMA busy_timeout = 30000")
        return conn, dialect
    if dialect == "postgresql":
        import psycopg

        plain = urllib.parse.urlunsplit(("postgresql", *parts[1:]))
        return psycopg.connect(plain), dialect
    import pymysql  # type: ignore[import-untyped]

    query = urllib.parse.parse_qs(parts.query)
    conn = pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=urllib.parse.unquote(parts.username or "root"),
        password=urllib.parse.unquote(parts.password or ""),
        database=parts.path.lstrip("/") or None,
        charset=query.get("charset", ["utf8mb4"])[0],
        autocommit=False,
    )
    with conn.cursor() as cur:  # locking reads see the latest commit either way; plain too
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
    conn.commit()
    return conn, dialect


class OutboxDb:
    """Pending rows of ``stepline_outbox`` through one DB-API connection.

    Args:
        connection: a DB-API connection in its driver's default (transactional) mode.
        dialect: ``postgresql``, ``mysql`` or ``sqlite`` (aliases accepted).
        owns: close ``connection`` in ``close`` (False for a connection Django owns).
        reconnect: opens a new connection after a database error (``reset``); None
            keeps the one connection and only rolls back.
    """

    def __init__(
        self,
        connection: Any,
        dialect: str,
        *,
        owns: bool = True,
        reconnect: Callable[[], Any] | None = None,
    ) -> None:
        self.connection = connection
        self.dialect = _schema.canonical(dialect)
        self._mark = "?" if self.dialect == "sqlite" else "%s"
        self._owns = owns
        self._reconnect = reconnect

    def reset(self) -> None:
        """After a database error: roll back, or open a new connection (a server restart,
        a dropped socket: the old one is gone for good)."""
        if self._reconnect is None:
            with contextlib.suppress(Exception):
                self.connection.rollback()
            return
        with contextlib.suppress(Exception):
            self.close()
        self.connection = self._reconnect()

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        cur = self.connection.cursor()
        try:
            cur.execute(sql.replace("?", self._mark), params)
            return list(cur.fetchall()) if cur.description is not None else []
        finally:
            cur.close()

    def claim(self, limit: int) -> list[Pending] | None:
        """Open a batch: up to ``limit`` pending rows in ``id`` order.

        On Postgres and MySQL the batch's transaction stays open (rows locked) until
        ``finish`` or ``abandon``. Returns None when another relay holds the relay lock.
        """
        select = (
            f"SELECT {_COLUMNS} FROM {_schema.TABLE} WHERE delivered_at IS NULL ORDER BY id LIMIT ?"
        )
        if self.dialect == "postgresql":
            if not self._run(PG_LOCK)[0][0]:
                self.connection.rollback()
                return None
            select += " FOR UPDATE SKIP LOCKED"
        elif self.dialect == "mysql":
            if not self._run(f"SELECT GET_LOCK({MYSQL_LOCK}, 0)")[0][0]:
                self.connection.rollback()
                return None
            select += " FOR UPDATE SKIP LOCKED"
        rows = self._run(select, (limit,))
        if self.dialect == "sqlite":
            self.connection.commit()  # no read transaction kept open across deliveries
        return [Pending(int(r[0]), str(r[1]), _text(r[2]), int(r[3])) for r in rows]

    def finish(self, delivered: list[int], notes: list[tuple[int, str]], now: float) -> None:
        """Mark ``delivered`` rows, record ``notes`` in ``last_error``, and commit the batch.

        Every row tried counts one attempt; a row in both lists (a start the engine
        skipped) is marked delivered with its note.
        """
        for start in range(0, len(delivered), 500):
            chunk = delivered[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            self._run(
                f"UPDATE {_schema.TABLE} SET delivered_at = ? WHERE id IN ({marks})",
                (now, *chunk),
            )
        tried = [*delivered, *(row_id for row_id, _ in notes if row_id not in set(delivered))]
        for start in range(0, len(tried), 500):
            chunk = tried[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            self._run(
                f"UPDATE {_schema.TABLE} SET attempts = attempts + 1 WHERE id IN ({marks})",
                tuple(chunk),
            )
        for row_id, note in notes:
            self._run(
                f"UPDATE {_schema.TABLE} SET last_error = ? WHERE id = ?", (note[:2000], row_id)
            )
        self.connection.commit()
        self._release()

    def abandon(self) -> None:
        """End a batch without marking anything (its rows stay pending)."""
        self.connection.rollback()
        self._release()

    def _release(self) -> None:
        if self.dialect == "mysql":
            self._run(f"SELECT RELEASE_LOCK({MYSQL_LOCK})")
            self.connection.commit()

    def purge(self, before: float) -> int:
        """Delete rows delivered before ``before``; returns how many."""
        cur = self.connection.cursor()
        try:
            cur.execute(
                f"DELETE FROM {_schema.TABLE} WHERE delivered_at IS NOT NULL "
                f"AND delivered_at < {self._mark}",
                (before,),
            )
            count = int(cur.rowcount or 0)
        finally:
            cur.close()
        self.connection.commit()
        return count

    def backlog(self) -> int:
        """How many committed rows wait for delivery."""
        rows = self._run(f"SELECT COUNT(*) FROM {_schema.TABLE} WHERE delivered_at IS NULL")
        self.connection.commit()
        return int(rows[0][0])

    def close(self) -> None:
        """Close the connection (if this object owns it)."""
        if self._owns:
            self.connection.close()


def _text(value: Any) -> str:
    if isinstance(value, memoryview):
        value = value.tobytes()
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)


def open_url(url: str) -> OutboxDb:
    """An ``OutboxDb`` on ``url`` that reconnects to it after a database error."""
    connection, dialect = connect(url)
    return OutboxDb(connection, dialect, reconnect=lambda: connect(url)[0])
