"""Which database an engine's outbox relay reads (``EngineSettings.relay_outbox``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from stepline.engine._config import EngineConfigError
from stepline.outbox import _relay, _relay_db

__all__ = ["Target", "resolve"]


def _nothing() -> None:
    return None


@dataclasses.dataclass(frozen=True)
class Target:
    """Opens the outbox's database (on the relay's thread) and, on Postgres, LISTENs.

    ``release`` runs on the relay's thread as it ends: what the thread holds that the relay
    does not own (Django's connection of that thread, which Django closes only at the end
    of a request, so a relay thread's would be left for the garbage collector).
    """

    open: Callable[[], _relay_db.OutboxDb]
    listen: Callable[[], Any] | None
    release: Callable[[], None] = _nothing


def resolve(value: str, engine_database: str) -> Target:
    """The target ``value`` names: ``self``, ``django[:ALIAS]`` or a database URL.

    Raises:
        EngineConfigError: a URL of a database the relay cannot read.
    """
    if value.startswith("django"):
        return _django(value.partition(":")[2] or "default")
    url = engine_database if value in ("self", "1", "true") else value
    try:
        dialect = _relay_db.dialect_of_url(url)
    except ValueError as exc:
        raise EngineConfigError(f"relay_outbox: {exc}") from None

    def open_db() -> _relay_db.OutboxDb:
        return _relay_db.open_url(url)

    listen = _relay.postgres_listener(url) if dialect == "postgresql" else None
    return Target(open_db, listen)


def _django(alias: str) -> Target:
    from django.db import connections

    def open_db() -> _relay_db.OutboxDb:
        wrapper = connections[alias]  # this thread's own connection

        def raw() -> Any:
            wrapper.close()  # after an error: Django opens a new one
            wrapper.ensure_connection()
            wrapper.set_autocommit(False)
            return wrapper.connection

        wrapper.ensure_connection()
        wrapper.set_autocommit(False)
        return _relay_db.OutboxDb(wrapper.connection, wrapper.vendor, owns=False, reconnect=raw)

    def listen() -> Any:
        other = connections.create_connection(alias)
        other.ensure_connection()
        return other.connection

    def release() -> None:
        connections[alias].close()  # this thread's own connection

    vendor = connections[alias].vendor
    return Target(open_db, listen if vendor == "postgresql" else None, release)
