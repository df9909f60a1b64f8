"""v1 of the app ``deploy``, served by uvicorn in a child process: the runs a deploy check
replays (``tests/replay/test_deploy_check_processes.py``).

Function ``order`` (event ``deploy/order``): steps ``a``, ``b``, a sleep ``nap1``
(``event.data.nap1`` seconds), step ``c``, a sleep ``nap2`` (``event.data.nap2`` seconds),
step ``d``. A run with a long ``nap1`` sleeps after ``a`` and ``b``; one with a short
``nap1`` and a long ``nap2`` sleeps after ``c``. ``DEPLOY_APP_ID`` serves the same as
another app (its event ``<app id>/order``).
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import fastapi

import stepline
import stepline.fastapi

app = fastapi.FastAPI()
APP_ID = os.environ.get("DEPLOY_APP_ID", "deploy")
client = stepline.Client(APP_ID, is_production=False)


def _seconds(data: Any, key: str) -> dt.timedelta:
    return dt.timedelta(seconds=float(data.get(key, 0)))


@client.function(id="order", trigger=stepline.TriggerEvent(event=f"{APP_ID}/order"))
def order(ctx: stepline.SyncContext) -> list[str]:
    done = [ctx.step.run("a", lambda: "a"), ctx.step.run("b", lambda: "b")]
    ctx.step.sleep("nap1", _seconds(ctx.event.data, "nap1"))
    done.append(ctx.step.run("c", lambda: "c"))
    ctx.step.sleep("nap2", _seconds(ctx.event.data, "nap2"))
    done.append(ctx.step.run("d", lambda: "d"))
    return done


stepline.fastapi.serve(app, client, [order])
