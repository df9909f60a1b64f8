"""A durable endpoint of a paused function answers 202 and runs nothing.

The ASGI durable app of ``test_asgi_durable`` (an embedded engine, the kit at ``/api``,
the engine's API at ``/stepline``): with the endpoint's function paused, a request
starts its run but does not run its first call inline; it answers 202 with the result
link. Once resumed, the engine runs the call (each step once) and the result route
answers the run's output.
"""

from __future__ import annotations

from pathlib import Path

from .test_asgi_durable import StarletteSite, follow


def test_a_durable_endpoint_of_a_paused_function_answers_202_and_runs_once_resumed(
    tmp_path: Path,
) -> None:
    site = StarletteSite(tmp_path)
    try:
        site.http.get("/api/runs/none")  # the embedded engine starts on first use
        functions = site.http.get("/stepline/v1/functions").json()["data"]
        (three,) = [f["function_id"] for f in functions if f["function_id"].endswith("-three")]
        paused = site.http.post(f"/stepline/v1/functions/{three}/pause", json={})
        assert paused.status_code == 200, paused.text

        answer = site.http.post("/three/42", json={"n": 1})
        assert answer.status_code == 202, answer.text
        run_id = answer.headers["x-stepline-run-id"]
        assert answer.headers["location"] == f"/api/runs/{run_id}/result"
        assert site.ran() == []  # not run inline, and not by the engine either
        assert site.http.get(f"/api/runs/{run_id}").json()["status"] == "Queued"

        resumed = site.http.post(f"/stepline/v1/functions/{three}/resume", json={})
        assert resumed.json()["data"]["resumed"] is True
        result = follow(site, answer.headers["location"]).json()
        assert result["status"] == "Completed"
        assert result["output"]["json"] == {"steps": ["a", "b", "c"], "oid": "42"}
        assert site.ran() == ["a", "b", "c"]
    finally:
        site.close()
