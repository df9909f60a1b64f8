"""``manage.py stepline relay``: the relay on one of Django's own database connections.

The outbox table lives in the project's database (the ``stepline`` app's migration), so
the relay reads it through Django's connection for ``--database`` (``default``): no URL to
repeat. On Postgres a second connection of that alias LISTENs for the writers' NOTIFY.
"""

from __future__ import annotations

import os
from typing import Any

from stepline.outbox import _relay, _relay_db, _relay_deliver, _relay_run

__all__ = ["run"]

DEFAULT_ENGINE = "http://127.0.0.1:8288"


def run(
    *,
    alias: str,
    engine_url: str | None,
    event_key: str | None,
    signing_key: str | None,
    metrics_port: int | None = None,
    poll_interval: float | None = None,
) -> int:
    """Relay the outbox of Django's database ``alias`` until SIGTERM/SIGINT."""
    from django.db import connections

    wrapper = connections[alias]
    wrapper.ensure_connection()
    wrapper.set_autocommit(False)  # the relay commits its batches itself

    def reconnect() -> Any:
        wrapper.close()  # after an error: Django opens a new one
        wrapper.ensure_connection()
        wrapper.set_autocommit(False)
        return wrapper.connection

    db = _relay_db.OutboxDb(wrapper.connection, wrapper.vendor, owns=False, reconnect=reconnect)
    listen = None
    if db.dialect == "postgresql":

        def listen() -> Any:
            other = connections.create_connection(alias)  # autocommit, as Django opens it
            other.ensure_connection()
            return other.connection

    options: dict[str, Any] = {}
    if poll_interval is not None:
        options["poll_interval"] = poll_interval
    pause = os.environ.get("STEPLINE_RELAY_TEST_PAUSE_AFTER_DELIVERY")
    deliverer = _relay_deliver.HttpDeliverer(
        engine_url or DEFAULT_ENGINE,
        event_key=event_key or "relay",
        signing_key=signing_key,
    )
    try:
        return _relay_run.run_forever(
            db,
            deliverer,
            _relay.RelaySettings(pause_after_delivery=pause or None, **options),
            listen=listen,
            metrics_port=metrics_port,
        )
    finally:
        wrapper.close()
