"""The SQL of saved views (``tx.saved_views``, table ``saved_views``): a person's named run
queries, each with the columns the runs page shows for it.

A part of both stores' transactions (``part``). A view belongs to the principal that
saved it (``principal``: who the request's credential names) and is keyed by its name
within that principal's views; saving a name again replaces that view.
"""

from __future__ import annotations

import dataclasses

from stepline import _json
from stepline.engine._store.part import Part

_COLUMNS = "principal, name, query, columns, updated_at"


@dataclasses.dataclass(frozen=True, slots=True)
class SavedView:
    """One saved view.

    Attributes:
        principal: who saved it.
        name: its name, unique among the principal's views.
        query: the run query (``_store/run_query``), possibly empty (every run).
        columns: the runs page's columns, in order.
        updated_at: when it was last saved (seconds since the epoch).
    """

    principal: str
    name: str
    query: str
    columns: tuple[str, ...]
    updated_at: float


class SavedViewsSql(Part):
    """``Tx.saved_views``: the methods over ``saved_views``."""

    __slots__ = ()

    def list_views(self, principal: str) -> list[SavedView]:
        """A principal's views, by name."""
        rows = self._x(
            f"SELECT {_COLUMNS} FROM saved_views WHERE principal = ? ORDER BY name", (principal,)
        )
        return [_read(row) for row in rows]

    def count_views(self, principal: str) -> int:
        """How many views a principal has."""
        row = self._x("SELECT COUNT(*) FROM saved_views WHERE principal = ?", (principal,))
        return int(row.fetchone()[0])

    def put_view(self, view: SavedView) -> None:
        """Save ``view``, replacing the principal's view of that name."""
        self._x(
            f"INSERT INTO saved_views ({_COLUMNS}) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (principal, name) DO UPDATE SET query = excluded.query, "
            "columns = excluded.columns, updated_at = excluded.updated_at",
            (
                view.principal,
                view.name,
                view.query,
                _json.dumps(list(view.columns)),
                view.updated_at,
            ),
        )

    def delete_view(self, principal: str, name: str) -> bool:
        """Delete a principal's view; False when it had none of that name."""
        cursor = self._x(
            "DELETE FROM saved_views WHERE principal = ? AND name = ?", (principal, name)
        )
        return bool(cursor.rowcount)


def _read(row: tuple[object, ...]) -> SavedView:
    columns = _json.loads(str(row[3]))
    return SavedView(
        principal=str(row[0]),
        name=str(row[1]),
        query=str(row[2]),
        columns=tuple(str(c) for c in columns),
        updated_at=float(row[4]),  # type: ignore[arg-type]
    )
