"""The plain DB-API writer: ``send``/``start`` through a connection, in its open transaction.

Nothing is committed here: the row becomes visible to the relay when the caller commits,
and disappears with a rollback. The placeholders follow the driver's ``paramstyle``
(``sqlite3``: ``?``; psycopg, PyMySQL, mysqlclient: ``%s``); on Postgres the writer also
queues a ``NOTIFY`` that the database delivers at commit, waking a listening relay.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from stepline._event import Event
from stepline.outbox import _rows, _schema

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._definition.function import Function

__all__ = ["Connection", "send", "start", "write"]

_POSTGRES_DRIVERS = frozenset({"psycopg", "psycopg2", "pg8000", "psycopg2cffi"})


class _Cursor(Protocol):
    def execute(self, operation: Any, parameters: Any = ..., /) -> Any: ...

    def close(self) -> Any: ...


class Connection(Protocol):
    """A PEP 249 connection (``sqlite3``, psycopg, PyMySQL, mysqlclient...)."""

    def cursor(self) -> Any: ...


def send(
    connection: Connection,
    client: Client,
    events: Event | Sequence[Event],
    *,
    paramstyle: str | None = None,
) -> list[str]:
    """Write ``events`` to the outbox in ``connection``'s open transaction; returns their ids.

    The ids are the ones the engine gives the events once the relay delivers them. Commit
    as usual: a rollback drops the row and nothing is sent.

    Args:
        connection: a DB-API connection with a transaction open (or in autocommit mode:
            then the row is committed at once).
        client: the app's client (its settings are not needed to write; kept for symmetry).
        events: one ``stepline.Event`` or several, checked as ``client.send`` checks them.
        paramstyle: the driver's placeholder style, when it cannot be told from the
            connection's module.

    Raises:
        TypeError: something other than ``stepline.Event`` objects.
        SendEventError: no events, a reserved name, or data that is not JSON.
    """
    del client  # the events do not depend on the client's settings
    row, ids = _rows.event_row(events)
    write(connection, row, paramstyle=paramstyle)
    return ids


def start(
    connection: Connection,
    client: Client,
    function: Function | str,
    data: Mapping[str, Any] | None = None,
    *,
    idempotency_key: str | None = None,
    started_by: str | None = None,
    paramstyle: str | None = None,
) -> _rows.StartedRun:
    """Write a start of ``function`` to the outbox in ``connection``'s open transaction.

    Args:
        connection: a DB-API connection with a transaction open.
        client: the app's client: a bare function id gets its app's prefix, and the
            returned run's handles use it.
        function: the function, or its id.
        data: the run's ``event.data``.
        idempotency_key: as ``client.start``'s.
        started_by: as ``client.start``'s.
        paramstyle: the driver's placeholder style, when it cannot be told.

    Returns:
        The run: its id now, a handle on it once the relay has delivered the row.

    Raises:
        OutboxError: data that is not a JSON object, a bad key or principal.
    """
    row, run = _rows.start_row(
        client.app_id, function, data, idempotency_key=idempotency_key, started_by=started_by
    )
    write(connection, row, paramstyle=paramstyle)
    return _rows.StartedRun(run.run_id, run.function_id, run.idempotency_key, client)


def write(connection: Connection, row: _rows.OutboxRow, *, paramstyle: str | None = None) -> None:
    """Insert ``row`` (and, on Postgres, queue the ``NOTIFY``) without committing."""
    driver = _driver(connection)
    style = paramstyle or _paramstyle(driver)
    cursor: _Cursor = connection.cursor()
    try:
        cursor.execute(_schema.insert_sql(style), row.positional())
        if driver in _POSTGRES_DRIVERS:
            cursor.execute(_schema.NOTIFY)
    finally:
        cursor.close()


def _driver(connection: Connection) -> str:
    return type(connection).__module__.partition(".")[0]


def _paramstyle(driver: str) -> str:
    module = sys.modules.get(driver)
    style = getattr(module, "paramstyle", None)
    if not isinstance(style, str):
        raise ValueError(
            f"cannot tell the paramstyle of a {driver!r} connection: pass paramstyle='qmark' "
            "(or 'format', 'pyformat', 'named', 'numeric')"
        )
    return style
