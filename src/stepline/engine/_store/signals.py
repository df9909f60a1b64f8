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
