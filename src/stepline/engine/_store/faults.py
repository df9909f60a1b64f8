"""Database faults the engine can name: what failed, how long to wait, what to do. Pure.

A store raises whatever its driver raised. ``classify`` recognises the faults that are
the database's condition rather than a bug of ours (SQLite: ``SQLITE_BUSY``,
``SQLITE_FULL``, ``SQLITE_READONLY``, ``SQLITE_IOERR``, ``SQLITE_CANTOPEN``; Postgres: a
lost or refused connection, ``disk_full`` 53100, ``read_only_sql_transaction`` 25006, lock
and statement timeouts, a dropped schema) and the store's guard (``_store.guard``) raises
them as one ``StoreUnavailable``: the API answers it with 503 and ``Retry-After``
(``_http/faults.py``), the worker retries the job when the fault clears
(``_flow/recovery.py``). Postgres is recognised by SQLSTATE and class name, so this
module imports no driver that may not be installed.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Literal

Cause = Literal["locked", "disk full", "read-only", "I/O error", "unreachable", "schema missing"]

#: What an operator does about each cause (the 503's ``what_to_do``, and the log line).
ADVICE: dict[Cause, str] = {
    "locked": "another connection holds the database's write lock (a long transaction, "
    "a sqlite3 shell inside BEGIN, a lock or statement timeout on Postgres); it clears "
    "when that transaction ends: retry",
    "disk full": "the disk holding the database is full: free space (a long-lived reader "
    "may be pinning SQLite's WAL: docs/operations.md), then retry",
    "read-only": "the database is read-only (file permissions, a read-only mount, a "
    "Postgres standby or default_transaction_read_only): make it writable",
    "I/O error": "the database could not be read or written (a failing disk or a lost "
    "network filesystem): check the disk",
    "unreachable": "the database does not answer (restarting, failing over, refusing "
    "connections): retry",
    "schema missing": "the engine's tables are gone (a dropped schema, a database "
    "replaced underneath): restore it or run `stepline migrate`",
}

#: Seconds a client waits before retrying (``Retry-After``), per cause.
RETRY_AFTER: dict[Cause, int] = {
    "locked": 1,
    "unreachable": 2,
    "disk full": 5,
    "I/O error": 5,
    "read-only": 10,
    "schema missing": 10,
}

_SQLITE_NAMES: tuple[tuple[str, Cause], ...] = (
    ("SQLITE_BUSY", "locked"),
    ("SQLITE_LOCKED", "locked"),
    ("SQLITE_FULL", "disk full"),
    ("SQLITE_READONLY", "read-only"),
    ("SQLITE_IOERR", "I/O error"),
    ("SQLITE_CANTOPEN", "unreachable"),
)
_SQLITE_TEXTS: tuple[tuple[str, Cause], ...] = (
    ("database is locked", "locked"),
    ("database table is locked", "locked"),
    ("database or disk is full", "disk full"),
    ("readonly database", "read-only"),
    ("disk i/o error", "I/O error"),
    ("unable to open database file", "unreachable"),
    ("no such table", "schema missing"),
)
_SQLSTATES: dict[str, Cause] = {
    "53100": "disk full",
    "25006": "read-only",
    "55P03": "locked",  # lock_not_available: lock_timeout, NOWAIT
    "57014": "locked",  # query_canceled: statement_timeout (most often a lock waited on)
    "40P01": "locked",  # deadlock_detected, still failing after the store's retries
    "40001": "locked",  # serialization_failure, likewise
    "57P01": "unreachable",  # admin_shutdown
    "57P02": "unreachable",  # crash_shutdown
    "57P03": "unreachable",  # cannot_connect_now
    "53300": "unreachable",  # too_many_connections
    "25P03": "unreachable",  # idle_in_transaction_session_timeout
    "58030": "I/O error",
    "42P01": "schema missing",  # undefined_table
    "3F000": "schema missing",  # invalid_schema_name
}


class StoreUnavailable(Exception):
    """The database refused an operation for a known reason; nothing of it was committed.

    Args:
        cause: which fault (``ADVICE`` says what to do about it).
        detail: the driver's message (for logs and ``/ready``; never the 503's body).
    """

    code = "store_unavailable"
    status = 503

    def __init__(self, cause: Cause, detail: str) -> None:
        super().__init__(f"the database is unavailable ({cause}): {detail}")
        self.cause: Cause = cause
        self.detail = detail

    @property
    def retry_after(self) -> int:
        """Seconds to wait before retrying."""
        return RETRY_AFTER[self.cause]

    def body(self) -> dict[str, Any]:
        """The JSON an API caller gets: the cause and what to do, no driver message."""
        return {
            "error": f"the database is unavailable ({self.cause}); retry in {self.retry_after} s",
            "code": self.code,
            "status": self.status,
            "cause": self.cause,
            "retry_after": self.retry_after,
            "what_to_do": ADVICE[self.cause],
        }


def classify(exc: BaseException) -> Cause | None:
    """The fault ``exc`` is, or None for anything else (a bug, a refusal of ours)."""
    if isinstance(exc, StoreUnavailable):
        return exc.cause
    if isinstance(exc, sqlite3.OperationalError):
        return _sqlite(exc)
    return _postgres(exc)


def _sqlite(exc: sqlite3.OperationalError) -> Cause | None:
    name = getattr(exc, "sqlite_errorname", None) or ""
    for prefix, cause in _SQLITE_NAMES:
        if name.startswith(prefix):
            return cause
    text = str(exc).lower()
    for needle, found in _SQLITE_TEXTS:
        if needle in text:
            return found
    return None


def _postgres(exc: BaseException) -> Cause | None:
    classes = type(exc).__mro__
    if not any(c.__module__.startswith(("psycopg", "psycopg_pool")) for c in classes):
        return None
    state = getattr(exc, "sqlstate", None)
    if isinstance(state, str):
        if state in _SQLSTATES:
            return _SQLSTATES[state]
        if state.startswith("08"):  # connection_exception and its kin
            return "unreachable"
        return None
    # no SQLSTATE: the client lost or never had a connection (PoolTimeout is one too)
    names = {c.__name__ for c in classes}
    return "unreachable" if names & {"OperationalError", "InterfaceError"} else None
