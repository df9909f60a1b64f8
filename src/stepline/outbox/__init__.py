"""The transactional outbox: send events and start runs inside the app's own transaction.

A web app that writes an order and starts "process order" wants both or neither. The
outbox writers insert a row into ``stepline_outbox`` in the caller's open transaction and
return the event ids or run id at once; a relay moves committed rows to the engine (the
same ids: event ids follow from the row's seed, the run id is proposed by the row).
A rollback leaves nothing behind; a crash after the commit loses nothing.

This package is the framework-neutral core and the plain DB-API writer::

    with connection:  # sqlite3, psycopg, PyMySQL...: one transaction
        connection.execute("INSERT INTO orders ...")
        run = stepline.outbox.start(connection, client, process_order, {"order_id": 7})
    # run.run_id is known; run.handle_sync().result() once the relay has delivered it

Django: ``stepline.django.send_on_commit`` / ``start_in_transaction``; SQLAlchemy:
``stepline.sqlalchemy``. The table: ``ddl(dialect)`` here, a Django migration, or
``stepline.sqlalchemy.outbox_table(metadata)``.
"""

from __future__ import annotations

from stepline.outbox._dbapi import Connection as Connection
from stepline.outbox._dbapi import send as send
from stepline.outbox._dbapi import start as start
from stepline.outbox._dbapi import write as write
from stepline.outbox._rows import OutboxError as OutboxError
from stepline.outbox._rows import OutboxRow as OutboxRow
from stepline.outbox._rows import StartedRun as StartedRun
from stepline.outbox._rows import event_row as event_row
from stepline.outbox._rows import start_row as start_row
from stepline.outbox._schema import CHANNEL as CHANNEL
from stepline.outbox._schema import DIALECTS as DIALECTS
from stepline.outbox._schema import NOTIFY as NOTIFY
from stepline.outbox._schema import TABLE as TABLE
from stepline.outbox._schema import ddl as ddl

__all__ = [
    "CHANNEL",
    "DIALECTS",
    "NOTIFY",
    "TABLE",
    "Connection",
    "OutboxError",
    "OutboxRow",
    "StartedRun",
    "ddl",
    "event_row",
    "send",
    "start",
    "start_row",
    "write",
]
