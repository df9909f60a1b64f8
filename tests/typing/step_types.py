"""Checked by mypy (see test_types.py): each face of the step API is typed right."""

from __future__ import annotations

from typing import Any

import pydantic
from typing_extensions import assert_type

import stepline

client = stepline.Client("typing", is_production=False, environ={})


class Order(pydantic.BaseModel):
    id: int


def make_order() -> Order:
    return Order(id=1)


async def fetch_count() -> int:
    return 3


@client.function(id="sync", trigger=stepline.TriggerEvent(event="t/sync"))
def sync_fn(ctx: stepline.SyncContext) -> str:
    assert_type(ctx.step.run("a", lambda: 1), int)
    assert_type(ctx.step.run("b", make_order, output_type=Order), Order)
    assert_type(ctx.step.sleep("c", 1000), None)
    assert_type(ctx.step.wait_for_event("d", event="x", timeout="1m"), stepline.Event | None)
    assert_type(ctx.step.parallel([lambda: 1, lambda: 2]), tuple[int, ...])
    assert_type(ctx.step.run("t", lambda: 1, timeout="30s"), int)
    assert_type(ctx.step.wait_for_signal("s", signal="ok", timeout="1h"), Any)
    assert_type(ctx.signal_token("ok"), str)
    assert_type(ctx.step.send_event("e", stepline.Event(name="x")), list[str])
    assert_type(ctx.step.publish("f", topic="progress", data={"done": 1}), int)
    assert_type(ctx.publish("tokens", "hel"), None)
    return "ok"


@client.function(id="async", trigger=stepline.TriggerEvent(event="t/async"))
async def async_fn(ctx: stepline.Context) -> str:
    assert_type(await ctx.step.run("a", fetch_count), int)
    assert_type(await ctx.step.run("b", make_order), Order)
    assert_type(await ctx.step.run("t", fetch_count, timeout=5000), int)
    assert_type(await ctx.step.wait_for_signal("s", signal="ok", timeout="1h"), Any)
    assert_type(ctx.signal_token("ok"), str)
    assert_type(await ctx.step.sleep("c", 1000), None)
    assert_type(await ctx.step.wait_for_event("d", event="x", timeout="1m"), stepline.Event | None)
    assert_type(await ctx.step.send_event("e", stepline.Event(name="x")), list[str])
    assert_type(await ctx.step.publish("f", topic="progress", data=make_order()), int)
    assert_type(ctx.publish("tokens", "hel"), None)
    assert_type(ctx.event, stepline.Event)
    return "ok"


assert_type(sync_fn, stepline.Function)
assert_type(async_fn, stepline.Function)
