"""Postgres behind a connection pooler (PgBouncer): what each pool mode leaves the store.

A pooler in **session** mode lends a client one server connection for as long as the
client stays connected: everything works as on Postgres itself, except that it does not
pass a URL's ``options=`` on to the server, so a schema named there is lost. In
**transaction** mode it lends one only for a transaction, so nothing may outlive one:

* ``LISTEN`` registers on a server connection the next transaction may not get; the
  listener goes to the direct URL, or there is none and nodes poll;
* a session advisory lock (migrations) may be taken and released on two server
  connections; migrations go to the direct URL, or the engine refuses to migrate;
* psycopg's prepared statements are named on one server connection and used on another
  (PgBouncer before 1.21); they are turned off (``prepare_threshold=None``);
* ``search_path``: set in each transaction (``SET LOCAL``) when a schema is named.

Pure: the store asks this module what to connect where and which statements to send.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Literal

Pooler = Literal["none", "session", "transaction"]
#: the pool modes ``STEPLINE_DB_POOLER`` names
POOLERS: tuple[Pooler, ...] = ("none", "session", "transaction")
#: the channel of the check at start that a ``NOTIFY`` committed through the pooled URL
#: reaches a ``LISTEN`` on the session URL (the engine's own channels wake other nodes)
PROBE_CHANNEL = "stepline_probe"
#: seconds the check waits: a notification is delivered at commit, in milliseconds
PROBE_SECONDS = 3.0
#: seconds between registry reloads when nothing listens: an app synced through another
#: node is known here within this (a call of a function not known yet reloads at once)
APPS_POLL_SECONDS = 5.0
#: a schema name as ``SET search_path TO`` takes it unquoted (folded to lower case)
_SCHEMA = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")


@dataclasses.dataclass(frozen=True, slots=True)
class Connections:
    """Where the Postgres store's connections go, and what each must send first.

    Attributes:
        url: the transactions' pool (``STEPLINE_DATABASE_URL``: the pooler, if any).
        direct_url: Postgres itself, for what needs a session (``LISTEN``, migrations);
            ``STEPLINE_DATABASE_DIRECT_URL``.
        pooler: the pool mode in front of ``url`` (``STEPLINE_DB_POOLER``).
        schema: the schema the engine's tables live in (``STEPLINE_DB_SCHEMA``); None:
            the connection's own ``search_path``.
    """

    url: str
    direct_url: str | None = None
    pooler: Pooler = "none"
    schema: str | None = None

    @property
    def session_url(self) -> str | None:
        """Where ``LISTEN`` and migrations go; None: nowhere (a transaction pooler and
        no direct URL: nodes poll, and the schema is migrated apart)."""
        if self.direct_url:
            return self.direct_url
        return None if self.pooler == "transaction" else self.url

    @property
    def pool_options(self) -> dict[str, Any]:
        """psycopg's connection options for the pool's connections."""
        # psycopg prepares a statement at its fifth use (executemany's at once) under a
        # name only that server connection knows
        return {"prepare_threshold": None} if self.pooler == "transaction" else {}

    @property
    def binds_here(self) -> bool:
        """Whether a transaction's statements are bound by the engine and ride together
        (``pg_tx.Pending``): where there are no prepared statements to keep."""
        return self.pooler == "transaction"

    @property
    def on_connect(self) -> str | None:
        """The statement a pooled connection sends once, when it opens."""
        return None if self.pooler == "transaction" else self.on_session

    @property
    def on_session(self) -> str | None:
        """The statement a session connection (``session_url``) sends once."""
        return None if self.schema is None else f"SET search_path TO {self.schema}"

    @property
    def on_begin(self) -> str | None:
        """The statement each transaction starts with (a round trip: only when needed)."""
        if self.schema is None or self.pooler != "transaction":
            return None
        return f"SET LOCAL search_path TO {self.schema}"


def problem(connections: Connections, *, migrate: bool) -> str | None:
    """Why an engine cannot start with these connections (one line naming the setting
    to change), or None."""
    pooler, schema = connections.pooler, connections.schema
    if pooler not in POOLERS:
        return f"STEPLINE_DB_POOLER must be one of {', '.join(POOLERS)}, not {pooler!r}"
    if schema is not None and not _SCHEMA.match(schema):
        return f"STEPLINE_DB_SCHEMA must be a schema name (letters, digits, _), not {schema!r}"
    if pooler != "none" and "options" in _parameters(connections.url):
        return (
            f"STEPLINE_DB_POOLER={pooler}: PgBouncer does not pass the database URL's "
            "options= to Postgres (a search_path there is lost); name the schema with "
            "STEPLINE_DB_SCHEMA instead"
        )
    if pooler == "transaction" and migrate and connections.direct_url is None:
        return (
            "STEPLINE_DB_POOLER=transaction: migrations need a session of their own; set "
            "STEPLINE_DATABASE_DIRECT_URL to Postgres itself (not the pooler), or migrate "
            "with `stepline migrate --db <direct URL>` and start with --no-migrate"
        )
    return None


def unheard(connections: Connections) -> str:
    """The refusal when the check at start heard nothing: what to set instead."""
    if connections.direct_url is not None:
        return (
            f"a NOTIFY committed through the database URL did not reach a LISTEN on "
            f"STEPLINE_DATABASE_DIRECT_URL within {PROBE_SECONDS:g} s: the direct URL must "
            "reach the same database as the database URL, without a transaction pooler"
        )
    return (
        f"a NOTIFY committed through the database URL did not reach a LISTEN on it within "
        f"{PROBE_SECONDS:g} s: it goes through a transaction pooler; set "
        "STEPLINE_DB_POOLER=transaction (and STEPLINE_DATABASE_DIRECT_URL to Postgres "
        "itself, for LISTEN and migrations)"
    )


def _parameters(url: str) -> dict[str, Any]:
    from psycopg.conninfo import conninfo_to_dict

    try:
        return conninfo_to_dict(url)
    except Exception:  # malformed: libpq says so when the store connects
        return {}
