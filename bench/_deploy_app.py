"""The app ``deploy_check_bench.py`` checks: ten steps, then a sleep of thirty days.

Its runs stay live after their tenth step, as a deploy finds them. ``client`` is the
deploy check's target (``_deploy_app:client``, imported from ``bench/``); ``build`` is
what the engine process serves in process.
"""

from __future__ import annotations

from collections.abc import Callable

import stepline

APP_ID = "checked"
EVENT = "checked/ten"
STEPS = 10
#: the step every live run sleeps in
SLEEP = "rest"


def _step(i: int) -> Callable[[], dict[str, int]]:
    return lambda: {"i": i}


STEP_FNS = [_step(i) for i in range(STEPS)]

client = stepline.Client(APP_ID, is_production=False)


@client.function(id="ten-then-sleep", trigger=stepline.TriggerEvent(event=EVENT), retries=0)
def ten_then_sleep(ctx: stepline.SyncContext) -> int:
    total = 0
    for i in range(STEPS):
        total += ctx.step.run(f"s{i}", STEP_FNS[i])["i"]
    ctx.step.sleep(SLEEP, "30d")
    return total


def build() -> tuple[stepline.Client, list[stepline.Function]]:
    """The client and the functions the engine serves."""
    return client, [ten_then_sleep]
