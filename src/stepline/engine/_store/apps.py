"""The store's SQL for apps and their functions (``tx.apps``: the registrations every node
serves)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from stepline._json import dumps, loads
from stepline.engine._errors import FunctionTakenError
from stepline.engine._model import AppRecord, FunctionRecord
from stepline.engine._store.part import Part
from stepline.engine._store.rows import APP_COLUMNS, FUNCTION_COLUMNS, upsert

_UPSERT_APP = upsert("apps", APP_COLUMNS, "app_id")
_UPSERT_FUNCTION = upsert("functions", FUNCTION_COLUMNS, "function_id")


class AppsSql(Part):
    """``Tx.apps``: apps and the functions each registered (a function id belongs to one
    app)."""

    __slots__ = ()

    def put_app(self, app: AppRecord, functions: Sequence[FunctionRecord]) -> bool:
        # a function id belongs to the app that registered it first; the lock holds the
        # check true until commit (two apps racing for one id: the second is refused)
        self._lock("functions:owners")
        self._tx.note_apps_changed()
        wanted = {f.function_id for f in functions}
        others = self._x(
            "SELECT function_id, app_id FROM functions WHERE app_id <> ?", (app.app_id,)
        )
        taken = {str(r[0]): str(r[1]) for r in others if r[0] in wanted}
        if taken:
            raise FunctionTakenError(app.app_id, taken)
        old = self.get_app(app.app_id)
        modified = old is None or old.checksum != app.checksum or old.url != app.url
        self._x(_UPSERT_APP, dataclasses.astuple(app))
        self._x("DELETE FROM functions WHERE app_id = ?", (app.app_id,))
        self._many(
            _UPSERT_FUNCTION,
            [(f.function_id, f.app_id, f.name, dumps(f.config), f.updated_at) for f in functions],
        )
        return modified

    def get_app(self, app_id: str) -> AppRecord | None:
        row = self._x(
            f"SELECT {APP_COLUMNS} FROM apps WHERE app_id = ?",
            (app_id,),
        ).fetchone()
        return None if row is None else AppRecord(*row)

    def list_apps(self) -> list[AppRecord]:
        rows = self._x(f"SELECT {APP_COLUMNS} FROM apps ORDER BY app_id")
        return [AppRecord(*r) for r in rows]

    def list_functions(self) -> list[FunctionRecord]:
        rows = self._x(f"SELECT {FUNCTION_COLUMNS} FROM functions ORDER BY function_id")
        return [FunctionRecord(r[0], r[1], r[2], loads(r[3]), r[4]) for r in rows]

    def set_app_error(self, url: str, error: str | None, now: float) -> None:
        self._x("UPDATE apps SET error = ?, synced_at = ? WHERE url = ?", (error, now, url))
