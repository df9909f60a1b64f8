"""The client's reading of a function's metrics (async, and a ``*_sync`` twin).

The figures the dashboard's function page charts, from
``GET /v1/functions/{id}/metrics``: per time bucket, runs started, completed, failed and
cancelled, the failure rate, p50/p95 run duration, the queue's depth and the start delay
flow control caused; the window's totals; the queue now.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from typing import TYPE_CHECKING, Any, Literal

from stepline import _settings
from stepline._api import management
from stepline._api import runs as _runs
from stepline._transport import effects, performers

if TYPE_CHECKING:
    from stepline._definition.function import Function

__all__ = ["MetricsMixin", "metrics_flow"]

Window = Literal["1h", "24h", "7d"]


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
    query: dict[str, str] = {}
    if window is not None:
        query["window"] = window
    for name, when in (("since", since), ("until", until)):
        if when is not None:
            query[name] = str(when.timestamp())
    if bucket is not None:
        query["bucket"] = str(bucket.total_seconds())
    path = f"/v1/functions/{urllib.parse.quote(function_id, safe='')}/metrics"
    if query:
        path += "?" + urllib.parse.urlencode(query)
    try:
        found = yield from _runs.call(settings, "GET", path, what=function_id)
    except _runs.RunNotFoundError:  # the only 404 of the route: no such function
        where = f"the engine at {settings.api_base_url}"
        message = _runs.not_registered_message(function_id, where)
        raise _runs.FunctionNotRegisteredError(message, status=404) from None
    if not isinstance(found, dict):
        raise _runs.ManagementError(f"the engine sent no metrics for {function_id!r}")
    return found


class MetricsMixin:
    """Mixed into ``Client``: a function's metrics."""

    settings: _settings.Settings
    _sync_transport: performers.SyncTransport
    _async_transport: performers.AsyncTransport

    async def function_metrics(
        self,
        function: Function | str,
        window: Window | None = None,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        bucket: dt.timedelta | None = None,
    ) -> dict[str, Any]:
        """A function's metrics over a window, as the dashboard's function page charts them.

        Args:
            function: the function, or its id (``"app-fn"``; a bare id gets this app's prefix).
            window: ``"1h"``, ``"24h"`` (the default) or ``"7d"``, in whole buckets of 1
                minute, 30 minutes and 4 hours.
            since: the start of another window (instead of ``window``).
            until: its end (default: now).
            bucket: the bucket size (default: one giving at most 60 buckets).

        Returns:
            ``{"since", "until", "bucket_seconds", "buckets": [...], "totals", "queue"}``:
            per bucket ``started``, ``completed``, ``failed``, ``cancelled``,
            ``failure_rate``, ``duration_p50_ms``/``_p95_ms``, ``queued`` and
            ``delay_p50_ms``/``_p95_ms`` (see docs/dashboard.md, "Function metrics").

        Raises:
            FunctionNotRegisteredError: the engine does not know the function.
            ManagementError: the engine is unreachable or refused the window (400).
        """
        flow = metrics_flow(
            self.settings, self._fn_id(function), window, since=since, until=until, bucket=bucket
        )
        return await effects.drive_async(flow, self._async_transport.perform)

    def function_metrics_sync(
        self,
        function: Function | str,
        window: Window | None = None,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        bucket: dt.timedelta | None = None,
    ) -> dict[str, Any]:
        """Blocking twin of ``function_metrics``."""
        flow = metrics_flow(
            self.settings, self._fn_id(function), window, since=since, until=until, bucket=bucket
        )
        return effects.drive_sync(flow, self._sync_transport.perform)

    def _fn_id(self, function: Function | str) -> str:
        return management.function_id(self.settings.app_id, function)
