"""What model requests used, recorded with their steps: usage rows and token budgets' charges.

A model-request step of a ``stepline.ai`` agent reports what it used in its op's
``opts``: ``{"ai": {"usage": {"input_tokens", "output_tokens", "model"}, "budgets":
[{"name", "key", "period"}]}}``. The transaction that records the step (an answer or a
checkpoint, ``recording``) keeps a usage row for it and adds its tokens to each budget's
count for the key, in the period window that holds the moment it is recorded; a step
recorded a second time (a retried answer) is neither kept nor charged again. Budget
windows are aligned on the epoch (``window``): a day's starts at midnight UTC, so every
engine node and the SDK's check agree on it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from stepline._protocol.opcodes import Opcode
from stepline.engine._store import Tx
from stepline.engine._store.tokens import ModelUsage
from stepline.engine._wire.response import ReportedOp

__all__ = ["KEY", "MAX_PERIOD", "ai_ops", "record", "window"]

#: the ``opts`` entry a model-request step reports its usage in
KEY = "ai"
#: the longest budget period, in seconds (a year)
MAX_PERIOD = 366 * 86_400.0


def window(now: float, period: float) -> tuple[float, float]:
    """The budget window of ``period`` seconds holding ``now``: (start, end), on the epoch."""
    start = math.floor(now / period) * period
    return start, start + period


def record(
    tx: Tx, run_id: str, function_id: str | None, ops: Iterable[ReportedOp], now: float
) -> None:
    """Keep the usage of the model-request steps among ``ops`` and charge their budgets."""
    for op in ops:
        meta = op.opts.get(KEY) if op.opts else None
        if op.op is not Opcode.STEP_RUN or not isinstance(meta, dict):
            continue
        usage = meta.get("usage")
        if not isinstance(usage, dict):
            continue
        tokens_in = _count(usage.get("input_tokens"))
        tokens_out = _count(usage.get("output_tokens"))
        model = usage.get("model")
        row = ModelUsage(
            run_id,
            op.id,
            function_id or "",
            now,
            tokens_in,
            tokens_out,
            model[:200] if isinstance(model, str) else None,
        )
        if not tx.tokens.record_usage(row):
            continue  # recorded before: charged then
        for budget in meta.get("budgets") or ():
            charge = _budget(budget)
            if charge is not None and tokens_in + tokens_out > 0:
                name, key, period = charge
                tx.tokens.charge(name, key, window(now, period), tokens_in + tokens_out)


def ai_ops(ops: Iterable[ReportedOp]) -> list[ReportedOp]:
    """The ops that report a model request's usage (usually none: one look at each)."""
    return [op for op in ops if op.opts and KEY in op.opts]


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return value


def _budget(raw: Any) -> tuple[str, str, float] | None:
    """A budget entry as (name, key, period seconds); None for one that is malformed."""
    if not isinstance(raw, dict):
        return None
    name, key, period = raw.get("name"), raw.get("key"), raw.get("period")
    if not (isinstance(name, str) and 0 < len(name) <= 200 and isinstance(key, str)):
        return None
    if isinstance(period, bool) or not isinstance(period, (int, float)):
        return None
    if not (1 <= period <= MAX_PERIOD) or len(key) > 512:
        return None
    return name, key, float(period)
