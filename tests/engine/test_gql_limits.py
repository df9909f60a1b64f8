"""``POST /v0/gql`` bounds its answer: aliases cannot multiply one large output.

A 100 KB query fits ~800 aliases of one field, and each alias of a run's output answers
the whole output again: without a bound, one request makes the engine build an answer of
hundreds of copies. The query's fields (aliases counted) and the text its answer holds
are both capped, with an HTTP 400 that says which.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

import stepline
from stepline.engine import Engine, EngineSettings
from stepline.engine._http import gql
from stepline.engine._http.api import build_app
from tests._support.polling import wait_until

pytestmark = pytest.mark.timeout(60)

BODY_LIMIT = 64 * 1024
OUTPUT_CHARS = 40_000  # under the body limit: one run's output is answered whole


@contextlib.contextmanager
def _engine_with_a_large_output(tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    settings = EngineSettings(database_url=str(tmp_path / "e.db"), max_body_bytes=BODY_LIMIT)
    engine = Engine(settings)
    client = stepline.Client(app_id="big", is_production=False)

    @client.function(id="large", trigger=stepline.TriggerEvent(event="big/large"))
    async def large(ctx: stepline.Context) -> str:
        return "x" * OUTPUT_CHARS

    local = {"x-stepline-csrf": "1"}  # a tool, not a web page (the dev-mode guard)
    with TestClient(build_app(engine), base_url="http://127.0.0.1:8288", headers=local) as http:
        http.portal.call(engine.serve, client, [large])  # type: ignore[union-attr]
        sent = http.post("/e/k", json={"name": "big/large"})
        assert sent.status_code == 200, sent.text

        def ended() -> str | None:
            runs = http.get("/v1/runs", params={"status": "completed"}).json()["data"]
            return str(runs[0]["run_id"]) if runs else None

        yield http, wait_until(ended, timeout=20, message="the run with a large output")


def _aliases(run_id: str, count: int) -> dict[str, Any]:
    fields = " ".join(f'a{n}: run(runID: "{run_id}") {{ output }}' for n in range(count))
    return {"query": f"{{ {fields} }}"}


def test_hundreds_of_aliases_of_one_output_are_refused(tmp_path: Path) -> None:
    with _engine_with_a_large_output(tmp_path) as (http, run_id):
        query = _aliases(run_id, 800)
        assert len(query["query"]) < 100_000  # within the query text's own cap
        answer = http.post("/v0/gql", json=query)
        # unbounded, this answered 800 copies of the output (32 MB) with a 200
        assert answer.status_code == 400, len(answer.content)
        [error] = answer.json()["errors"]
        assert error["message"].startswith("the query selects 1600 fields")
        assert len(answer.content) < 1000


def test_the_answer_holds_at_most_twice_the_body_limit_of_outputs(tmp_path: Path) -> None:
    with _engine_with_a_large_output(tmp_path) as (http, run_id):
        within = _aliases(run_id, 3)  # 120 K characters: under 2 x 64 KiB
        answer = http.post("/v0/gql", json=within)
        assert answer.status_code == 200, answer.text
        assert answer.json()["data"]["a2"]["output"] == '"' + "x" * OUTPUT_CHARS + '"'
        beyond = _aliases(run_id, gql.MAX_FIELDS // 2)  # under the field cap, over the text
        answer = http.post("/v0/gql", json=beyond)
        assert answer.status_code == 400
        [error] = answer.json()["errors"]
        assert f"more than {2 * BODY_LIMIT} characters" in error["message"]
