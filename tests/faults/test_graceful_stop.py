"""SIGTERM / SIGINT on a real ``stepline dev``: a graceful stop loses nothing, repeats nothing.

The first signal stops leasing and lets the calls in flight finish within
``--shutdown-grace``; the process exits 0. Calls not finished by then (or when a second
signal arrives) are cancelled and their leases handed back, so the next start takes them
at once instead of after the 30 s lease. The app runs in this process and traces every
step execution.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import stepline
import stepline.asgi
from stepline._comm import app_sync
from stepline._comm.handler import CommHandler
from tests._support.polling import wait_until
from tests._support.processes import (
    clean_env,
    engine_command,
    free_port,
    log_tail,
    spawn,
    wait_until_up,
)
from tests._support.processes import stop as stop_process
from tests._support.server_thread import AppServer
from tests.apps.fault_injecting import Trace

pytestmark = [pytest.mark.process]

STEPS = 3
RUNS = 8


def _app(trace: Trace, *, first_call_hangs: bool = False) -> tuple[stepline.Client, list[Any]]:
    client = stepline.Client(app_id="stop", is_production=False, checkpointing=False)

    async def step(run_id: str, name: str) -> str:
        if first_call_hangs and name == "s0" and not trace.executions_of(run_id, "s0-started"):
            trace.step(run_id, f"{name}-started")
            await asyncio.sleep(20)  # in flight well past any grace under test
        await asyncio.sleep(0.3)  # a burst keeps several calls in flight at any time
        return trace.step(run_id, name)

    @client.function(id="burst", trigger=stepline.TriggerEvent(event="stop/go"))
    async def burst(ctx: stepline.Context) -> list[str]:
        return [await ctx.step.run(f"s{i}", step, ctx.run_id, f"s{i}") for i in range(STEPS)]

    return client, [burst]


class Engine:
    """Successive ``stepline dev`` processes on one database."""

    def __init__(self, db: str, log: Path) -> None:
        self.db, self.log = db, log
        self.base = ""
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, grace: float) -> subprocess.Popen[bytes]:
        # a fresh port for each process: the one before may still be taken for a moment
        # (another socket given it as an ephemeral port), and nothing here needs the same one;
        # a port found free can still be taken before the engine binds it: then another
        for attempt in range(3):
            port = free_port()
            self.base = f"http://127.0.0.1:{port}"
            args = ["dev", "--port", str(port), "--db", self.db]
            args += ["--shutdown-grace", str(grace), "--no-poll"]
            self.proc = spawn(engine_command(*args), log=self.log, env=clean_env(), append=True)
            try:
                wait_until_up(f"{self.base}/health", self.proc, log=self.log)
            except AssertionError as exc:
                if f"port {port} is already in use" not in str(exc) or attempt == 2:
                    raise
                continue
            return self.proc
        raise AssertionError("unreachable")

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def exit_code(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stop_process(self.proc, 1)
            raise AssertionError(f"no exit within {timeout} s:\n{log_tail(self.log)}") from None

    def close(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 2)

    def runs(self) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.base}/v1/runs", params={"limit": 100}, timeout=5)
        data: list[dict[str, Any]] = answer.json()["data"]
        return data


def _register(engine: Engine, client: stepline.Client, functions: list[Any], url: str) -> None:
    handler = CommHandler(client=client, functions=functions, framework="asgi")
    body = app_sync.register_payload(handler.endpoint, f"{url}/api/inngest")
    handler.close()
    assert httpx.post(f"{engine.base}/fn/register", json=body, timeout=10).status_code == 200


def _send(engine: Engine, count: int) -> None:
    events = [{"name": "stop/go", "data": {"i": i}} for i in range(count)]
    assert httpx.post(f"{engine.base}/e/key", json=events, timeout=10).status_code == 200


def _completed(engine: Engine, total: int, timeout: float) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        runs = engine.runs()
        ok = len(runs) == total and all(r["status"] == "Completed" for r in runs)
        return runs if ok else None

    return wait_until(done, timeout=timeout, message=lambda: f"{total} runs to complete")


@pytest.mark.timeout(90)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["term", "int"])
def test_signal_during_a_burst_finishes_calls_in_flight_and_exits_0(
    tmp_path: Path, db: str, sig: int
) -> None:
    trace = Trace()
    client, functions = _app(trace)
    engine = Engine(db, tmp_path / "engine.log")
    with AppServer(stepline.asgi.serve(client, functions)) as app:
        try:
            engine.start(grace=20)
            _register(engine, client, functions, app.base)
            _send(engine, RUNS)
            wait_until(lambda: len(trace.executions) >= 2, timeout=20, message="steps to run")
            engine.signal(sig)
            assert engine.exit_code(25) == 0, log_tail(engine.log)
            before = len(trace.executions)
            assert before < RUNS * STEPS, "the burst ended before the signal: nothing tested"
            engine.start(grace=20)
            runs = _completed(engine, RUNS, timeout=30)
        finally:
            engine.close()
    for run in runs:
        for i, nonce in enumerate(run["output"]):
            seen = trace.executions_of(run["run_id"], f"s{i}")
            # nothing in flight was cut off: every step ran once and that run was recorded
            assert seen == [nonce], f"s{i} of {run['run_id']} ran {len(seen)} times"
    assert "letting" in engine.log.read_text(), "no call was in flight at the signal"


@pytest.mark.timeout(90)
@pytest.mark.parametrize("how", ["grace-ends", "second-signal"])
def test_calls_not_finished_are_handed_back_and_taken_at_once(
    tmp_path: Path, db: str, how: str
) -> None:
    trace = Trace()
    client, functions = _app(trace, first_call_hangs=True)
    engine = Engine(db, tmp_path / "engine.log")
    with AppServer(stepline.asgi.serve(client, functions)) as app:
        try:
            engine.start(grace=0.5 if how == "grace-ends" else 60)
            _register(engine, client, functions, app.base)
            _send(engine, 1)
            wait_until(lambda: trace.executions, timeout=20, message="the first step to start")
            engine.signal()
            began = time.monotonic()
            if how == "second-signal":
                wait_until(  # the first signal taken: the engine drains its call in flight
                    lambda: "stopping: letting" in engine.log.read_text(),
                    timeout=10,
                    message=lambda: f"the drain to start:\n{log_tail(engine.log)}",
                )
                assert engine.proc is not None
                assert engine.proc.poll() is None, "did not wait for the call in flight"
                engine.signal()
            assert engine.exit_code(10) == 0, log_tail(engine.log)
            assert time.monotonic() - began < 6, "the stop did not cut the call short"
            restarted = time.monotonic()
            engine.start(grace=0)
            (run,) = _completed(engine, 1, timeout=20)
            # the lease is 30 s: a run resumed sooner was handed back, not left to lapse
            assert time.monotonic() - restarted < 15
        finally:
            engine.close()
    assert "handing back 1 call(s)" in engine.log.read_text()
    # the first call hung once (and was cut short), the retry ran and was recorded once
    assert len(trace.executions_of(run["run_id"], "s0-started")) == 1
    assert trace.executions_of(run["run_id"], "s0") == [run["output"][0]]
