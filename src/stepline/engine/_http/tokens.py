"""REST v1 for AI token usage: per run, per function over time, and token budgets' counts.

What model requests of ``stepline.ai`` agents used is kept as their steps are recorded
(``engine._runs.tokens``); these routes read it:

* ``GET /v1/runs/{run_id}/tokens``: the run's input and output tokens and requests, per
  model and per model-request step (404 for an unknown run);
* ``GET /v1/functions/{function_id}/tokens``: the function's tokens in time buckets, over
  the windows the metrics route takes (``window=1h|6h|24h|7d`` or ``since``/``until`` and
  ``bucket``; ``function_metrics.window``), with totals per model (404 for an unknown
  function);
* ``GET /v1/token-budgets/{budget}?key=...&period=<seconds>``: the tokens charged to a
  budget for a key in the period window holding now, and the window's edges: what an
  agent checks before a model request.

Behind the bearer check and dev-mode guard of every ``/v1`` route (``api.py`` wires it).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import starlette.requests
import starlette.responses

from stepline.engine._engine import Engine
from stepline.engine._errors import NotFoundError
from stepline.engine._http import function_metrics, views, wire
from stepline.engine._http.wire import ApiError
from stepline.engine._runs import tokens as _tokens
from stepline.engine._store import Tx
from stepline.engine._store.tokens import ModelUsage, TokenBuckets

Request = starlette.requests.Request
Response = starlette.responses.Response
Handler = Callable[[Request], Awaitable[Response]]


def table(engine: Engine) -> list[tuple[str, str, Handler]]:
    """The routes, as ``api._Api.routes`` lists them (method, path, handler)."""

    async def run_tokens(request: Request) -> Response:
        run_id = request.path_params["run_id"]

        def read(tx: Tx) -> tuple[str, list[ModelUsage]] | None:
            run = tx.get_run(run_id)
            return None if run is None else (run.function_id, tx.tokens.run_usage(run_id))

        found = await engine.store.read(read)
        if found is None:
            raise NotFoundError(f"run {run_id!r} not found")
        function_id, rows = found
        return wire.json_response(views.data(render_run(run_id, function_id, rows)))

    async def function_tokens(request: Request) -> Response:
        function_id = request.path_params["function_id"]
        now = engine.clock.now()
        asked = function_metrics.window(request.query_params, now)

        def read(tx: Tx) -> TokenBuckets | None:
            if all(f.function_id != function_id for f in tx.apps.list_functions()):
                return None
            return tx.tokens.function_usage(
                function_id, since=asked.since, bucket=asked.bucket, count=asked.count
            )

        found = await engine.store.read(read)
        if found is None:
            raise NotFoundError(f"function {function_id!r} is not registered")
        return wire.json_response(views.data(render_function(function_id, asked, found, now)))

    async def budget(request: Request) -> Response:
        name = request.path_params["budget"]
        key = request.query_params.get("key", "")
        period = _period(request.query_params.get("period"))
        now = engine.clock.now()
        start, end = _tokens.window(now, period)
        used = await engine.store.read(lambda tx: tx.tokens.budget_used(name, key, start))
        body = {
            "budget": name,
            "key": key,
            "period_seconds": period,
            "window_start": views.timestamp(start),
            "window_end": views.timestamp(end),
            "window_end_epoch": end,
            "used": used,
            "now": views.timestamp(now),
        }
        return wire.json_response(views.data(body))

    return [
        ("GET", "/v1/runs/{run_id}/tokens", run_tokens),
        ("GET", "/v1/functions/{function_id:path}/tokens", function_tokens),
        ("GET", "/v1/token-budgets/{budget}", budget),
    ]


def _period(text: str | None) -> float:
    try:
        value = float(text or "nan")
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 1 <= value <= _tokens.MAX_PERIOD):
        raise ApiError(400, f"period: want seconds from 1 to {int(_tokens.MAX_PERIOD)}")
    return value


def _sums(rows: list[ModelUsage]) -> dict[str, int]:
    tokens_in = sum(r.input_tokens for r in rows)
    tokens_out = sum(r.output_tokens for r in rows)
    return {
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "total_tokens": tokens_in + tokens_out,
        "requests": len(rows),
    }


def render_run(run_id: str, function_id: str, rows: list[ModelUsage]) -> dict[str, Any]:
    """The run route's JSON (pure): totals, per model, per step."""
    models: dict[str, list[ModelUsage]] = {}
    for row in rows:
        models.setdefault(row.model or "", []).append(row)
    return {
        "run_id": run_id,
        "function_id": function_id,
        **_sums(rows),
        "models": {model: _sums(used) for model, used in sorted(models.items())},
        "steps": [
            {
                "step_id": row.step_id,
                "at": views.timestamp(row.at),
                "input_tokens": row.input_tokens,
                "output_tokens": row.output_tokens,
                "model": row.model,
            }
            for row in rows
        ],
    }


def render_function(
    function_id: str, asked: function_metrics.Window, found: TokenBuckets, now: float
) -> dict[str, Any]:
    """The function route's JSON (pure): buckets, totals and per model."""
    buckets = [
        {
            "start": views.timestamp(asked.since + i * asked.bucket),
            "input_tokens": found.input_tokens[i],
            "output_tokens": found.output_tokens[i],
            "total_tokens": found.input_tokens[i] + found.output_tokens[i],
            "requests": found.requests[i],
            "runs": found.runs[i],
        }
        for i in range(asked.count)
    ]
    tokens_in, tokens_out = sum(found.input_tokens), sum(found.output_tokens)
    return {
        "function_id": function_id,
        "window": asked.name,
        "since": views.timestamp(asked.since),
        "until": views.timestamp(asked.until),
        "bucket_seconds": asked.bucket,
        "now": views.timestamp(now),
        "buckets": buckets,
        "totals": {
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
            "requests": sum(found.requests),
        },
        "models": {
            model: {
                "input_tokens": i,
                "output_tokens": o,
                "total_tokens": i + o,
                "requests": n,
            }
            for model, (i, o, n) in found.models.items()
        },
    }
