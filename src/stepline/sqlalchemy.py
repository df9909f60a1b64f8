"""The transactional outbox for SQLAlchemy: send events and start runs in the caller's transaction.

Add the table to your metadata (Alembic's autogenerate then sees it), and write through
the ``Session`` or ``Connection`` that writes your own rows::

    stepline.sqlalchemy.outbox_table(Base.metadata)

    with Session(engine) as session, session.begin():
        session.add(Order(id=7, total=250))
        run = stepline.sqlalchemy.start(session, client, process_order, {"order_id": 7})
    # committed: the relay starts the run with run.run_id; rolled back: nothing at all

``send_async``/``start_async`` take an ``AsyncSession`` or ``AsyncConnection``. Nothing is
committed here; on Postgres the insert also queues a ``NOTIFY`` delivered at commit.
Needs ``pip install 'stepline[sqlalchemy]'``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from stepline import _extras
from stepline.outbox import _rows, _schema

try:
    import sqlalchemy as sa
    import sqlalchemy.orm
    from sqlalchemy.dialects import mysql
except ImportError as exc:  # pragma: no cover - the extra's message instead of a traceback
    raise _extras.MissingExtraError(
        "stepline.sqlalchemy needs the sqlalchemy package, which is not installed: "
        "pip install 'stepline[sqlalchemy]'"
    ) from exc

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

    from stepline._client import Client
    from stepline._definition.function import Function
    from stepline._event import Event

__all__ = ["outbox_table", "send", "send_async", "start", "start_async"]

#: What the sync writers take: an ORM session or a Core connection.
SyncBind: TypeAlias = "sa.orm.Session | sa.Connection"
#: What the async writers take.
AsyncBind: TypeAlias = "AsyncSession | AsyncConnection"

# MySQL's TEXT holds 64 KiB; LONGTEXT is what Django's TextField and the plain DDL make there
_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
# REAL on SQLite, as Django's FloatField and the plain DDL
_DOUBLE: sa.types.TypeEngine[float] = sa.Double().with_variant(sa.REAL(), "sqlite")
_INSERT = sa.text(_schema.insert_sql("named"))
_NOTIFY = sa.text(_schema.NOTIFY)


def outbox_table(metadata: sa.MetaData) -> sa.Table:
    """The ``stepline_outbox`` table, added to ``metadata`` (returned as is if already there).

    Call it where your models are declared (``outbox_table(Base.metadata)``): then
    ``metadata.create_all()`` creates it and Alembic's autogenerate writes its migration.
    It is the same table as the Django migration's and ``stepline.outbox.ddl``'s.
    """
    key = _schema.TABLE if metadata.schema is None else f"{metadata.schema}.{_schema.TABLE}"
    existing = metadata.tables.get(key)
    if existing is not None:
        return existing
    return sa.Table(
        _schema.TABLE,
        metadata,
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),  # SQLite: the rowid alias
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("created_at", _DOUBLE, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("body", _TEXT, nullable=False),
        sa.Column("delivered_at", _DOUBLE, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("last_error", _TEXT, nullable=True),
        sa.Index(_schema.INDEX, "delivered_at", "id"),
        sqlite_autoincrement=True,
    )


def send(bind: SyncBind, client: Client, events: Event | Sequence[Event]) -> list[str]:
    """Write ``events`` to the outbox in ``bind``'s transaction; returns the ids they will have.

    Args:
        bind: the ``Session`` or ``Connection`` of the transaction (begun if none is).
        client: the app's client.
        events: one ``stepline.Event`` or several, checked as ``client.send`` checks them.

    Raises:
        TypeError: something other than ``stepline.Event`` objects.
        SendEventError: no events, a reserved name, or data that is not JSON.
    """
    del client  # the events do not depend on the client's settings
    row, ids = _rows.event_row(events)
    for clause, params in _writes(row, _dialect(bind)):
        bind.execute(clause, params)
    return ids


def start(
    bind: SyncBind,
    client: Client,
    function: Function | str,
    data: Mapping[str, Any] | None = None,
    *,
    idempotency_key: str | None = None,
    started_by: str | None = None,
) -> _rows.StartedRun:
    """Write a start of ``function`` to the outbox in ``bind``'s transaction.

    Args:
        bind: the ``Session`` or ``Connection`` of the transaction.
        client: the app's client (a bare function id gets its prefix; the handles use it).
        function: the function, or its id.
        data: the run's ``event.data``.
        idempotency_key: as ``client.start``'s.
        started_by: as ``client.start``'s.

    Returns:
        The run: its id now, a handle on it once the relay has delivered the row.

    Raises:
        OutboxError: data that is not a JSON object, a bad key or principal.
    """
    row, run = _started(client, function, data, idempotency_key, started_by)
    for clause, params in _writes(row, _dialect(bind)):
        bind.execute(clause, params)
    return run


async def send_async(bind: AsyncBind, client: Client, events: Event | Sequence[Event]) -> list[str]:
    """``send`` through an ``AsyncSession`` or ``AsyncConnection``."""
    del client
    row, ids = _rows.event_row(events)
    for clause, params in _writes(row, _dialect(bind)):
        await bind.execute(clause, params)
    return ids


async def start_async(
    bind: AsyncBind,
    client: Client,
    function: Function | str,
    data: Mapping[str, Any] | None = None,
    *,
    idempotency_key: str | None = None,
    started_by: str | None = None,
) -> _rows.StartedRun:
    """``start`` through an ``AsyncSession`` or ``AsyncConnection``."""
    row, run = _started(client, function, data, idempotency_key, started_by)
    for clause, params in _writes(row, _dialect(bind)):
        await bind.execute(clause, params)
    return run


def _started(
    client: Client,
    function: Function | str,
    data: Mapping[str, Any] | None,
    idempotency_key: str | None,
    started_by: str | None,
) -> tuple[_rows.OutboxRow, _rows.StartedRun]:
    row, run = _rows.start_row(
        client.app_id, function, data, idempotency_key=idempotency_key, started_by=started_by
    )
    return row, _rows.StartedRun(run.run_id, run.function_id, run.idempotency_key, client)


def _writes(row: _rows.OutboxRow, dialect: str) -> list[tuple[sa.TextClause, dict[str, Any]]]:
    writes = [(_INSERT, row.params())]
    if dialect == "postgresql":
        writes.append((_NOTIFY, {}))
    return writes


def _dialect(bind: SyncBind | AsyncBind) -> str:
    if isinstance(bind, sa.orm.Session):
        return str(bind.get_bind().dialect.name)
    if isinstance(bind, sa.Connection):
        return str(bind.dialect.name)
    from sqlalchemy.ext.asyncio import AsyncSession  # not before: it needs greenlet

    if isinstance(bind, AsyncSession):
        return str(bind.sync_session.get_bind().dialect.name)
    return str(bind.dialect.name)
