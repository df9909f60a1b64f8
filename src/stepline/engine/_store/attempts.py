"""The SQL of a step's failed attempts (``tx.attempts``, table ``step_attempts``): record
one, read a run's.

A part of both stores' transactions (``part``), for the run page's attempts. The ``steps``
row keeps a step's attempt count and its last error; this table keeps every attempt that
failed (when it started and ended, its error, when it was retried), one row each, written
only when an attempt fails: a step that succeeds first time costs nothing more, and the
successful last attempt of a step that failed before is the step row itself
(``_observe.attempts.history``). Attempts of a call that failed outside any step (the
function's own code) are kept under the call's step id (``"step"`` for a discovery call).
Retention deletes them with their run.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from stepline.engine._store.part import Part
from stepline.engine._store.rows import json_or_null, parsed_or_none, upsert

_COLUMNS = "run_id, step_id, attempt, started_at, ended_at, error, retry_at"
_UPSERT = upsert("step_attempts", _COLUMNS, "run_id, step_id, attempt")


@dataclasses.dataclass(frozen=True, slots=True)
class StepAttempt:
    """One attempt of a step (or of a call outside any step).

    Attributes:
        attempt: 1 for the first try.
        started_at: when the call making it was leased (None: not known).
        ended_at: when its answer was recorded.
        error: the error it failed with (None: it succeeded).
        retry_at: when the next attempt was due (None: it was the last).
    """

    run_id: str
    step_id: str
    attempt: int
    started_at: float | None
    ended_at: float | None
    error: dict[str, Any] | None = None
    retry_at: float | None = None


class AttemptsSql(Part):
    """``Tx.attempts``: the methods over ``step_attempts``."""

    __slots__ = ()

    def put_attempt(self, attempt: StepAttempt) -> None:
        """Record a failed attempt (a second record of the same attempt replaces it)."""
        self._x(
            _UPSERT,
            (
                attempt.run_id,
                attempt.step_id,
                attempt.attempt,
                attempt.started_at,
                attempt.ended_at,
                json_or_null(attempt.error),
                attempt.retry_at,
            ),
        )

    def get_attempts(self, run_id: str) -> list[StepAttempt]:
        """A run's recorded attempts, by step and attempt number."""
        rows = self._x(
            f"SELECT {_COLUMNS} FROM step_attempts WHERE run_id = ? ORDER BY step_id, attempt",
            (run_id,),
        )
        return [
            StepAttempt(str(r[0]), str(r[1]), int(r[2]), r[3], r[4], parsed_or_none(r[5]), r[6])
            for r in rows
        ]
