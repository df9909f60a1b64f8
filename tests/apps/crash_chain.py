"""The app the crash test drives: a chain of steps that log every execution.

Run as ``python tests/apps/crash_chain.py PORT LOGFILE``; each step appends ``begin run step
- TIME`` to LOGFILE when it starts and ``end run step nonce TIME`` when it is done, and
returns the nonce: the test can tell a re-execution of a recorded step (the recorded nonce
is not the last one logged) from a retry of a lost one, and which steps were in flight
(begun, not ended) at the moment of each kill.
"""

from __future__ import annotations

import os
import sys
import time
import uuid

import uvicorn

import stepline
import stepline.asgi

STEPS = 8
client = stepline.Client(app_id="crash", is_production=False, checkpointing=False)
LOG = sys.argv[2] if len(sys.argv) > 2 else "crash.log"


#: long enough that a kill from outside lands while steps are running
STEP_SECONDS = 0.6


def _log(line: str) -> None:
    with open(LOG, "a", encoding="utf-8") as log:
        log.write(f"{line} {time.time():.6f}\n")
        log.flush()
        os.fsync(log.fileno())


def _step(run_id: str, name: str) -> str:
    nonce = uuid.uuid4().hex[:8]
    _log(f"begin {run_id} {name} -")
    time.sleep(STEP_SECONDS)
    _log(f"end {run_id} {name} {nonce}")
    return nonce


@client.function(id="chain", trigger=stepline.TriggerEvent(event="crash/go"))
def chain(ctx: stepline.SyncContext) -> list[str]:
    return [ctx.step.run(f"s{i}", _step, ctx.run_id, f"s{i}") for i in range(STEPS)]


app = stepline.asgi.serve(client, [chain])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
