"""The official ``inngest`` package's Connect worker against a real engine.

Each worker is a process (``tests.connect.worker``) that calls ``POST /v0/connect/start``
and opens the gateway's WebSocket on an engine served by uvicorn in this process
(``harness.node``); events go in through the event API, results come back through the
REST API, and the workers' step bodies log what really ran (``harness.Workers.ran``).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from stepline._protocol import signing
from tests._support.polling import wait_until

from .harness import APP_ID, Node, Workers, node, workers
from .worker import EXTRA_APP_ID

pytestmark = pytest.mark.timeout(120)

KEY = "signkey-prod-" + "5a6b" * 16
WRONG = "signkey-prod-" + "7c8d" * 16


# -- end to end -----------------------------------------------------------------------------


def test_the_worker_syncs_its_app_as_served_over_connect(stack: tuple[Node, Workers]) -> None:
    engine, _ = stack
    [app] = [a for a in engine.get("/v1/apps")["data"] if a["app_id"] == APP_ID]
    assert app["url"] == f"connect://{APP_ID}/v0/connect"
    assert (app["framework"], app["sdk"]) == ("connect", "py:v0.5.19")
    functions = [f for f in engine.get("/v1/functions")["data"] if f["app_id"] == APP_ID]
    assert len(functions) == app["functions"] == 10
    [conn] = engine.engine.connect.workers(APP_ID)
    assert (conn.instance_id, conn.ready, conn.draining) == ("w1", True, False)
    assert conn.apps == {APP_ID, EXTRA_APP_ID}, "one socket serves both of its apps"


def test_a_second_app_of_the_worker_runs_over_the_same_socket(
    stack: tuple[Node, Workers],
) -> None:
    engine, _ = stack
    answer = engine.http.post("/e/k", json={"name": "extra/hello", "data": {"name": "you"}})
    run = engine.finished(engine.run_of(answer.json()["ids"][0]))
    assert (run["function_id"], run["output"]) == (f"{EXTRA_APP_ID}-hello", "hello you")


def test_steps_sleep_and_retries_run_end_to_end(stack: tuple[Node, Workers]) -> None:
    engine, found = stack
    run = engine.run("steps", {"n": 4})
    assert (run["status"], run["output"]) == ("Completed", 40)
    assert found.ran("steps.one") == found.ran("steps.two") == ["w1"]  # each body once

    run = engine.run("sync-steps", {"n": 1})  # a sync function, on the SDK's thread pool
    assert (run["status"], run["output"]) == ("Completed", 2)
    assert found.ran("sync-steps.one") == ["w1"]

    run = engine.run("sleep")
    assert (run["status"], run["output"]) == ("Completed", "woke")
    steps = engine.get(f"/v1/runs/{run['run_id']}/steps")["data"]
    assert [s["op"] for s in steps] == ["Sleep", "StepRun"], steps

    run = engine.run("retry")
    assert (run["status"], run["output"]) == ("Completed", "ok after 1")
    assert found.ran("retry.flaky.0") == found.ran("retry.flaky.1") == ["w1"]


def test_wait_invoke_and_parallel_steps_run_end_to_end(stack: tuple[Node, Workers]) -> None:
    engine, found = stack
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
    assert found.ran("child.double") == ["w1"]

    run = engine.run("parallel")
    assert (run["status"], run["output"]) == ("Completed", [1, 2])
    assert found.ran("parallel.a") == found.ran("parallel.b") == ["w1"]


# -- durability ---------------------------------------------------------------------------


def test_a_killed_worker_call_goes_to_another_worker(tmp_path: Path) -> None:
    with node(str(tmp_path / "e.db")) as engine, workers(tmp_path) as found:
        found.start(engine, "w1")
        found.start(engine, "w2")
        run_id = engine.run_of(engine.send("slow", {"seconds": 3}))
        wait_until(lambda: found.ran("slow.work.start") or None, message="the slow step to start")
        [victim] = found.ran("slow.work.start")
        found.signal(victim, signal.SIGKILL)  # mid-step: no reply, the socket drops
        run = engine.finished(run_id)
        [survivor] = {"w1", "w2"} - {victim}
        assert (run["status"], run["output"]) == ("Completed", "after")
        assert found.ran("slow.work.start") == [victim, survivor]  # the lost step again
        assert found.ran("slow.work.end") == [survivor]
        assert len(found.ran("slow.before")) == 1, "a recorded step never runs again"
        assert found.ran("slow.after") == [survivor]
        [lost] = engine.failed_attempts(run_id)  # the killed worker's: a lost connection
        assert "ConnectionLost" in str(lost), lost


def test_a_draining_worker_finishes_its_call_and_takes_no_new_one(tmp_path: Path) -> None:
    with node(str(tmp_path / "e.db")) as engine, workers(tmp_path) as found:
        found.start(engine, "w1")
        found.start(engine, "w2")
        run_id = engine.run_of(engine.send("slow", {"seconds": 2}))
        wait_until(lambda: found.ran("slow.work.start") or None, message="the slow step to start")
        [drained] = found.ran("slow.work.start")
        [other] = {"w1", "w2"} - {drained}
        found.signal(drained, signal.SIGTERM)  # the official worker sends WORKER_PAUSE
        wait_until(
            lambda: any(c.draining for c in engine.engine.connect.workers(APP_ID)),
            message="the worker to drain",
        )
        run = engine.finished(run_id)
        assert (run["status"], run["output"]) == ("Completed", "after")
        assert found.ran("slow.work.start") == found.ran("slow.work.end") == [drained]
        assert found.ran("slow.after") == [other], "the draining worker takes no new call"
        assert engine.failed_attempts(run_id) == [], "no call was sent to it and refused"
        assert found.procs[drained].wait(20) == 0, found.output(drained)
        wait_until(lambda: not engine.connected(drained), message="the drained worker to leave")
        run = engine.run("steps", {"n": 1})  # the other one serves on
        assert run["output"] == 10
        assert found.ran("steps.one") == [other]


def test_a_step_longer_than_the_lease_and_the_call_timeout_completes(tmp_path: Path) -> None:
    # an HTTP call would time out at 2 s and lose its lease at 1.5 s without heartbeats;
    # the worker extends its lease every second, which moves the call's deadline on
    with (
        node(str(tmp_path / "e.db"), lease_seconds=1.5, call_timeout=2.0) as engine,
        workers(tmp_path) as found,
    ):
        assert engine.engine.connect.timing.extend == 1
        found.start(engine, "w1")
        started = time.monotonic()
        run = engine.run("slow", {"seconds": 5})
        assert time.monotonic() - started > 5
        assert (run["status"], run["output"]) == ("Completed", "after")
        assert found.ran("slow.work.start") == found.ran("slow.work.end") == ["w1"]
        assert engine.failed_attempts(run["run_id"]) == []


def test_the_worker_reconnects_after_the_engine_restarts(tmp_path: Path) -> None:
    db = str(tmp_path / "e.db")
    with workers(tmp_path) as found:
        with node(db) as first:
            port = first.server.port
            found.start(first, "w1")
            assert first.run("steps", {"n": 2})["output"] == 20
            # a call in flight as the engine stops: its socket closes under it, and the
            # call goes back without spending an attempt (the function has no retries)
            run_id = first.run_of(first.send("fragile", {"seconds": 2}))
            wait_until(lambda: found.ran("fragile.work.start") or None, message="the step")
        # the engine is gone: the worker asks /v0/connect/start again until it is back
        with node(db, port=port) as second:
            wait_until(
                lambda: second.connected("w1"),
                timeout=40,
                message=lambda: f"the worker to reconnect:\n{found.output('w1')}",
            )
            run = second.finished(run_id)
            assert (run["status"], run["output"]) == ("Completed", "after"), run
            assert found.ran("fragile.work.start") == ["w1", "w1"]  # the lost call again
            assert found.ran("fragile.before") == ["w1"]
            assert second.failed_attempts(run_id) == [], "the restart spent no attempt"
            assert second.run("steps", {"n": 3})["output"] == 30
            assert second.run("sleep")["output"] == "woke"
        assert found.procs["w1"].poll() is None, "the worker outlives the engine's restarts"


def test_start_mode_takes_the_right_key_only(tmp_path: Path) -> None:
    production: dict[str, Any] = {"mode": "start", "signing_keys": (KEY,)}
    with node(str(tmp_path / "e.db"), **production) as engine, workers(tmp_path) as found:
        assert httpx.post(f"{engine.url}/v0/connect/start", content=b"").status_code == 401
        wrong = {"authorization": signing.bearer_token(WRONG)}
        assert httpx.post(f"{engine.url}/v0/connect/start", headers=wrong).status_code == 401
        refused = found.spawn(engine.url, "wrong", WRONG)
        assert refused.wait(30) != 0, "a worker with another key gives up (401)"
        assert "unauthorized" in found.output("wrong")
        assert engine.get("/v1/apps")["data"] == [], "nothing was registered"
        found.start(engine, "right", KEY)
        run = engine.run("steps", {"n": 5})
        assert (run["status"], run["output"]) == ("Completed", 50)
        assert found.ran("steps.one") == ["right"]
