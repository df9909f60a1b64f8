"""The SQL of waits for a signal (``tx.signals``, column ``pauses.signal``): the waiting step
by its signal key.

A part of both stores' transactions (``part``), for run control. A wait for a signal is a
pause (kind ``signal``) whose ``signal`` column holds its key; the column is unique where
set, so at most one step waits under a key at a time. The pause row itself is written by
``insert_pause``; the key is set beside it in the same transaction.
"""

from __future__ import annotations

from stepline.engine._model import Pause
from stepline.engine._store.part import Part
from stepline.engine._store.rows import PAUSE_COLUMNS, read_pause


class SignalsSql(Part):
    """``Tx.signals``: the methods over ``pauses.signal``."""

    __slots__ = ()

    def set_pause_signal(self, pause_id: str, signal: str | None) -> None:
        """Give the pause its signal key (None: it no longer holds one)."""
        self._x("UPDATE pauses SET signal = ? WHERE pause_id = ?", (signal, pause_id))

    def signal_pause(self, signal: str) -> Pause | None:
        """The pause waiting under the signal key ``signal``, if any."""
        row = self._x(f"SELECT {PAUSE_COLUMNS} FROM pauses WHERE signal = ?", (signal,)).fetchone()
        return None if row is None else read_pause(row)

    def approval_waits(
        self,
        *,
        function_id: str | None = None,
        app_id: str | None = None,
        after: str = "",
        limit: int = 100,
    ) -> list[tuple[str, str, str, str, str | None]]:
        """The waits for a person's decision (``engine/_control/approvals.py``), by pause id:
        ``(run_id, step_id, function_id, app_id, started_by)`` of each, after ``after``."""
        where = ["p.signal IS NOT NULL", "p.context LIKE ?", "p.pause_id > ?"]
        args: list[object] = ['%"approval":true%', after]
        if function_id is not None:
            where.append("r.function_id = ?")
            args.append(function_id)
        if app_id is not None:
            where.append("r.app_id = ?")
            args.append(app_id)
        rows = self._x(
            "SELECT p.run_id, p.step_id, r.function_id, r.app_id, r.started_by "
            "FROM pauses p JOIN runs r ON r.run_id = p.run_id "
            f"WHERE {' AND '.join(where)} ORDER BY p.pause_id LIMIT ?",
            (*args, limit),
        )
        return [(str(r[0]), str(r[1]), str(r[2]), str(r[3]), r[4]) for r in rows]
