"""A durable endpoint of a paused function answers 202 and runs nothing.

The shop on Starlette (``harness.open_site``, ``tests/apps/durable_asgi.py``): with the
endpoint's function paused through the engine's API, a request starts its run but does
not run its first call inline; it answers 202 with the result link. Once resumed, the
engine runs the call (each step once) and the result route answers the run's output.
"""

from __future__ import annotations

from pathlib import Path

from .harness import open_site


def test_a_durable_endpoint_of_a_paused_function_answers_202_and_runs_once_resumed(
    tmp_path: Path,
) -> None:
    with open_site("asgi-testclient", tmp_path) as site:
        site.request("GET", "/api/runs/none")  # the embedded engine starts on first use
        orders = site.shop.function("orders").composite_id
        paused = site.engine_api("POST", f"/v1/functions/{orders}/pause", {})
        assert paused.status_code == 200, paused.text

        answer = site.post("/orders/42", {"n": 1})
        assert answer.status == 202, answer.body
        run_id = answer.headers["x-stepline-run-id"]
        assert answer.headers["location"] == f"/api/runs/{run_id}/result"
        assert site.shop.marks() == []  # not run inline, and not by the engine either
        assert site.request("GET", f"/api/runs/{run_id}").json["status"] == "Queued"

        resumed = site.engine_api("POST", f"/v1/functions/{orders}/resume", {})
        assert resumed.json()["data"]["resumed"] is True
        result = site.follow(answer.headers["location"]).json
        assert result["status"] == "Completed"
        assert result["output"]["json"]["steps"] == ["a", "b", "c"]
        assert result["output"]["json"]["oid"] == "42"
        assert site.shop.marks(run_id) == ["a", "b", "c"]
