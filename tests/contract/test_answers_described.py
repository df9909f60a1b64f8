"""Answers described field by field (tokens, Connect workers), as their renderers make them,
conform to the document."""

from __future__ import annotations

from typing import Any

import jsonschema

from stepline.engine._http import function_metrics, tokens
from stepline.engine._http.contract import schemas
from stepline.engine._store.tokens import ModelUsage, TokenBuckets


def conforms(value: Any, component: str) -> None:
    schema = {**schemas.COMPONENTS[component], "components": {"schemas": schemas.COMPONENTS}}
    jsonschema.validate(value, schema, cls=jsonschema.Draft202012Validator)


def test_a_runs_tokens_conform() -> None:
    rows = [
        ModelUsage("r1", "s1", "app-fn", 1_800_000_000.0, 10, 5, "gpt"),
        ModelUsage("r1", "s2", "app-fn", 1_800_000_001.0, 3, 0, None),
    ]
    answer = tokens.render_run("r1", "app-fn", rows)
    conforms(answer, "RunTokens")
    assert answer["total_tokens"] == 18


def test_a_functions_tokens_conform() -> None:
    window = function_metrics.Window(1_800_000_000.0, 1800.0, 2, "1h")
    found = TokenBuckets([10, 0], [5, 0], [1, 0], [1, 0], {"gpt": (10, 5, 1)})
    answer = tokens.render_function("app-fn", window, found, 1_800_003_600.0)
    conforms(answer, "FunctionTokens")
    assert answer["totals"]["total_tokens"] == 15


def test_a_connect_workers_listing_conforms() -> None:
    from stepline.engine._connect import listing
    from stepline.engine._connect.hub import Conn

    async def send(frame: bytes) -> None:
        return None

    conn = Conn("c1", "i1", frozenset({"app"}), send, sdk="py:v1", max_inflight=None, ready=True)
    answer = listing.worker(conn, "node-1")
    conforms(answer, "Worker")
    assert answer["status"] == "ready"
