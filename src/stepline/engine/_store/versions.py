"""The SQL of app versions (``app_versions``) and of the runs started on them.

``tx.versions``, a part of both stores' transactions (``part``): the engine's view of
versions is in ``engine._apps.versions``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from stepline._json import dumps, loads
from stepline._status import RunStatus
from stepline.engine._store.part import Part
from stepline.engine._store.rows import upsert

VERSION_COLUMNS = (
    "app_id, version, url, synced_at, checksum, functions, registered_at, sdk, framework, mode"
)
_UPSERT_VERSION = upsert("app_versions", VERSION_COLUMNS, "app_id, version")
_ENDED = tuple(status.value for status in RunStatus if status.terminal)
_LIVE = f"status NOT IN ({','.join('?' * len(_ENDED))})"


@dataclasses.dataclass(frozen=True, slots=True)
class AppVersion:
    """One registered version of an app.

    Attributes:
        url: the URL that serves it.
        synced_at: its last sync (a re-sync of an unchanged version updates only this).
        registered_at: when it was first registered as it is now (new, or changed): the
            newest of an app's versions is its latest, the one new runs start on.
        functions: function id to stored config, as the ``functions`` table holds them.
    """

    app_id: str
    version: str
    url: str
    synced_at: float
    checksum: str
    functions: dict[str, dict[str, Any]]
    registered_at: float
    sdk: str | None = None
    framework: str | None = None
    mode: str | None = None


def _read(row: Sequence[Any]) -> AppVersion:
    return AppVersion(
        app_id=row[0],
        version=row[1],
        url=row[2],
        synced_at=float(row[3] or 0.0),
        checksum=row[4] or "",
        functions=loads(row[5]),
        registered_at=float(row[6]),
        sdk=row[7],
        framework=row[8],
        mode=row[9],
    )


class VersionsSql(Part):
    """``Tx.versions``: the methods over ``app_versions``."""

    __slots__ = ()

    def lock_app_versions(self, app_id: str) -> None:
        """Serialise changes to an app's versions until the transaction ends (Postgres)."""
        self._lock(f"versions:{app_id}")

    def list_app_versions(self, app_id: str | None = None) -> list[AppVersion]:
        """Every registered version (of one app), oldest registration first."""
        where, args = ("WHERE app_id = ? ", (app_id,)) if app_id is not None else ("", ())
        rows = self._x(
            f"SELECT {VERSION_COLUMNS} FROM app_versions {where}"
            "ORDER BY app_id, registered_at, version",
            args,
        )
        return [_read(r) for r in rows]

    def put_app_version(self, version: AppVersion) -> None:
        """Add or replace one version of an app."""
        self._tx.note_apps_changed()
        self._x(
            _UPSERT_VERSION,
            (
                version.app_id,
                version.version,
                version.url,
                version.synced_at,
                version.checksum,
                dumps(version.functions),
                version.registered_at,
                version.sdk,
                version.framework,
                version.mode,
            ),
        )

    def delete_app_versions(self, app_id: str, versions: Sequence[str] | None = None) -> None:
        """Forget some (or, with None, all) versions of an app."""
        self._tx.note_apps_changed()
        if versions is None:
            self._x("DELETE FROM app_versions WHERE app_id = ?", (app_id,))
            return
        for version in versions:
            self._x("DELETE FROM app_versions WHERE app_id = ? AND version = ?", (app_id, version))

    def live_runs_by_version(self, app_id: str) -> dict[str, int]:
        """How many runs of an app that have not ended started on each version."""
        rows = self._x(
            "SELECT app_version, COUNT(*) FROM runs WHERE app_id = ? AND app_version IS NOT NULL "
            f"AND {_LIVE} GROUP BY app_version",
            (app_id, *_ENDED),
        )
        return {str(r[0]): int(r[1]) for r in rows}

    def live_run_ids(self, app_id: str, version: str) -> list[str]:
        """The runs of an app that started on ``version`` and have not ended."""
        rows = self._x(
            f"SELECT run_id FROM runs WHERE app_id = ? AND app_version = ? AND {_LIVE} "
            "ORDER BY run_id",
            (app_id, version, *_ENDED),
        )
        return [str(r[0]) for r in rows]
