"""SIGKILL the engine at chosen and random points under load; nothing is lost or repeated.

Beyond ``tests/engine/test_crash.py`` (one function, kills after random delays): each
``kill/go`` event fans out to three functions (a chain of steps, a parallel group, a
step-sleep-step), and the engine (``tests/apps/self_killing_engine.py``) kills itself mid
fan-out (inside the transaction starting an event's runs), mid commit (inside the
transaction recording an SDK answer) or just after a commit, or is killed from outside after
a random delay, with events sent between lives (retried with their id seed until
acknowledged). The app runs in this process and survives every kill; it traces each step
execution.

Afterwards: every acknowledged event started exactly one run of each function, every
run completed once (one ``inngest/function.finished``), each recorded step result is
the last execution of that step (a recorded step never ran again) and re-executions are
bounded by the kills (only steps in flight at a kill may run twice).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
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
from tests._support.processes import APPS, clean_env, free_port, log_tail, spawn
from tests._support.server_thread import AppServer
from tests.apps.fault_injecting import Trace

pytestmark = [pytest.mark.process]

FUNCTIONS = {"kill-chain": 4, "kill-fan": 4, "kill-napper": 2}  # steps each returns
BATCH = 4


def _app(trace: Trace) -> tuple[stepline.Client, list[stepline.Function]]:
    client = stepline.Client(app_id="kill", is_production=False, checkpointing=False)

    async def step(run_id: str, name: str) -> str:
        await asyncio.sleep(0.02)  # widen the window in which a kill lands mid-step
        return trace.step(run_id, name)

    @client.function(id="chain", trigger=stepline.TriggerEvent(event="kill/go"))
    async def chain(ctx: stepline.Context) -> list[str]:
        return [await ctx.step.run(f"c{i}", step, ctx.run_id, f"c{i}") for i in range(4)]

    @client.function(id="fan", trigger=stepline.TriggerEvent(event="kill/go"))
    async def fan(ctx: stepline.Context) -> list[str]:
        def branch(i: int) -> Any:
            return lambda: ctx.step.run(f"p{i}", step, ctx.run_id, f"p{i}")

        branches = await ctx.step.parallel([branch(i) for i in range(3)])
        return [*branches, await ctx.step.run("p-last", step, ctx.run_id, "p-last")]

    @client.function(id="napper", trigger=stepline.TriggerEvent(event="kill/go"))
    async def napper(ctx: stepline.Context) -> list[str]:
        first = await ctx.step.run("n0", step, ctx.run_id, "n0")
        await ctx.step.sleep("nap", "1s")
        return [first, await ctx.step.run("n1", step, ctx.run_id, "n1")]

    return client, [chain, fan, napper]


class Lives:
    """The engine's successive processes on one database, and the events sent to them."""

    def __init__(self, db: str, log: Path) -> None:
        self.db = db
        self.log = log
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.pending: list[tuple[str, list[dict[str, Any]]]] = []
        self.acked: list[str] = []
        self.kills = 0

    def spawn(self, spec: str = "") -> None:
        with self.log.open("ab") as out:
            out.write(f"--- life with FAULT_KILL={spec or '(none)'}\n".encode())
        args = [sys.executable, str(APPS / "self_killing_engine.py"), str(self.port), self.db]
        self.proc = spawn(args, log=self.log, env=clean_env(FAULT_KILL=spec), append=True)

    def up(self) -> bool:
        """Whether the engine answers (False if it died meanwhile)."""
        proc = self.proc
        assert proc is not None

        def answered() -> str | None:
            if proc.poll() is not None:
                return "died"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base}/health", timeout=1).status_code == 200:
                    return "up"
            return None

        def never() -> str:
            return f"the engine to come up:\n{log_tail(self.log)}"

        return wait_until(answered, timeout=30, interval=0.05, message=never) == "up"

    def queue(self, count: int) -> None:
        seed = f"{int(time.time() * 1000)},{base64.b64encode(os.urandom(10)).decode()}"
        events = [{"name": "kill/go", "data": {"i": len(self.pending) + i}} for i in range(count)]
        self.pending.append((seed, events))

    def deliver(self) -> None:
        """Send what is not acknowledged yet (same seed, so the same ids: at most once)."""
        left = []
        for seed, events in self.pending:
            try:
                answer = httpx.post(
                    f"{self.base}/e/key",
                    json=events,
                    headers={"x-inngest-event-id-seed": seed},
                    timeout=10,
                )
            except httpx.HTTPError:
                left.append((seed, events))
                continue
            assert answer.status_code == 200, answer.text
            self.acked += answer.json()["ids"]
        self.pending = left

    def die(self, timeout: float) -> None:
        """Wait for the process to kill itself; kill it after ``timeout`` otherwise."""
        assert self.proc is not None
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.kills += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


@pytest.mark.timeout(120)
def test_engine_killed_at_chosen_points_loses_nothing(tmp_path: Path, db: str) -> None:
    trace = Trace()
    client, functions = _app(trace)
    seed = int(os.environ.get("STEPLINE_FAULT_SEED", "11"))  # another seed, other points
    rng = random.Random(seed)
    # (FAULT_KILL spec, events sent in that life, seconds before an outside kill)
    plan = [
        (f"start:{rng.randint(2, 6)}", 2, 6.0),
        (f"apply:{rng.randint(4, 12)}", 1, 6.0),
        (f"commit:{rng.randint(10, 40)}", 1, 6.0),
        ("", 1, rng.uniform(0.3, 0.9)),
        (f"apply:{rng.randint(2, 8)}", 0, 6.0),
        (f"start:{rng.randint(1, 3)}", 1, 6.0),
        ("", 0, rng.uniform(0.3, 0.9)),
    ]
    lives = Lives(db, tmp_path / "engine.log")
    with AppServer(stepline.asgi.serve(client, functions)) as app:
        try:
            handler = CommHandler(client=client, functions=functions, framework="asgi")
            body = app_sync.register_payload(handler.endpoint, f"{app.base}/api/inngest")
            handler.close()
            lives.spawn()
            assert lives.up()
            assert httpx.post(f"{lives.base}/fn/register", json=body).status_code == 200
            lives.stop()
            for spec, batches, outside in plan:
                for _ in range(batches):
                    lives.queue(BATCH)
                lives.spawn(spec)
                if lives.up():
                    lives.deliver()
                lives.die(outside)
            lives.spawn()
            assert lives.up()
            lives.deliver()
            assert not lives.pending
            runs = _settled(lives.base, 3 * len(lives.acked))
            finished = httpx.get(
                f"{lives.base}/v1/events",
                params={"name": "inngest/function.finished", "limit": 500},
            ).json()["data"]
            links = {e: httpx.get(f"{lives.base}/v1/events/{e}/runs").json() for e in lives.acked}
        finally:
            lives.stop()

    log = lives.log.read_text()
    assert log.count("killing myself") >= 4, "the kill points were not reached:\n" + log
    assert len(lives.acked) == len(set(lives.acked)) == BATCH * sum(b for _, b, _ in plan)
    for event_id, found in links.items():
        started = sorted(r["function_id"] for r in found["data"])
        assert started == sorted(FUNCTIONS), f"event {event_id} started {started}"
    assert sorted(r["status"] for r in runs) == ["Completed"] * len(runs)
    per_run = collections.Counter(e["data"]["run_id"] for e in finished)
    assert per_run == dict.fromkeys((r["run_id"] for r in runs), 1), "one finish per run"
    _check_steps(runs, trace, kills=lives.kills)


def _settled(base: str, total: int) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        runs: list[dict[str, Any]] = httpx.get(f"{base}/v1/runs", params={"limit": 500}).json()[
            "data"
        ]
        finished = [r for r in runs if r["status"] in ("Completed", "Failed", "Cancelled")]
        return runs if len(runs) >= total and len(finished) == len(runs) else None

    runs = wait_until(done, message=f"{total} runs to end", timeout=60)
    assert len(runs) == total, f"{len(runs)} runs for {total} expected"
    return runs


def _check_steps(runs: list[dict[str, Any]], trace: Trace, *, kills: int) -> None:
    repeated = 0
    for run in runs:
        recorded = run["output"]
        assert isinstance(recorded, list), run
        assert len(recorded) == FUNCTIONS[run["function_id"]], run
        names = {
            "kill-chain": [f"c{i}" for i in range(4)],
            "kill-fan": ["p0", "p1", "p2", "p-last"],
            "kill-napper": ["n0", "n1"],
        }[run["function_id"]]
        for name, nonce in zip(names, recorded, strict=True):
            seen = trace.executions_of(run["run_id"], name)
            assert nonce in seen, f"{name} of {run['run_id']}: recorded value never executed"
            assert seen[-1] == nonce, f"{name} of {run['run_id']} ran after it was recorded"
            repeated += len(seen) - 1
    # only steps in flight at a kill run twice: at most a few per run per kill
    assert repeated <= kills * len(runs), repeated
    print(json.dumps({"kills": kills, "runs": len(runs), "re_executed_in_flight": repeated}))
