"""The app of the partition test: one function whose one step outlasts a lease.

``python tests/apps/partition_app.py HOST PORT LOG``. Each execution of the step appends
``begin N TIME`` when it starts and ``end N TIME`` when it returns to ``LOG`` (fsync'd),
N counting the executions in this process from 1, and returns ``exec-N``: the test tells
which call's answer was recorded (the first call's, made by the node then cut off, or the
one made after the call was leased again).
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time

import uvicorn

import stepline
import stepline.asgi

EVENT = "partition/go"
#: seconds the step sleeps: several leases
STEP_SECONDS = 12.0
LOG = sys.argv[3] if len(sys.argv) > 3 else os.devnull
_count = itertools.count(1)
_lock = threading.Lock()

client = stepline.Client(app_id="partition", is_production=False, checkpointing=False)


def _log(line: str) -> None:
    with open(LOG, "a", encoding="utf-8") as log:
        log.write(f"{line} {time.time():.6f}\n")
        log.flush()
        os.fsync(log.fileno())


def _slow() -> str:
    with _lock:
        number = next(_count)
    _log(f"begin {number}")
    time.sleep(STEP_SECONDS)
    _log(f"end {number}")
    return f"exec-{number}"


@client.function(id="fenced", trigger=stepline.TriggerEvent(event=EVENT), retries=0)
def fenced(ctx: stepline.SyncContext) -> str:
    return ctx.step.run("slow", _slow)


app = stepline.asgi.serve(client, [fenced])

if __name__ == "__main__":
    uvicorn.run(app, host=sys.argv[1], port=int(sys.argv[2]), log_level="warning")
