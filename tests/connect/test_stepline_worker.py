"""Stepline's own Connect worker (``stepline.connect.Worker``) against a real engine.

The worker is a process (``tests.connect.stepline_worker``, the official worker's
scenarios written with Stepline's SDK) connected to an engine served by uvicorn in this
process (``harness.node``); the step bodies log what really ran (``harness.Workers.ran``).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._support.polling import wait_until

from .harness import APP_ID, Node, Workers, node, workers

pytestmark = pytest.mark.timeout(120)

MODULE = "tests.connect.stepline_worker"
KEY = "signkey-prod-" + "5a6b" * 16


@pytest.fixture(scope="module")
def stepline_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Workers]]:
    """A dev-mode engine with Stepline's worker ``s1`` connected."""
    tmp = tmp_path_factory.mktemp("stepline-connect")
    with node(str(tmp / "e.db")) as engine, workers(tmp, MODULE) as found:
        found.start(engine, "s1")
        yield engine, found


# -- end to end -----------------------------------------------------------------------------


def test_the_worker_registers_its_app_over_its_socket(
    stepline_stack: tuple[Node, Workers],
) -> None:
    engine, _ = stepline_stack
    [app] = [a for a in engine.get("/v1/apps")["data"] if a["app_id"] == APP_ID]
    assert app["url"] == f"connect://{APP_ID}/v0/connect"
    assert (app["framework"], app["sdk"]) == ("connect", "stepline-py:v0.1.0")
    assert app["functions"] == 11
    [conn] = engine.engine.connect.workers(APP_ID)
    assert (conn.instance_id, conn.ready, conn.draining) == ("s1", True, False)


def test_steps_sleep_and_retries_run_end_to_end(stepline_stack: tuple[Node, Workers]) -> None:
    engine, found = stepline_stack
    run = engine.run("steps", {"n": 4})
    assert (run["status"], run["output"]) == ("Completed", 40)
    assert found.ran("steps.one") == found.ran("steps.two") == ["s1"]  # each body once

    run = engine.run("sync-steps", {"n": 1})  # a sync function, on the SDK's thread pool
    assert (run["status"], run["output"]) == ("Completed", 2)
    assert found.ran("sync-steps.one") == ["s1"]

    run = engine.run("sleep")
    assert (run["status"], run["output"]) == ("Completed", "woke")
    steps = engine.get(f"/v1/runs/{run['run_id']}/steps")["data"]
    assert [s["op"] for s in steps] == ["Sleep", "StepRun"], steps

    run = engine.run("retry")
    assert (run["status"], run["output"]) == ("Completed", "ok after 1")
    assert found.ran("retry.flaky.0") == found.ran("retry.flaky.1") == ["s1"]


def test_wait_invoke_and_parallel_steps_run_end_to_end(
    stepline_stack: tuple[Node, Workers],
) -> None:
    engine, found = stepline_stack
    run_id = engine.run_of(engine.send("wait", {"key": "k1"}))
    wait_until(
        lambda: any(
            s["status"] == "Waiting" for s in engine.get(f"/v1/runs/{run_id}/steps")["data"]
        ),
        message="the run to wait for its event",
    )
    engine.send("wait.reply", {"key": "k1", "answer": 42})
    run = engine.finished(run_id)
    assert (run["status"], run["output"]) == ("Completed", {"key": "k1", "answer": 42})

    run = engine.run("invoke")
    assert (run["status"], run["output"]) == ("Completed", 42)
    assert found.ran("child.double") == ["s1"]

    run = engine.run("parallel")
    assert (run["status"], run["output"]) == ("Completed", [1, 2])
    assert found.ran("parallel.a") == found.ran("parallel.b") == ["s1"]


# -- durability ---------------------------------------------------------------------------


def test_a_killed_worker_call_goes_to_another_worker(tmp_path: Path) -> None:
    with node(str(tmp_path / "e.db")) as engine, workers(tmp_path, MODULE) as found:
        found.start(engine, "s1")
        found.start(engine, "s2")
        run_id = engine.run_of(engine.send("slow", {"seconds": 3}))
        wait_until(lambda: found.ran("slow.work.start") or None, message="the slow step to start")
        [victim] = found.ran("slow.work.start")
        found.signal(victim, signal.SIGKILL)  # mid-step: no reply, the socket drops
        run = engine.finished(run_id)
        [survivor] = {"s1", "s2"} - {victim}
        assert (run["status"], run["output"]) == ("Completed", "after")
        assert found.ran("slow.work.start") == [victim, survivor]  # the lost step again
        assert found.ran("slow.work.end") == [survivor]
        assert len(found.ran("slow.before")) == 1, "a recorded step never runs again"
        assert found.ran("slow.after") == [survivor]
        [lost] = engine.failed_attempts(run_id)  # the killed worker's: a lost connection
        assert "ConnectionLost" in str(lost), lost


@pytest.mark.parametrize("name", ["slow", "slow-sync"])
def test_a_draining_worker_finishes_its_call_and_takes_no_new_one(
    tmp_path: Path, name: str
) -> None:
    with node(str(tmp_path / "e.db")) as engine, workers(tmp_path, MODULE) as found:
        found.start(engine, "s1")
        found.start(engine, "s2")
        run_id = engine.run_of(engine.send(name, {"seconds": 2}))
        started = f"{name}.work.start"
        wait_until(lambda: found.ran(started) or None, message="the slow step to start")
        [drained] = found.ran(started)
        [other] = {"s1", "s2"} - {drained}
        found.signal(drained, signal.SIGTERM)  # WORKER_PAUSE, then the call finishes
        wait_until(
            lambda: any(c.draining for c in engine.engine.connect.workers(APP_ID)),
            message="the worker to drain",
        )
        run = engine.finished(run_id)
        assert run["status"] == "Completed", run
        assert found.ran(started) == found.ran(f"{name}.work.end") == [drained]
        assert engine.failed_attempts(run_id) == [], "no call was sent to it and refused"
        assert found.procs[drained].wait(20) == 0, found.output(drained)
        assert "drained and stopped" in found.output(drained)
        wait_until(lambda: not engine.connected(drained), message="the drained worker to leave")
        assert engine.run("steps", {"n": 1})["output"] == 10  # the other one serves on
        assert found.ran("steps.one") == [other]


@pytest.mark.parametrize("name", ["slow", "slow-sync"])
def test_a_step_longer_than_the_lease_and_the_call_timeout_completes(
    tmp_path: Path, name: str
) -> None:
    # an HTTP call would time out at 2 s and lose its lease at 1.5 s without heartbeats;
    # the worker extends its lease every second, which moves the call's deadline on
    with (
        node(str(tmp_path / "e.db"), lease_seconds=1.5, call_timeout=2.0) as engine,
        workers(tmp_path, MODULE) as found,
    ):
        found.start(engine, "s1")
        started = time.monotonic()
        run = engine.run(name, {"seconds": 5})
        assert time.monotonic() - started > 5
        assert (run["status"], run["output"]) == ("Completed", "after")
        assert found.ran(f"{name}.work.start") == found.ran(f"{name}.work.end") == ["s1"]
        assert engine.failed_attempts(run["run_id"]) == []


def test_the_worker_reconnects_after_the_engine_restarts(tmp_path: Path) -> None:
    db = str(tmp_path / "e.db")
    with workers(tmp_path, MODULE) as found:
        with node(db) as first:
            port = first.server.port
            found.start(first, "s1")
            assert first.run("steps", {"n": 2})["output"] == 20
            # a call in flight as the engine stops: the engine gives it its grace (2 s)
            # over the socket, then hands it back without spending an attempt
            run_id = first.run_of(first.send("fragile", {"seconds": 4}))
            wait_until(lambda: found.ran("fragile.work.start") or None, message="the step")
        # the engine is gone: the worker asks /v0/connect/start again until it is back
        with node(db, port=port) as second:
            wait_until(
                lambda: second.connected("s1"),
                timeout=40,
                message=lambda: f"the worker to reconnect:\n{found.output('s1')}",
            )
            run = second.finished(run_id)
            assert (run["status"], run["output"]) == ("Completed", "after"), run
            assert found.ran("fragile.before") == ["s1"], "a recorded step never runs again"
            assert second.failed_attempts(run_id) == [], "the restart spent no attempt"
            # the call that outlived its socket was answered over HTTP (the engine had
            # handed it back already: 404, and the run went on from what was recorded)
            wait_until(
                lambda: "flushed: 404" in found.output("s1"),
                message=lambda: f"the reply to be flushed:\n{found.output('s1')}",
            )
            assert second.run("steps", {"n": 3})["output"] == 30
            assert second.run("sleep")["output"] == "woke"
        assert found.procs["s1"].poll() is None, "the worker outlives the engine's restarts"


def test_start_mode_takes_the_right_key_only(tmp_path: Path) -> None:
    production: dict[str, Any] = {"mode": "start", "signing_keys": (KEY,)}
    wrong = "signkey-prod-" + "7c8d" * 16
    with node(str(tmp_path / "e.db"), **production) as engine, workers(tmp_path, MODULE) as found:
        refused = found.spawn(engine.url, "wrong", wrong)
        assert refused.wait(30) != 0, "a worker with another key stops (401)"
        assert "401" in found.output("wrong")
        assert engine.get("/v1/apps")["data"] == [], "nothing was registered"
        found.start(engine, "right", KEY)  # its calls carry the engine's signature
        run = engine.run("steps", {"n": 5})
        assert (run["status"], run["output"]) == ("Completed", 50)
        assert found.ran("steps.one") == ["right"]


def test_rest_lists_the_connected_workers(stepline_stack: tuple[Node, Workers]) -> None:
    engine, _ = stepline_stack
    [mine] = engine.get(f"/v1/apps/{APP_ID}/workers")["data"]
    assert (mine["instance_id"], mine["status"], mine["in_flight"]) == ("s1", "ready", 0)
    assert (mine["sdk"], mine["framework"]) == ("stepline-py:v0.1.0", "connect")
    assert mine["node"] == engine.engine.connect.node
    assert mine["app_ids"] == [APP_ID]
    assert mine["versions"] == {APP_ID: None}
    assert len(mine["functions"]) == 11
    assert f"{APP_ID}-steps" in mine["functions"]
    assert mine["connected_at"] <= mine["last_heartbeat_at"]
    assert engine.get("/v1/connect/workers")["data"] == [mine]
    assert engine.get("/v1/apps/nobody/workers")["data"] == []
