"""The SQL of AI token usage (``tx.tokens``): what model requests used, and token budgets.

A part of both stores' transactions (``part``). Two kinds of rows:

* ``model_usage``: one row per model-request step, written in the transaction that
  records the step (``engine._runs.tokens``), keyed by run and step so that a step
  recorded twice counts once; retention deletes the rows with their run. Read per run,
  and per function in time buckets through ``(function_id, at)``.
* a token budget's count for one key and period window is a row of ``limits`` (scope
  ``tokens:<budget>``, key ``<window start>:<key>``), added to in one upsert (atomic on
  both stores) and swept by retention once its window has passed (``expires_at``).

Postgres' transaction takes ``PostgresTokensSql``, which floors with ``FLOOR`` (its
``CAST`` rounds).
"""

from __future__ import annotations

import dataclasses

from stepline.engine._store.part import Part
from stepline.engine._store.rows import insert

__all__ = ["ModelUsage", "PostgresTokensSql", "TokenBuckets", "TokensSql", "budget_cell"]

_INSERT = insert(
    "model_usage",
    "run_id, step_id, function_id, at, input_tokens, output_tokens, model",
    on_conflict="(run_id, step_id) DO NOTHING",
)
_CHARGE = (
    insert("limits", "scope, key, value, expires_at", on_conflict="(scope, key) DO UPDATE SET ")
    + "value = limits.value + excluded.value, expires_at = excluded.expires_at"
)


@dataclasses.dataclass(frozen=True, slots=True)
class ModelUsage:
    """What one model-request step used."""

    run_id: str
    step_id: str
    function_id: str
    at: float
    input_tokens: int
    output_tokens: int
    model: str | None


@dataclasses.dataclass(slots=True)
class TokenBuckets:
    """A function's usage per bucket (index 0 starts at ``since``) and per model."""

    input_tokens: list[int]
    output_tokens: list[int]
    requests: list[int]
    runs: list[int]
    #: the whole window, per model: (input tokens, output tokens, requests)
    models: dict[str, tuple[int, int, int]]


def budget_cell(budget: str, key: str, window_start: float) -> tuple[str, str]:
    """The ``limits`` row (scope, key) counting ``budget``'s tokens for ``key`` in the
    window starting at ``window_start``."""
    return f"tokens:{budget}", f"{int(window_start)}:{key}"


class TokensSql(Part):
    """``Tx.tokens``: model usage rows and token budgets' counts."""

    __slots__ = ()

    @staticmethod
    def _floor(expr: str) -> str:
        # times in the window are at or after its start: truncation is the floor
        return f"CAST({expr} AS INTEGER)"

    def record_usage(self, usage: ModelUsage) -> bool:
        """Keep ``usage``; False when its step's usage was kept already (nothing written)."""
        cursor = self._x(
            _INSERT,
            (
                usage.run_id,
                usage.step_id,
                usage.function_id,
                usage.at,
                usage.input_tokens,
                usage.output_tokens,
                usage.model,
            ),
        )
        return bool(cursor.rowcount)

    def charge(self, budget: str, key: str, window: tuple[float, float], tokens: int) -> None:
        """Add ``tokens`` to ``budget``'s count for ``key`` in ``window`` (start, end)."""
        scope, cell = budget_cell(budget, key, window[0])
        self._x(_CHARGE, (scope, cell, float(tokens), window[1]))

    def budget_used(self, budget: str, key: str, window_start: float) -> int:
        """The tokens charged to ``budget`` for ``key`` in the window from ``window_start``."""
        scope, cell = budget_cell(budget, key, window_start)
        row = self._x(
            "SELECT value FROM limits WHERE scope = ? AND key = ?", (scope, cell)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def run_usage(self, run_id: str) -> list[ModelUsage]:
        """A run's model-request steps' usage, in the order they were recorded."""
        rows = self._x(
            "SELECT run_id, step_id, function_id, at, input_tokens, output_tokens, model "
            "FROM model_usage WHERE run_id = ? ORDER BY at, step_id",
            (run_id,),
        ).fetchall()
        return [
            ModelUsage(str(r[0]), str(r[1]), str(r[2]), float(r[3]), int(r[4]), int(r[5]), r[6])
            for r in rows
        ]

    def function_usage(
        self, function_id: str, *, since: float, bucket: float, count: int
    ) -> TokenBuckets:
        """``function_id``'s model usage in ``count`` buckets of ``bucket`` s from ``since``."""
        until = since + bucket * count
        b = self._floor("(at - ?) / ?")
        where = "function_id = ? AND at >= ? AND at < ?"
        found = TokenBuckets([0] * count, [0] * count, [0] * count, [0] * count, {})
        rows = self._x(
            f"SELECT {b} AS b, SUM(input_tokens), SUM(output_tokens), COUNT(*), "
            f"COUNT(DISTINCT run_id) FROM model_usage WHERE {where} GROUP BY b",
            (since, bucket, function_id, since, until),
        ).fetchall()
        for index, tokens_in, tokens_out, requests, runs in rows:
            at = int(index)
            if 0 <= at < count:
                found.input_tokens[at] = int(tokens_in or 0)
                found.output_tokens[at] = int(tokens_out or 0)
                found.requests[at] = int(requests)
                found.runs[at] = int(runs)
        by_model = self._x(
            "SELECT COALESCE(model, ''), SUM(input_tokens), SUM(output_tokens), COUNT(*) "
            f"FROM model_usage WHERE {where} GROUP BY COALESCE(model, '')",
            (function_id, since, until),
        ).fetchall()
        found.models = {
            str(m): (int(i or 0), int(o or 0), int(n)) for m, i, o, n in sorted(by_model)
        }
        return found


class PostgresTokensSql(TokensSql):
    """Postgres' flavour: ``FLOOR``."""

    __slots__ = ()

    @staticmethod
    def _floor(expr: str) -> str:
        return f"FLOOR({expr})"
