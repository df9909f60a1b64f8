"""The SQL of searchable run attributes (``tx.attributes``, table ``run_attributes``): set,
read, filter by them.

A part of both stores' transactions (``part``), for run control. An attribute is a name
and a string value, one row each, so that ``runs_query`` filters by any of them through
the ``(name, value, run_id)`` index; retention deletes them with their run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from stepline.engine._store.part import Part, TxSql
from stepline.engine._store.rows import insert

#: the most attributes one run keeps, the longest name and value (characters)
MAX_ATTRIBUTES = 32
MAX_NAME = 64
MAX_VALUE = 256

_UPSERT = (
    insert("run_attributes", "run_id, name, value")
    + " ON CONFLICT (run_id, name) DO UPDATE SET value = excluded.value"
)


class AttributesSql(Part):
    """``Tx.attributes``: the methods over ``run_attributes``."""

    __slots__ = ("_ahead",)

    def __init__(self, tx: TxSql) -> None:
        super().__init__(tx)
        #: runs' attributes as ``read_ahead`` read them (a run's dropped once set here)
        self._ahead: dict[str, dict[str, str]] = {}

    def read_ahead(self, run_ids: Sequence[str]) -> None:
        """Read the attributes of many runs at once (a bulk action's batch):
        ``get_attributes`` answers for them with no query."""
        found = self.get_attributes(run_ids)
        for run_id in run_ids:
            self._ahead[run_id] = found.get(run_id, {})

    def read_already(self, run_id: str) -> dict[str, str] | None:
        """A run's attributes as ``read_ahead`` read them (None: not read ahead)."""
        found = self._ahead.get(run_id)
        return None if found is None else dict(found)

    def set_attributes(self, run_id: str, attributes: Mapping[str, str]) -> int:
        """Set (or replace) ``attributes`` on a run; returns how many it has now.

        The caller checked names and values (``_control.attributes.checked``); the count
        lets it refuse a run that would pass ``MAX_ATTRIBUTES``.
        """
        self._ahead.pop(run_id, None)
        if attributes:
            self._many(_UPSERT, [(run_id, k, v) for k, v in sorted(attributes.items())])
        row = self._x("SELECT COUNT(*) FROM run_attributes WHERE run_id = ?", (run_id,))
        return int(row.fetchone()[0])

    def get_attributes(self, run_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """The attributes of each run that has any, by run id."""
        found: dict[str, dict[str, str]] = {}
        ahead = self._ahead
        for run_id in ahead.keys() & set(run_ids):
            if ahead[run_id]:
                found[run_id] = dict(ahead[run_id])
        unique = sorted(set(run_ids) - ahead.keys())
        for start in range(0, len(unique), 200):  # bounded IN lists
            chunk = unique[start : start + 200]
            rows = self._x(
                "SELECT run_id, name, value FROM run_attributes "
                f"WHERE run_id IN ({','.join('?' * len(chunk))}) ORDER BY run_id, name",
                chunk,
            )
            for run_id, name, value in rows:
                found.setdefault(str(run_id), {})[str(name)] = str(value)
        return found

    def runs_with(self, name: str, value: str, *, after: str | None, limit: int) -> list[str]:
        """The ids of the runs whose attribute ``name`` is ``value``, oldest first (by
        creation time, then id), after the run ``after``; at most ``limit``."""
        start = "(r.created_at > c.created_at OR (r.created_at = c.created_at AND r.run_id > ?))"
        rows = self._x(
            "SELECT r.run_id FROM run_attributes a JOIN runs r ON r.run_id = a.run_id "
            f"LEFT JOIN runs c ON c.run_id = ? WHERE a.name = ? AND a.value = ? "
            f"AND (c.run_id IS NULL OR {start}) ORDER BY r.created_at, r.run_id LIMIT ?",
            (after or "", name, value, after or "", limit),
        )
        return [str(row[0]) for row in rows]
