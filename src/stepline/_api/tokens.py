"""AI token usage and conversations, as flows (the handles and the client run them).

What model requests of ``stepline.ai`` agents used, as the engine keeps it with their
steps: ``GET /v1/runs/{id}/tokens`` (a run's), ``GET /v1/functions/{id}/tokens`` (a
function's over time) and ``GET /v1/token-budgets/{budget}`` (a budget's count for a key
in the period window holding now); and ``GET /v1/conversations/{id}/runs``, the runs of a
conversation in the order they started.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import urllib.parse
from typing import Any

from stepline import _settings
from stepline._api import metrics as _metrics
from stepline._api import runs as _runs
from stepline._api.metrics import Window
from stepline._api.runs import RunInfo
from stepline._transport import effects

__all__ = [
    "BudgetUsage",
    "budget_flow",
    "conversation_flow",
    "function_tokens_flow",
    "run_tokens_flow",
]


@dataclasses.dataclass(frozen=True, slots=True)
class BudgetUsage:
    """A token budget's count for one key in the period window holding now.

    Attributes:
        used: the tokens charged in the window so far.
        window_end: when the window ends (epoch seconds): the count starts again at 0.
    """

    used: int
    window_end: float


def _data(found: object, what: str) -> dict[str, Any]:
    if not isinstance(found, dict):
        raise _runs.ManagementError(f"the engine sent no token usage for {what}")
    return found


def run_tokens_flow(settings: _settings.Settings, run_id: str) -> effects.Flow[dict[str, Any]]:
    """``GET /v1/runs/{id}/tokens``; returns the answer's ``data``."""
    path = f"/v1/runs/{_runs.quote(run_id)}/tokens"
    return _data((yield from _runs.call(settings, "GET", path, what=run_id)), run_id)


def function_tokens_flow(
    settings: _settings.Settings,
    function_id: str,
    window: Window | None,
    *,
    since: dt.datetime | None,
    until: dt.datetime | None,
    bucket: dt.timedelta | None,
) -> effects.Flow[dict[str, Any]]:
    """``GET /v1/functions/{id}/tokens`` over a window; returns the answer's ``data``."""
    found = yield from _metrics.windowed_flow(
        settings, function_id, "tokens", window, since=since, until=until, bucket=bucket
    )
    return _data(found, function_id)


def budget_flow(
    settings: _settings.Settings, budget: str, key: str, period: float
) -> effects.Flow[BudgetUsage]:
    """``GET /v1/token-budgets/{budget}?key=&period=``: the count now."""
    query = urllib.parse.urlencode({"key": key, "period": repr(float(period))})
    path = f"/v1/token-budgets/{_runs.quote(budget)}?{query}"
    found = _data((yield from _runs.call(settings, "GET", path, what=budget)), budget)
    used, end = found.get("used"), found.get("window_end_epoch")
    if not isinstance(used, int) or not isinstance(end, (int, float)):
        raise _runs.ManagementError(f"the engine sent no count for the token budget {budget!r}")
    return BudgetUsage(used, float(end))


def conversation_flow(
    settings: _settings.Settings, conversation_id: str
) -> effects.Flow[list[RunInfo]]:
    """Every run of a conversation, oldest first (``GET /v1/conversations/{id}/runs``)."""
    runs: list[RunInfo] = []
    cursor: str | None = None
    while True:
        query = {"limit": "200", **({"cursor": cursor} if cursor else {})}
        path = (
            f"/v1/conversations/{_runs.quote(conversation_id)}/runs?{urllib.parse.urlencode(query)}"
        )
        page = yield from _runs.call(settings, "GET", path, what=conversation_id, whole=True)
        if not isinstance(page, dict):
            raise _runs.ManagementError(f"the engine sent no runs of {conversation_id!r}")
        runs.extend(RunInfo.from_wire(item) for item in page.get("data") or [])
        cursor = (page.get("metadata") or {}).get("next_cursor")
        if not cursor:
            return runs
