"""A node of the multi-node test.

``python tests/apps/multinode_node.py PORT DB NODE TRACE LEASE APP``.

Every node is a whole engine (HTTP API, worker, heartbeat, LISTEN) on the shared
Postgres ``DB`` and serves its own copy of the ``multinode`` app in-process, so the only
thing nodes share is the database: which node runs a call is decided by leasing alone.
``APP`` is the app id (the function is ``APP-burst``); each test run picks a fresh one,
since Postgres advisory locks, which guard concurrency keys, are database-wide, not
per schema.

Each step execution appends ``start`` then ``end`` lines to the ``TRACE`` file (one
``O_APPEND`` write each, fsync'd) with the node, run, step, concurrency key, a fresh
nonce (the step's return value) and the wall-clock time, so the test can rebuild every
execution interval across all nodes afterwards.

Holding: when the file ``TRACE.hold`` names this node, the first step to see it here
writes a ``held`` line and sleeps instead of returning, which lets the test kill the
node in the middle of a step whose slot it has held for longer than one lease.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid

import uvicorn

import stepline
from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app

STEPS = 4
STEP_SECONDS = 0.03
#: At most this many steps of the function execute at once, across all nodes ...
LIMIT = 2
#: ... and at most this many per ``event.data.k``.
KEY_LIMIT = 1
EVENT = "multinode/go"

#: Set from the command line by ``main`` (the test imports this module for its constants).
NODE = "?"
TRACE = HOLD = HELD = os.devnull


def record(*fields: object) -> None:
    """Append one line to the trace, atomically (one ``O_APPEND`` write) and durably."""
    fd = os.open(TRACE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (" ".join(str(f) for f in fields) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _hold_here() -> bool:
    try:
        with open(HOLD, encoding="utf-8") as armed:
            if armed.read().strip() != NODE:
                return False
        os.close(os.open(HELD, os.O_WRONLY | os.O_CREAT | os.O_EXCL))  # the first step only
    except FileNotFoundError:
        return False
    except FileExistsError:
        return False
    return True


def _step(run_id: str, step: str, key: str) -> str:
    nonce = uuid.uuid4().hex[:12]
    record("start", NODE, run_id, step, key, nonce, f"{time.time():.6f}")
    time.sleep(STEP_SECONDS)
    if _hold_here():
        record("held", NODE, run_id, step, key, nonce, f"{time.time():.6f}")
        time.sleep(600)  # until the test kills this node
    record("end", NODE, run_id, step, key, nonce, f"{time.time():.6f}")
    return nonce


def function_id(app_id: str) -> str:
    """The id the engine gives the app's function."""
    return f"{app_id}-burst"


def build(app_id: str) -> tuple[stepline.Client, stepline.Function]:
    """The app: one function running ``STEPS`` traced steps under both limits."""
    client = stepline.Client(app_id=app_id, is_production=False, checkpointing=False)

    @client.function(
        id="burst",
        trigger=stepline.TriggerEvent(event=EVENT),
        concurrency=[
            stepline.Concurrency(limit=LIMIT),
            stepline.Concurrency(limit=KEY_LIMIT, key="event.data.k"),
        ],
    )
    def burst(ctx: stepline.SyncContext) -> list[str]:
        key = str(ctx.event.data["k"])
        return [ctx.step.run(f"s{i}", _step, ctx.run_id, f"s{i}", key) for i in range(STEPS)]

    return client, burst


async def serve(port: int, db: str, lease: float, app_id: str) -> None:
    settings = EngineSettings(
        port=port,
        database_url=db,
        lease_seconds=lease,
        retry_scale=0.001,
        retry_jitter=0.0,
        poll_interval=0.25,
    )
    engine = Engine(settings)
    await engine.start(sync=False)  # the app's lifespan start below is then a no-op
    client, burst = build(app_id)
    await engine.serve(client, [burst])
    config = uvicorn.Config(build_app(engine), host="127.0.0.1", port=port, log_level="warning")
    await uvicorn.Server(config).serve()


def main() -> None:
    global NODE, TRACE, HOLD, HELD
    port, db, NODE, TRACE, lease, app_id = sys.argv[1:7]
    HOLD, HELD = TRACE + ".hold", TRACE + ".held"
    asyncio.run(serve(int(port), db, float(lease), app_id))


if __name__ == "__main__":
    main()
