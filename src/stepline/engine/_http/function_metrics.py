"""REST v1 for a function's metrics: the figures behind the function page's charts.

``GET /v1/functions/{function_id}/metrics?window=1h|6h|24h|7d|auto`` (24 h when nothing is
asked; ``auto``: the smallest of these that holds the function's whole history, so a young
deployment's charts spread over their bars; the answer's ``window`` names the one taken):
per time bucket, the runs started (created), completed, failed and cancelled, the failure
rate (failed over completed and failed: a cancel is neither), p50/p95 run duration (first
call to end, by end time), the queue's depth at the bucket's end (runs created and not
yet started) and the start delay flow control caused (creation to first call: held by
concurrency, throttle, debounce, batching, priority or a pause; by start time); then the
whole window's totals and the queue now (live runs, those held per reason, the function's
jobs due, leased, parked and scheduled). ``since``/``until`` (RFC 3339 or unix seconds)
and ``bucket`` (seconds, or ``30s``, ``5m``, ``1h``, ``1d``) ask for another window; a
window that cannot be drawn is a 400 naming the parameter. 404 for an unknown function.
Behind the bearer check and dev-mode guard of every ``/v1`` route (``api.py`` wires it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import starlette.requests
import starlette.responses

from stepline._protocol import durations
from stepline.engine._engine import Engine
from stepline.engine._errors import NotFoundError
from stepline.engine._http import views, wire
from stepline.engine._http.wire import ApiError
from stepline.engine._store import RunFilter, Tx
from stepline.engine._store.function_metrics import FunctionMetrics, Spread

Request = starlette.requests.Request
Response = starlette.responses.Response
Handler = Callable[[Request], Awaitable[Response]]

#: The windows the dashboard offers: (span, bucket) in seconds
WINDOWS: dict[str, tuple[float, float]] = {
    "1h": (3_600.0, 60.0),
    "6h": (21_600.0, 600.0),
    "24h": (86_400.0, 1_800.0),
    "7d": (604_800.0, 14_400.0),
}
DEFAULT_WINDOW = "24h"
#: ``window=auto``: the preset picked from the function's history (``pick``)
AUTO = "auto"
#: Bucket sizes picked for a ``since``/``until`` window without ``bucket``
_NICE = (1, 5, 10, 30, 60, 300, 600, 1_800, 3_600, 10_800, 21_600, 43_200, 86_400, 604_800)
MAX_BUCKETS = 500
#: Buckets aimed at when ``bucket`` is left out
_AIM = 60


@dataclasses.dataclass(frozen=True, slots=True)
class Window:
    """``count`` buckets of ``bucket`` seconds from ``since``; ``name`` for a preset."""

    since: float
    bucket: float
    count: int
    name: str | None = None

    @property
    def until(self) -> float:
        return self.since + self.bucket * self.count


def pick(now: float, older: Callable[[float], bool]) -> str:
    """The smallest preset no run precedes, else the largest (``older(t)``: a run before ``t``).

    Each preset gives 30 to 60 buckets, so a function an hour old gets an hour's bars
    rather than one bar at the edge of a day.
    """
    presets = sorted(WINDOWS, key=lambda name: WINDOWS[name][0])
    return next((n for n in presets[:-1] if not older(now - WINDOWS[n][0])), presets[-1])


def window(query: Mapping[str, str], now: float) -> Window:
    """The window a request's query asks for (pure); ``ApiError`` 400 when it cannot be drawn.

    ``window=auto`` is resolved by the caller (``pick``) before it asks here.
    """
    name = query.get("window") or None
    since = _time(query.get("since"), "since")
    until = _time(query.get("until"), "until")
    bucket = _bucket(query.get("bucket"))
    if name is not None:
        if since is not None or until is not None:
            raise ApiError(400, "window: give either window or since/until, not both")
        if name not in WINDOWS:
            raise ApiError(400, f"window: want one of {', '.join(WINDOWS)}, got {name[:40]!r}")
    if since is None:
        if until is not None:
            raise ApiError(400, "until: give since too")
        name = name or DEFAULT_WINDOW
        span, preset = WINDOWS[name]
        bucket = bucket or preset
        _check_count(span / bucket)
        # whole buckets, the last one holding now: the edges stay put as time passes
        end = (math.floor(now / bucket) + 1) * bucket
        count = math.ceil(span / bucket)
        return Window(end - count * bucket, bucket, count, name)
    until = now if until is None else until
    if until <= since:
        raise ApiError(400, "until: must be after since")
    span = until - since
    if bucket is None:
        bucket = float(next((b for b in _NICE if span / b <= _AIM), _NICE[-1]))
    _check_count(span / bucket)
    return Window(since, bucket, max(1, math.ceil(span / bucket)))


def _time(text: str | None, name: str) -> float | None:
    problem = f"{name}: want a time between 1970 and 5138, got {text!r}"
    with contextlib.suppress(ValueError, TypeError):  # seconds: the window's bounds say more
        if not (0 <= float(text or "") < 1e11):  # NaN too
            raise ApiError(400, problem)
    value = wire.timestamp(text, name)
    if value is not None and not (math.isfinite(value) and 0 <= value < 1e11):
        raise ApiError(400, problem)
    return value


def _bucket(text: str | None) -> float | None:
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        try:
            value = durations.parse_duration(text).total_seconds()
        except ValueError:
            value = math.nan
    if not (math.isfinite(value) and value >= 1):
        raise ApiError(400, f"bucket: want seconds (1 or more) or a duration like 5m, got {text!r}")
    return value


def _check_count(count: float) -> None:
    if count > MAX_BUCKETS:
        raise ApiError(400, f"bucket: too small for the window ({MAX_BUCKETS} buckets at most)")


def table(engine: Engine) -> list[tuple[str, str, Handler]]:
    """The routes, as ``api._Api.routes`` lists them (method, path, handler)."""

    async def metrics(request: Request) -> Response:
        function_id = request.path_params["function_id"]
        now = engine.clock.now()
        query = dict(request.query_params)
        auto = query.get("window") == AUTO
        # every other parameter is checked before the store is read, against the largest
        # window auto may pick (a bucket that fits it fits every smaller one)
        largest = max(WINDOWS, key=lambda name: WINDOWS[name][0])
        asked = window({**query, "window": largest} if auto else query, now)

        def read(tx: Tx) -> tuple[Window, FunctionMetrics] | None:
            if all(f.function_id != function_id for f in tx.apps.list_functions()):
                return None
            shown = asked
            if auto:
                name = pick(now, lambda t: _ran_before(tx, function_id, t))
                shown = window({**query, "window": name}, now)
            found = tx.metrics.function_metrics(
                function_id, since=shown.since, bucket=shown.bucket, count=shown.count, now=now
            )
            return shown, found

        answer = await engine.store.read(read)
        if answer is None:
            raise NotFoundError(f"function {function_id!r} is not registered")
        shown, found = answer
        return wire.json_response(views.data(render(function_id, shown, found, now)))

    return [("GET", "/v1/functions/{function_id:path}/metrics", metrics)]


def _ran_before(tx: Tx, function_id: str, when: float) -> bool:
    """Whether ``function_id`` has a run created before ``when``: the newest such run
    through ``runs_function``, past only the runs created since (a window's worth)."""
    return bool(tx.list_runs(RunFilter(function_id=function_id, until=when, limit=1)))


def render(function_id: str, asked: Window, found: FunctionMetrics, now: float) -> dict[str, Any]:
    """The JSON the route answers (pure): buckets, totals and the queue now."""
    zeros = [0] * asked.count
    completed = found.ended.get("Completed", zeros)
    failed = found.ended.get("Failed", zeros)
    cancelled = found.ended.get("Cancelled", zeros)
    queued = found.queued()
    buckets = [
        {
            "start": views.timestamp(asked.since + i * asked.bucket),
            "started": found.created[i],
            "completed": completed[i],
            "failed": failed[i],
            "cancelled": cancelled[i],
            "failure_rate": _rate(failed[i], completed[i]),
            **_spread("duration", found.durations.get(i)),
            "queued": queued[i],
            **_spread("delay", found.delays.get(i)),
        }
        for i in range(asked.count)
    ]
    totals = {
        "started": sum(found.created),
        "completed": sum(completed),
        "failed": sum(failed),
        "cancelled": sum(cancelled),
        "failure_rate": _rate(sum(failed), sum(completed)),
        **_spread("duration", found.durations.get(-1)),
        **_spread("delay", found.delays.get(-1)),
    }
    live = found.live
    return {
        "function_id": function_id,
        "window": asked.name,
        "since": views.timestamp(asked.since),
        "until": views.timestamp(asked.until),
        "bucket_seconds": asked.bucket,
        "now": views.timestamp(now),
        "buckets": buckets,
        "totals": totals,
        "queue": {
            "queued_runs": live.get("Queued", 0),
            "running_runs": live.get("Running", 0),
            "held": dict(sorted(found.held.items())),
            "jobs": {s: found.jobs.get(s, 0) for s in ("due", "running", "parked", "scheduled")},
        },
    }


def _rate(failed: int, completed: int) -> float | None:
    return None if failed + completed == 0 else failed / (failed + completed)


def _spread(name: str, spread: Spread | None) -> dict[str, Any]:
    """``{name}_p50_ms``, ``_p95_ms``, ``_max_ms`` (None when empty) and ``{name}_count``."""

    if spread is None:
        return {f"{name}_count": 0} | {f"{name}_{p}_ms": None for p in ("p50", "p95", "max")}
    figures = {"p50": spread.p50, "p95": spread.p95, "max": spread.max}
    return {f"{name}_count": spread.count} | {
        f"{name}_{p}_ms": round(max(0.0, seconds) * 1000, 1) for p, seconds in figures.items()
    }
