"""A five-step function in its own process, for replays from a step (``test_replay_step``).

``REPLAY_DIR`` is a directory the test watches: each step appends its name to ``ran``
when it runs (so counts survive the process), and step 3 fails while a file ``fail``
exists there. The function has no retries: a failed step 3 fails the run. ``sleeps``
sleeps an hour (runs to cancel).
"""

from __future__ import annotations

import os
from pathlib import Path

import fastapi

import stepline
import stepline.fastapi

WHERE = Path(os.environ["REPLAY_DIR"])

app = fastapi.FastAPI()
client = stepline.Client("replayed", is_production=False)


def _step(n: int) -> int:
    with (WHERE / "ran").open("a") as log:
        log.write(f"step-{n}\n")
    if n == 3 and (WHERE / "fail").exists():
        raise ValueError("step 3 broke")
    return n


@client.function(id="five", retries=0, trigger=stepline.TriggerEvent(event="replay/five"))
def five(ctx: stepline.SyncContext) -> list[int]:
    return [ctx.step.run(f"step-{n}", _step, n) for n in range(1, 6)]


@client.function(id="sleeps", trigger=stepline.TriggerEvent(event="replay/sleep"))
def sleeps(ctx: stepline.SyncContext) -> None:
    ctx.step.sleep("nap", "1h")


stepline.fastapi.serve(app, client, [five, sleeps])
