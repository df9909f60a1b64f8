"""The functions' routes: list, read, start a run, pause and resume, metrics."""

from __future__ import annotations

from stepline.engine._http.contract import schemas as s
from stepline.engine._http.contract.operations.model import Link, Operation, param
from stepline.engine._http.contract.operations.shared import NOT_FOUND, TIME

__all__ = ["OPERATIONS"]

_WINDOW = (
    param("window", {"enum": ["1h", "6h", "24h", "7d"]}, "the window ending now (24h)"),
    param("since", TIME),
    param("until", TIME),
    param("bucket", s.STRING, "seconds, or 30s, 5m, 1h, 1d"),
)
#: the metrics route's windows: the same, or the smallest that holds the function's runs
_METRICS_WINDOW = (
    param(
        "window",
        {"enum": ["1h", "6h", "24h", "7d", "auto"]},
        "the window ending now (24h); auto: the smallest holding all the function's runs",
    ),
    *_WINDOW[1:],
)
#: the first listed function feeds what acts on one function
_FIRST_FUNCTION = (("function_id", "$response.body#/data/0/function_id"),)
_FUNCTION_LINKS = (
    Link("StartRun", "POST /v1/functions/{function_id:path}/runs", _FIRST_FUNCTION),
    Link("Pause", "POST /v1/functions/{function_id:path}/pause", _FIRST_FUNCTION),
    Link("Resume", "POST /v1/functions/{function_id:path}/resume", _FIRST_FUNCTION),
    Link("Metrics", "GET /v1/functions/{function_id:path}/metrics", _FIRST_FUNCTION),
)

OPERATIONS: tuple[Operation, ...] = (
    # functions
    Operation(
        "GET",
        "/v1/functions",
        "List functions",
        "functions",
        s.data(s.array(s.ref("Function"))),
        links=_FUNCTION_LINKS,
    ),
    Operation(
        "POST",
        "/v1/functions/{function_id:path}/pause",
        "Pause a function",
        "functions",
        s.data(s.obj({"function_id": s.STRING, "paused": s.nullable(s.ref("Pause"))}, "paused")),
        body=s.obj(
            {"crons": {"enum": ["queue", "skip"]}, "reason": {"type": "string", "maxLength": 1000}}
        ),
        errors=NOT_FOUND,
    ),
    Operation(
        "POST",
        "/v1/functions/{function_id:path}/resume",
        "Resume a paused function",
        "functions",
        s.data(s.obj({"function_id": s.STRING, "paused": {"type": "null"}}, "paused")),
        errors=NOT_FOUND,
    ),
    Operation(
        "GET",
        "/v1/functions/{function_id:path}/metrics",
        "A function's run figures per time bucket",
        "functions",
        s.data(s.ref("FunctionMetrics")),
        query=_METRICS_WINDOW,
        errors=NOT_FOUND,
    ),
    Operation(
        "GET",
        "/v1/crons",
        "Every cron trigger: its next ticks, its queued and missed ticks, its last runs",
        "functions",
        s.obj({"data": s.array(s.ref("CronTrigger")), "metadata": s.obj({"now": s.TIME})}, "data"),
    ),
    Operation(
        "GET",
        "/v1/queue",
        "Runs and calls in flight, waiting and throttled, per function and concurrency key",
        "functions",
        s.obj(
            {
                "data": s.obj(
                    {
                        "functions": s.array(s.ref("FunctionQueue")),
                        "keys": s.array(s.ref("ConcurrencyKey")),
                    },
                    "functions",
                    "keys",
                ),
                "metadata": s.obj({"now": s.TIME}),
            },
            "data",
        ),
    ),
    Operation(
        "GET",
        "/v1/functions/{function_id:path}/tokens",
        "A function's AI token usage per time bucket",
        "functions",
        s.data(s.ref("FunctionTokens")),
        query=_WINDOW,
        errors=NOT_FOUND,
    ),
    Operation(
        "GET",
        "/v1/token-budgets/{budget}",
        "The tokens charged to a budget in the current period",
        "functions",
        s.data(
            s.obj(
                {
                    "budget": s.STRING,
                    "key": s.STRING,
                    "period_seconds": s.NUMBER,
                    "window_start": s.TIME,
                    "window_end": s.TIME,
                    "window_end_epoch": s.NUMBER,
                    "used": s.INTEGER,
                    "now": s.TIME,
                },
                "budget",
                "key",
                "used",
                "window_start",
                "window_end",
            )
        ),
        query=(
            param("key", s.STRING, "the budget's key"),
            param("period", {"type": "integer", "minimum": 1}, "seconds"),
        ),
    ),
)
