"""The SQL of deploy-check reports (``tx.deploy_checks``, tables ``deploy_checks`` and
``deploy_check_apps``): what a CI job's deploy check found, one row per upload.

A part of both stores' transactions (``part``). A report covers the apps its functions
belong to; ``deploy_check_apps`` links it to each (a report that covers none is linked
under ``""``), so the apps page finds an app's newest report through one index. Each app
keeps its newest ``KEEP`` reports: an upload drops the app's older links, and a report
no app links to any more goes with them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from stepline import _json
from stepline.engine._store.part import Part
from stepline.engine._store.rows import insert

#: the reports each app keeps (newest first)
KEEP = 100

_COLUMNS = "check_id, received_at, app_ids, ok, counts, report"


@dataclasses.dataclass(frozen=True, slots=True)
class DeployCheck:
    """One stored deploy-check report.

    Attributes:
        check_id: a ULID, in upload order.
        received_at: when the engine stored it (seconds since the epoch).
        app_ids: the apps its functions belong to, sorted.
        ok: the report's verdict (no run diverged or failed).
        counts: the report's ``counts`` object, as JSON text.
        report: the whole report, as JSON text.
    """

    check_id: str
    received_at: float
    app_ids: tuple[str, ...]
    ok: bool
    counts: str
    report: str


class DeployChecksSql(Part):
    """``Tx.deploy_checks``: the methods over ``deploy_checks``."""

    __slots__ = ()

    def put_check(self, check: DeployCheck, *, keep: int = KEEP) -> None:
        """Store ``check`` and drop what passes each of its apps' newest ``keep``."""
        apps = check.app_ids or ("",)
        self._x(
            insert("deploy_checks", _COLUMNS),
            (
                check.check_id,
                check.received_at,
                _json.dumps(list(check.app_ids)),
                1 if check.ok else 0,
                check.counts,
                check.report,
            ),
        )
        self._many(
            insert("deploy_check_apps", "app_id, check_id"),
            [(app_id, check.check_id) for app_id in apps],
        )
        for app_id in apps:
            self._x(
                "DELETE FROM deploy_check_apps WHERE app_id = ? AND check_id NOT IN "
                "(SELECT check_id FROM deploy_check_apps WHERE app_id = ? "
                "ORDER BY check_id DESC LIMIT ?)",
                (app_id, app_id, keep),
            )
        self._x(
            "DELETE FROM deploy_checks WHERE NOT EXISTS "
            "(SELECT 1 FROM deploy_check_apps a WHERE a.check_id = deploy_checks.check_id)"
        )

    def list_checks(self, app_id: str | None, limit: int) -> list[DeployCheck]:
        """The newest ``limit`` reports, newest first; of one app when ``app_id`` is set."""
        if app_id is None:
            rows = self._x(
                f"SELECT {_COLUMNS} FROM deploy_checks ORDER BY check_id DESC LIMIT ?", (limit,)
            )
        else:
            rows = self._x(
                f"SELECT {_COLUMNS} FROM deploy_checks WHERE check_id IN "
                "(SELECT check_id FROM deploy_check_apps WHERE app_id = ?) "
                "ORDER BY check_id DESC LIMIT ?",
                (app_id, limit),
            )
        return [_read(row) for row in rows]


def _read(row: Sequence[object]) -> DeployCheck:
    apps = _json.loads(str(row[2]))
    return DeployCheck(
        check_id=str(row[0]),
        received_at=float(row[1]),  # type: ignore[arg-type]
        app_ids=tuple(str(a) for a in apps) if isinstance(apps, list) else (),
        ok=bool(row[3]),
        counts=str(row[4]),
        report=str(row[5]),
    )
