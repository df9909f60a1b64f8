"""The transactional outbox for Django: events and starts written in the current transaction.

``send_on_commit`` and ``start_in_transaction`` insert a row into ``stepline_outbox``
through the connection ``using`` names, so it commits or rolls back with your own writes
in ``transaction.atomic()``. Outside ``atomic()`` (autocommit) the row is committed at once,
as ``transaction.on_commit`` runs its callback at once there: still durable, delivered by
the relay. On Postgres the insert also queues a ``NOTIFY`` delivered at commit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from django.db import DEFAULT_DB_ALIAS, connections

from stepline._event import Event
from stepline.outbox import _rows, _schema

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._definition.function import Function

__all__ = ["send_on_commit", "start_in_transaction"]


def send_on_commit(
    client: Client, events: Event | Sequence[Event], *, using: str = DEFAULT_DB_ALIAS
) -> list[str]:
    """Send ``events`` when the current transaction commits; returns their ids now.

    Example:
        >>> with transaction.atomic():
        ...     order = Order.objects.create(total=250)
        ...     [event_id] = stepline.django.send_on_commit(
        ...         client, stepline.Event(name="shop/order.placed", data={"id": order.id})
        ...     )

    Args:
        client: the app's client (``stepline.django.get_client()`` with settings).
        events: one ``stepline.Event`` or several, checked as ``client.send`` checks them.
        using: the database alias whose transaction carries the row.

    Raises:
        TypeError: something other than ``stepline.Event`` objects.
        SendEventError: no events, a reserved name, or data that is not JSON.
    """
    del client  # the events do not depend on the client's settings
    row, ids = _rows.event_row(events)
    _write(row, using)
    return ids


def start_in_transaction(
    client: Client,
    function: Function | str,
    data: Mapping[str, Any] | None = None,
    *,
    idempotency_key: str | None = None,
    started_by: str | None = None,
    using: str = DEFAULT_DB_ALIAS,
) -> _rows.StartedRun:
    """Start a run of ``function`` if, and when, the current transaction commits.

    Args:
        client: the app's client (a bare function id gets its prefix; the handles use it).
        function: the function, or its id.
        data: the run's ``event.data``.
        idempotency_key: as ``client.start``'s.
        started_by: as ``client.start``'s (your user's id).
        using: the database alias whose transaction carries the row.

    Returns:
        The run: ``run_id`` now (a view can answer it), ``handle_sync()`` once relayed.

    Raises:
        OutboxError: data that is not a JSON object, a bad key or principal.
    """
    row, run = _rows.start_row(
        client.app_id, function, data, idempotency_key=idempotency_key, started_by=started_by
    )
    _write(row, using)
    return _rows.StartedRun(run.run_id, run.function_id, run.idempotency_key, client)


def _write(row: _rows.OutboxRow, using: str) -> None:
    connection = connections[using]
    with connection.cursor() as cursor:  # Django's placeholders are %s on every backend
        cursor.execute(_schema.insert_sql("format"), row.positional())
        if connection.vendor == "postgresql":
            cursor.execute(_schema.NOTIFY)
