"""Reading a function's metrics, as a flow (``FunctionHandle.metrics`` runs it).

The figures the dashboard's function page charts, from
``GET /v1/functions/{id}/metrics``: per time bucket, runs started, completed, failed and
cancelled, the failure rate, p50/p95 run duration, the queue's depth and the start delay
flow control caused; the window's totals; the queue now.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from typing import Any, Literal

from stepline import _settings
from stepline._api import runs as _runs
from stepline._transport import effects

__all__ = ["Window", "metrics_flow", "windowed_flow"]

Window = Literal["1h", "6h", "24h", "7d"]


def metrics_flow(
    settings: _settings.Settings,
    function_id: str,
    window: Window | None,
    *,
    since: dt.datetime | None,
    until: dt.datetime | None,
    bucket: dt.timedelta | None,
) -> effects.Flow[dict[str, Any]]:
    """``GET /v1/functions/{id}/metrics``; returns the answer's ``data``."""
    found = yield from windowed_flow(
        settings, function_id, "metrics", window, since=since, until=until, bucket=bucket
    )
    if not isinstance(found, dict):
        raise _runs.ManagementError(f"the engine sent no metrics for {function_id!r}")
    return found


def windowed_flow(
    settings: _settings.Settings,
    function_id: str,
    figures: str,
    window: Window | None,
    *,
    since: dt.datetime | None,
    until: dt.datetime | None,
    bucket: dt.timedelta | None,
) -> effects.Flow[Any]:
    """``GET /v1/functions/{id}/<figures>`` over a window (a named one, or ``since`` to
    ``until`` in buckets), as the metrics and tokens routes take it; the answer as sent."""
    query: dict[str, str] = {}
    if window is not None:
        query["window"] = window
    for name, when in (("since", since), ("until", until)):
        if when is not None:
            query[name] = str(when.timestamp())
    if bucket is not None:
        query["bucket"] = str(bucket.total_seconds())
    path = f"/v1/functions/{urllib.parse.quote(function_id, safe='')}/{figures}"
    if query:
        path += "?" + urllib.parse.urlencode(query)
    try:
        return (yield from _runs.call(settings, "GET", path, what=function_id))
    except _runs.RunNotFoundError:  # the only 404 of these routes: no such function
        raise _runs.unknown_function(settings, function_id) from None
