"""The SQL of paused functions (``tx.controls``, table ``function_controls``): pause,
resume, what is paused.

A part of both stores' transactions (``part``), for run control. The paused set is read
once per transaction and kept for it: the worker's lease consults it for every call it
leases, and it is usually empty. In a Postgres write transaction the read takes a share
lock on the rows it returns, so a resume (which deletes its row first, then unparks the
function's calls) waits for every transaction that parked a call on the strength of that
row, and then sees the call.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from stepline.engine._store.part import Part, TxSql
from stepline.engine._store.rows import upsert

#: what a paused function's cron ticks do: start runs that queue, or start none
CronPolicy = Literal["queue", "skip"]

_UPSERT = upsert("function_controls", "function_id, paused_at, crons, reason", "function_id")


@dataclasses.dataclass(frozen=True, slots=True)
class FunctionPause:
    """A paused function: since when, what its cron ticks do, and why (if told)."""

    function_id: str
    paused_at: float
    crons: CronPolicy = "queue"
    reason: str | None = None


class ControlsSql(Part):
    """``Tx.controls``: the methods over ``function_controls``."""

    __slots__ = ("_paused",)

    def __init__(self, tx: TxSql) -> None:
        super().__init__(tx)
        #: the paused functions, once read
        self._paused: dict[str, FunctionPause] | None = None

    def none_paused(self) -> None:
        """No function is paused, as a statement of the transaction read in passing
        (``Tx.get_call``): ``paused_functions`` answers with no query of its own."""
        self._paused = {}

    def paused_functions(self) -> dict[str, FunctionPause]:
        """The paused functions by id (read once per transaction)."""
        if self._paused is None:
            share = " FOR SHARE" if self._row_lock() else ""  # Postgres, writing
            rows = self._x(
                "SELECT function_id, paused_at, crons, reason FROM function_controls "
                f"WHERE paused_at IS NOT NULL{share}"
            ).fetchall()
            self._paused = {
                str(r[0]): FunctionPause(
                    str(r[0]), float(r[1]), "skip" if r[2] == "skip" else "queue", r[3]
                )
                for r in rows
            }
        return dict(self._paused)

    def pause_function(self, pause: FunctionPause) -> None:
        """Mark a function paused (replacing an earlier pause's options)."""
        self._x(_UPSERT, (pause.function_id, pause.paused_at, pause.crons, pause.reason))
        self._paused = None

    def resume_function(self, function_id: str) -> bool:
        """Unmark a paused function; False if it was not paused."""
        row = self._x(
            "DELETE FROM function_controls WHERE function_id = ? RETURNING function_id",
            (function_id,),
        ).fetchone()
        self._paused = None
        return row is not None
