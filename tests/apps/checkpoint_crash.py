"""A process whose function is SIGKILLed in the middle of its fourth step.

Run as ``python tests/apps/checkpoint_crash.py DB LOG MODE start|resume [RUN_ID]``; MODE is
``per-step`` (``Checkpointing(buffered_steps=1)``) or ``batched`` (``True``). Every
step's code appends its name to LOG before it returns; the first time ``s3`` runs the
process kills itself. ``start`` prints the run id and waits to die; ``resume`` opens the
same database, lets the dead call's lease lapse, and prints the run's output.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import stepline
from stepline.embedded import EmbeddedEngine

STEPS = 5


def main() -> None:
    db, log, mode, what = sys.argv[1:5]
    option = stepline.Checkpointing(buffered_steps=1) if mode == "per-step" else True
    client = stepline.Client("crash", is_production=False, environ={}, checkpointing=option)

    @client.function(id="chain", trigger=stepline.TriggerEvent(event="crash/go"))
    def chain(ctx: stepline.SyncContext) -> list[int]:
        out = []
        for i in range(STEPS):

            def work(i: int = i) -> int:
                with open(log, "a", encoding="utf-8") as file:
                    file.write(f"s{i}\n")
                    file.flush()
                    os.fsync(file.fileno())
                if i == 3 and not os.path.exists(log + ".killed"):
                    open(log + ".killed", "w").close()
                    os.kill(os.getpid(), signal.SIGKILL)
                return i

            out.append(ctx.step.run(f"s{i}", work))
        return out

    engine = EmbeddedEngine(client, [chain], database=db, lease_seconds=1.0, poll_interval=0.1)
    engine.start()
    if what == "start":
        handle = client.start_sync(chain, {})
        print(handle.run_id, flush=True)
        time.sleep(60)  # the step kills the process long before this ends
        return
    try:
        print(client.get_run_sync(sys.argv[5]).result(timeout=30), flush=True)
    finally:
        engine.stop()
        client.close()


if __name__ == "__main__":
    main()
