"""The Connect scenarios, run by both workers against a real engine.

Each worker is a process of its ``Kind`` (``harness.OFFICIAL``: the official ``inngest``
package's worker, ``tests.apps.connect_official_worker``; ``harness.STEPLINE``: Stepline's own,
``tests.apps.connect_stepline_worker``) that calls ``POST /v0/connect/start`` and opens the
gateway's WebSocket on an engine served by uvicorn in this process (``harness.node``);
events go in through the event API, results come back through the REST API, and the
workers' step bodies log what really ran (``harness.Workers.ran``). What only one of them
does is in ``test_official_connect`` and ``test_stepline_worker``.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stepline._protocol import signing
from tests._support.polling import wait_until

from .harness import APP_ID, KINDS, Kind, Node, Workers, node, workers

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]

KEY = "signkey-prod-" + "5a6b" * 16
WRONG = "signkey-prod-" + "7c8d" * 16
# each kind with each of its slow functions (Stepline's has a sync one too)
SLOW = [pytest.param(kind, name, id=f"{kind.name}-{name}") for kind in KINDS for name in kind.slow]


@pytest.fixture(scope="module", params=KINDS, ids=[kind.name for kind in KINDS])
def kind(request: pytest.FixtureRequest) -> Kind:
    """Each worker in turn (module-scoped, so that one stack per kind serves its tests)."""
    found: Kind = request.param
    return found


@pytest.fixture(scope="module")
def kind_stack(
    kind: Kind, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Node, Workers]]:
    """A dev-mode engine with the worker ``w1`` of ``kind`` connected."""
    tmp = tmp_path_factory.mktemp(f"{kind.name}-connect")
    with node(str(tmp / "e.db")) as engine, workers(tmp, kind.module) as found:
        found.start(engine, "w1")
        yield engine, found


def _slow_step_started(engine: Node, found: Workers, name: str, gate: Path) -> tuple[str, str, str]:
    """Workers ``w1`` and ``w2`` connected and a run of ``name`` whose slow step has started,
    held until ``gate`` exists: the run, the worker running the step and the other one."""
    found.start_all(engine, "w1", "w2")
    run_id = engine.run_of(engine.send(name, {"seconds": 60, "gate": str(gate)}))
    started = f"{name}.work.start"
    wait_until(lambda: found.ran(started) or None, message="the slow step to start")
    [busy] = found.ran(started)
    [other] = {"w1", "w2"} - {busy}
    return run_id, busy, other


# -- end to end -----------------------------------------------------------------------------


def test_the_worker_registers_its_app_over_its_socket(
    kind: Kind, kind_stack: tuple[Node, Workers]
) -> None:
    engine, _ = kind_stack
    [app] = [a for a in engine.get("/v1/apps")["data"] if a["app_id"] == APP_ID]
    assert app["url"] == f"connect://{APP_ID}/v0/connect"
    assert (app["framework"], app["sdk"]) == ("connect", kind.sdk)
    functions = [f for f in engine.get("/v1/functions")["data"] if f["app_id"] == APP_ID]
    assert len(functions) == app["functions"] == kind.functions
    [conn] = engine.engine.connect.workers(APP_ID)
    assert (conn.instance_id, conn.ready, conn.draining) == ("w1", True, False)
    assert conn.apps == kind.apps, "one socket serves all of its apps"


def test_steps_sleep_and_retries_run_end_to_end(kind_stack: tuple[Node, Workers]) -> None:
    engine, found = kind_stack
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


def test_wait_invoke_and_parallel_steps_run_end_to_end(kind_stack: tuple[Node, Workers]) -> None:
    engine, found = kind_stack
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


def test_a_killed_worker_call_goes_to_another_worker(tmp_path: Path, kind: Kind) -> None:
    gate = tmp_path / "gate"
    # lease_seconds 3: the dropped call waits Timing.flush, 3 s (not 6), for a reply over HTTP
    with (
        node(str(tmp_path / "e.db"), lease_seconds=3.0) as engine,
        workers(tmp_path, kind.module) as found,
    ):
        run_id, victim, survivor = _slow_step_started(engine, found, "slow", gate)
        found.signal(victim, signal.SIGKILL)  # mid-step: no reply, the socket drops
        found.procs[victim].wait(10)
        gate.touch()  # the step, run again on the survivor, ends at once
        run = engine.finished(run_id)
        assert (run["status"], run["output"]) == ("Completed", "after")
        assert found.ran("slow.work.start") == [victim, survivor]  # the lost step again
        assert found.ran("slow.work.end") == [survivor]
        assert len(found.ran("slow.before")) == 1, "a recorded step never runs again"
        assert found.ran("slow.after") == [survivor]
        [lost] = engine.failed_attempts(run_id)  # the killed worker's: a lost connection
        assert "ConnectionLost" in str(lost), lost


@pytest.mark.parametrize(("kind", "name"), SLOW)
def test_a_draining_worker_finishes_its_call_and_takes_no_new_one(
    tmp_path: Path, kind: Kind, name: str
) -> None:
    gate = tmp_path / "gate"
    with node(str(tmp_path / "e.db")) as engine, workers(tmp_path, kind.module) as found:
        run_id, drained, other = _slow_step_started(engine, found, name, gate)
        found.signal(drained, signal.SIGTERM)  # WORKER_PAUSE, then the call finishes

        def draining() -> bool:
            workers = engine.engine.connect.workers(APP_ID)
            return any(c.instance_id == drained and c.draining for c in workers)

        wait_until(draining, message="the worker to drain")
        gate.touch()  # the call held in flight until now ends
        run = engine.finished(run_id)
        assert (run["status"], run["output"]) == ("Completed", "after"), run
        assert found.ran(f"{name}.work.start") == found.ran(f"{name}.work.end") == [drained]
        if not kind.checkpoints:  # the step after is a call of its own: a new call
            assert found.ran(f"{name}.after") == [other], "the draining worker takes no new call"
        assert engine.failed_attempts(run_id) == [], "no call was sent to it and refused"
        assert found.procs[drained].wait(20) == 0, found.output(drained)
        assert "drained and stopped" in found.output(drained)
        wait_until(lambda: not engine.connected(drained), message="the drained worker to leave")
        assert engine.run("steps", {"n": 1})["output"] == 10  # the other one serves on
        assert found.ran("steps.one") == [other]


@pytest.mark.parametrize(("kind", "name"), SLOW)
def test_a_step_longer_than_the_lease_and_the_call_timeout_completes(
    tmp_path: Path, kind: Kind, name: str
) -> None:
    # an HTTP call would time out at 3 s and lose its lease at 1.5 s without heartbeats;
    # the worker extends its lease every second, which moves the call's deadline on (the
    # first extension leaves a loaded machine's worker 2 s to be heard)
    with (
        node(str(tmp_path / "e.db"), lease_seconds=1.5, call_timeout=3.0) as engine,
        workers(tmp_path, kind.module) as found,
    ):
        assert engine.engine.connect.timing.extend == 1
        found.start(engine, "w1")
        started = time.monotonic()
        run = engine.run(name, {"seconds": 5})
        assert time.monotonic() - started > 5
        assert (run["status"], run["output"]) == ("Completed", "after")
        assert found.ran(f"{name}.work.start") == found.ran(f"{name}.work.end") == ["w1"]
        assert engine.failed_attempts(run["run_id"]) == []


def test_the_worker_reconnects_after_the_engine_restarts(tmp_path: Path, kind: Kind) -> None:
    db, gate = str(tmp_path / "e.db"), tmp_path / "gate"
    with workers(tmp_path, kind.module) as found:
        with node(db, shutdown_grace=0.5) as first:
            port = first.server.port
            found.start(first, "w1")
            assert first.run("steps", {"n": 2})["output"] == 20
            # a call in flight as the engine stops: its socket closes under it (after the
            # engine's grace), and the call goes back without spending an attempt (the
            # function has no retries)
            data = {"seconds": 60, "gate": str(gate)}
            run_id = first.run_of(first.send("fragile", data))
            wait_until(lambda: found.ran("fragile.work.start") or None, message="the step")
        gate.touch()  # the step outlived the engine: its reply has no socket to go back on
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
            assert found.ran("fragile.before") == ["w1"], "a recorded step never runs again"
            assert second.failed_attempts(run_id) == [], "the restart spent no attempt"
            if kind.late_reply is not None:
                # the call that outlived its socket was answered over HTTP (the engine had
                # handed it back already: 404, and the run went on from what was recorded)
                late = kind.late_reply
                wait_until(
                    lambda: late in found.output("w1"),
                    message=lambda: f"the reply to be flushed:\n{found.output('w1')}",
                )
            assert second.run("steps", {"n": 3})["output"] == 30
            assert second.run("sleep")["output"] == "woke"
        assert found.procs["w1"].poll() is None, "the worker outlives the engine's restarts"


def test_start_mode_takes_the_right_key_only(tmp_path: Path, kind: Kind) -> None:
    production: dict[str, Any] = {"mode": "start", "signing_keys": (KEY,)}
    with (
        node(str(tmp_path / "e.db"), **production) as engine,
        workers(tmp_path, kind.module) as found,
    ):
        assert httpx.post(f"{engine.url}/v0/connect/start", content=b"").status_code == 401
        wrong = {"authorization": signing.bearer_token(WRONG)}
        assert httpx.post(f"{engine.url}/v0/connect/start", headers=wrong).status_code == 401
        refused = found.spawn(engine.url, "wrong", WRONG)
        assert refused.wait(30) != 0, "a worker with another key gives up (401)"
        assert kind.refused in found.output("wrong")
        assert engine.get("/v1/apps")["data"] == [], "nothing was registered"
        found.start(engine, "right", KEY)  # its calls carry the engine's signature
        run = engine.run("steps", {"n": 5})
        assert (run["status"], run["output"]) == ("Completed", 50)
        assert found.ran("steps.one") == ["right"]
