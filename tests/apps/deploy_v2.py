"""v2 of the app ``deploy`` (``deploy_v1``): the code a deploy check replays the v1 runs
against, imported by ``stepline deploy check tests.apps.deploy_v2:client``.

``DEPLOY_VARIANT`` says how it differs from v1:

* ``append``: a step ``e`` after ``d`` (every recorded run replays);
* ``remove``: no step ``a`` (a recorded step is no longer reached);
* ``reorder``: ``b`` before ``a`` (recorded steps out of order);
* ``insert``: a new step ``z`` before ``a`` (a new step ahead of recorded ones);
* ``patched``: ``a`` only in the ``else:`` of ``ctx.patched("drop-a")`` (recorded runs
  keep it);
* ``chatty``: v1, plus a GET of ``DEPLOY_COUNTER_URL`` after ``a``, outside any step.

Every step body GETs ``DEPLOY_COUNTER_URL`` too, so a step that runs is counted there.
"""

from __future__ import annotations

import datetime as dt
import os
import urllib.request
from typing import Any

import fastapi

import stepline
import stepline.fastapi

VARIANT = os.environ["DEPLOY_VARIANT"]
COUNTER_URL = os.environ.get("DEPLOY_COUNTER_URL", "")
app = fastapi.FastAPI()
client = stepline.Client("deploy", is_production=False)


def _ping(what: str) -> None:
    """GET the counting server (when there is one)."""
    if COUNTER_URL:
        with urllib.request.urlopen(f"{COUNTER_URL}/{what}", timeout=5) as answer:
            answer.read()


def _body(name: str) -> Any:
    def body() -> str:
        _ping(f"step/{name}")
        return name

    return body


def _seconds(data: Any, key: str) -> dt.timedelta:
    return dt.timedelta(seconds=float(data.get(key, 0)))


@client.function(id="order", trigger=stepline.TriggerEvent(event="deploy/order"))
def order(ctx: stepline.SyncContext) -> list[str]:
    step = ctx.step
    done: list[str] = []
    if VARIANT == "remove":
        done.append(step.run("b", _body("b")))
    elif VARIANT == "insert":
        done += [step.run("z", _body("z")), step.run("a", _body("a")), step.run("b", _body("b"))]
    elif VARIANT == "reorder":
        done += [step.run("b", _body("b")), step.run("a", _body("a"))]
    elif VARIANT == "patched":
        if not ctx.patched("drop-a"):
            done.append(step.run("a", _body("a")))
        done.append(step.run("b", _body("b")))
    else:
        done.append(step.run("a", _body("a")))
        if VARIANT == "chatty":
            _ping("between-steps")
        done.append(step.run("b", _body("b")))
    step.sleep("nap1", _seconds(ctx.event.data, "nap1"))
    done.append(step.run("c", _body("c")))
    step.sleep("nap2", _seconds(ctx.event.data, "nap2"))
    done.append(step.run("d", _body("d")))
    if VARIANT == "append":
        done.append(step.run("e", _body("e")))
    return done


stepline.fastapi.serve(app, client, [order])
