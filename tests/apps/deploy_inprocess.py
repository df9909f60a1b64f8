"""An app whose runs are exported, replayed and deploy-checked (``test_export_replay.py``).

``journey`` uses one of each kind of step: ``charge`` fails twice then succeeds (retries),
a sleep, a ``wait_for_event`` answered by an event, an ``invoke`` of ``child``, and a
parallel group of two steps; its output is built from them. ``dozer`` does a step then
sleeps a day (a live run for the deploy check). ``BODIES`` counts each step body's calls
in this process, so a test can tell that a replay ran none. The client is the deploy
check's target: ``tests.apps.deploy_inprocess:client``.

``define`` builds the same functions on another client, with steps renamed or swapped or
another output: the changed code a replay is played against.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from typing import Any

import stepline

#: step body -> how many times it ran in this process
BODIES: collections.Counter[str] = collections.Counter()

APP_ID = "deployed"


def _field(event: stepline.Event, key: str) -> Any:
    data = event.data
    assert isinstance(data, Mapping), "the events here carry JSON objects"
    return data[key]


def _fetch(order: int) -> dict[str, Any]:
    BODIES["fetch"] += 1
    return {"order": order, "sku": "kettle", "price": 30}


def _charge(attempt: int, price: int) -> dict[str, Any]:
    BODIES["charge"] += 1
    if attempt < 2:
        raise RuntimeError(f"card declined (attempt {attempt})")
    return {"charged": price, "attempts": attempt + 1}


def _double(n: int) -> int:
    BODIES["double"] += 1
    return 2 * n


def _pack(sku: str) -> str:
    BODIES["pack"] += 1
    return f"box:{sku}"


def _label(order: int) -> str:
    BODIES["label"] += 1
    return f"label:{order}"


def _nap_before() -> str:
    BODIES["before"] += 1
    return "awake"


def define(
    client: stepline.Client,
    *,
    fetch: str = "fetch",
    charge: str = "charge",
    swapped: bool = False,
    extra: dict[str, Any] | None = None,
) -> tuple[stepline.Function, stepline.Function, stepline.Function]:
    """``child``, ``journey`` and ``dozer`` on ``client``: ``fetch`` and ``charge`` name
    those steps, ``swapped`` runs ``charge`` before ``fetch``, ``extra`` joins the output."""

    @client.function(id="child", trigger=stepline.TriggerEvent(event="deployed/child"))
    def child(ctx: stepline.SyncContext) -> int:
        return ctx.step.run("double", _double, int(_field(ctx.event, "n")))

    @client.function(
        id="journey", trigger=stepline.TriggerEvent(event="deployed/journey"), retries=3
    )
    def journey(ctx: stepline.SyncContext) -> dict[str, Any]:
        order = int(_field(ctx.event, "order"))
        if swapped:
            charged = ctx.step.run(charge, _charge, ctx.attempt, 30)
            fetched = ctx.step.run(fetch, _fetch, order)
        else:
            fetched = ctx.step.run(fetch, _fetch, order)
            charged = ctx.step.run(charge, _charge, ctx.attempt, fetched["price"])
        ctx.step.sleep("nap", "1s")
        approval = ctx.step.wait_for_event(
            "approval",
            event="deployed/approved",
            timeout="1h",
            if_exp="async.data.order == event.data.order",
        )
        doubled = ctx.step.invoke("double", function=child, data={"n": charged["charged"]})
        box, label = ctx.step.parallel(
            [
                lambda: ctx.step.run("pack", _pack, fetched["sku"]),
                lambda: ctx.step.run("label", _label, order),
            ]
        )
        return {
            "order": order,
            "charged": charged,
            "approved_by": _field(approval, "by") if approval is not None else None,
            "doubled": doubled,
            "shipment": [box, label],
            **(extra or {}),
        }

    @client.function(id="dozer", trigger=stepline.TriggerEvent(event="deployed/dozer"))
    def dozer(ctx: stepline.SyncContext) -> str:
        ctx.step.run("before", _nap_before)
        ctx.step.sleep("long", "1d")
        return "rested"

    return child, journey, dozer


#: the version the recorded runs start on: their export and the check's verdicts carry it
APP_VERSION = "2026-11-27.1"
client = stepline.Client(
    app_id=APP_ID, is_production=False, checkpointing=False, app_version=APP_VERSION
)
child, journey, dozer = define(client)
