"""The schema version a database records, against the newest one an engine knows.

An engine never runs on a schema newer than it knows: a newer release migrated the
database and may keep state there this engine does not read (a paused function, say), so
running its work could undo what the newer one decided. At start (and in ``stepline
migrate``) both stores refuse such a database with ``SchemaTooNewError``; a running engine
reads the version now and then (``_worker/schema_watch.py``) and stops leasing once it
moves past. SQLite records the version in ``PRAGMA user_version``, Postgres in the table
``stepline_schema`` (one row per migration applied).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from stepline._identity import VERSION

if TYPE_CHECKING:
    from stepline.engine._store import Tx
    from stepline.engine._store.sql import SqlTx

#: the statement reading the recorded version, per store
SQLITE_QUERY = "PRAGMA user_version"
POSTGRES_QUERY = "SELECT COALESCE(MAX(version), 0) FROM stepline_schema"


class SchemaTooNewError(RuntimeError):
    """The database's schema is newer than this engine knows: another release migrated it.

    Attributes:
        found: the version the database records.
        known: the newest version this engine knows.
    """

    def __init__(self, found: int, known: int) -> None:
        super().__init__(refusal(found, known))
        self.found = found
        self.known = known


def refusal(found: int, known: int) -> str:
    """The one line an operator reads: both versions and what to do."""
    return (
        f"the database schema is at version {found}, newer than this engine knows "
        f"(stepline {VERSION} knows up to version {known}): upgrade stepline to the release "
        "that migrated it, or restore the backup taken before that migration to go back"
    )


def newest(migrations: int, cap: int | None) -> int:
    """The newest version an engine applies and accepts: its migrations, or fewer
    (``EngineSettings.known_schema``: a test playing an earlier release)."""
    return migrations if cap is None else max(0, min(cap, migrations))


def check(found: int, known: int) -> None:
    """Raise ``SchemaTooNewError`` when ``found`` is past ``known``."""
    if found > known:
        raise SchemaTooNewError(found, known)


def recorded(tx: Tx, *, postgres: bool) -> int:
    """The version the database records, read in ``tx`` (0: a database never migrated)."""
    row = cast("SqlTx", tx).execute(POSTGRES_QUERY if postgres else SQLITE_QUERY).fetchone()
    return int(row[0]) if row else 0
