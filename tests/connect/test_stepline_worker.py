"""What only Stepline's own Connect worker (``stepline.connect.Worker``) is tested for here.

The worker is a process (``tests.apps.connect_stepline_worker``) connected to an engine served
by uvicorn in this process (``harness.node``); the scenarios both workers run are in
``test_scenarios``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .harness import APP_ID, STEPLINE, Node, Workers, node, workers

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]

MODULE = STEPLINE.module


@pytest.fixture(scope="module")
def stepline_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Workers]]:
    """A dev-mode engine with Stepline's worker ``s1`` connected."""
    tmp = tmp_path_factory.mktemp("stepline-connect")
    with node(str(tmp / "e.db")) as engine, workers(tmp, MODULE) as found:
        found.start(engine, "s1")
        yield engine, found


def test_rest_lists_the_connected_workers(stepline_stack: tuple[Node, Workers]) -> None:
    engine, _ = stepline_stack
    [mine] = engine.get(f"/v1/apps/{APP_ID}/workers")["data"]
    assert (mine["instance_id"], mine["status"], mine["in_flight"]) == ("s1", "ready", 0)
    assert (mine["sdk"], mine["framework"]) == (STEPLINE.sdk, "connect")
    assert mine["node"] == engine.engine.connect.node
    assert mine["app_ids"] == [APP_ID]
    assert mine["versions"] == {APP_ID: None}
    assert len(mine["functions"]) == STEPLINE.functions == 11
    assert f"{APP_ID}-steps" in mine["functions"]
    assert mine["connected_at"] <= mine["last_heartbeat_at"]
    assert engine.get("/v1/connect/workers")["data"] == [mine]
    assert engine.get("/v1/apps/nobody/workers")["data"] == []
