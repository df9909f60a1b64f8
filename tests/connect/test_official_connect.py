"""What only the official ``inngest`` package's Connect worker does: serve two apps.

The worker (``tests.apps.connect_official_worker``, ``w1`` of the suite's ``stack``) serves
a second app over the same socket; the scenarios both workers run are in ``test_scenarios``.
"""

from __future__ import annotations

import pytest

from tests.apps.connect_official_worker import EXTRA_APP_ID

from .harness import Node, Workers

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]


def test_a_second_app_of_the_worker_runs_over_the_same_socket(
    stack: tuple[Node, Workers],
) -> None:
    engine, _ = stack
    answer = engine.http.post("/e/k", json={"name": "extra/hello", "data": {"name": "you"}})
    run = engine.finished(engine.run_of(answer.json()["ids"][0]))
    assert (run["function_id"], run["output"]) == (f"{EXTRA_APP_ID}-hello", "hello you")
