"""The app ``official`` on the official ``inngest`` SDK, served by uvicorn in a child
process: the runs a deploy check replays over the wire, and the code it checks them
against (``tests/replay/test_deploy_check_processes.py``).

Function ``order`` (event ``official/order``): steps ``a``, ``b``, a sleep ``nap1``
(``event.data.nap1`` seconds), step ``c``, a sleep ``nap2``, step ``d``, as
``deploy_v1``. ``DEPLOY_VARIANT`` says which version this process serves: ``v1``,
``append`` (a step ``e`` after ``d``), ``remove`` (no ``a``) or ``reorder`` (``b``
before ``a``). Past v1, every step body GETs ``DEPLOY_COUNTER_URL``, so a step that runs
is counted there.
"""

from __future__ import annotations

import datetime as dt
import os
import urllib.request
import warnings
from typing import Any

import fastapi
import inngest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # inngest 0.5's class-based pydantic Config
    import inngest.fast_api

VARIANT = os.environ.get("DEPLOY_VARIANT", "v1")
COUNTER_URL = os.environ.get("DEPLOY_COUNTER_URL", "")
APP_ID = "official"

app = fastapi.FastAPI()
client = inngest.Inngest(app_id=APP_ID, is_production=False)


def _body(name: str) -> Any:
    def body() -> str:
        if VARIANT != "v1" and COUNTER_URL:
            with urllib.request.urlopen(f"{COUNTER_URL}/step/{name}", timeout=5) as answer:
                answer.read()
        return name

    return body


def _seconds(data: Any, key: str) -> dt.timedelta:
    return dt.timedelta(seconds=float(data.get(key, 0)))


@client.create_function(fn_id="order", trigger=inngest.TriggerEvent(event="official/order"))
def order(ctx: inngest.ContextSync) -> list[str]:
    step = ctx.step
    done: list[str] = []
    if VARIANT == "remove":
        done.append(step.run("b", _body("b")))
    elif VARIANT == "reorder":
        done += [step.run("b", _body("b")), step.run("a", _body("a"))]
    else:
        done += [step.run("a", _body("a")), step.run("b", _body("b"))]
    step.sleep("nap1", _seconds(ctx.event.data, "nap1"))
    done.append(step.run("c", _body("c")))
    step.sleep("nap2", _seconds(ctx.event.data, "nap2"))
    done.append(step.run("d", _body("d")))
    if VARIANT == "append":
        done.append(step.run("e", _body("e")))
    return done


inngest.fast_api.serve(app, client, [order])
