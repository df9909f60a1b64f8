"""A served call's objects are freed as soon as it answers, by reference counting.

Nothing of a call (its execution state, request, replay tracker, publisher...) may sit in
a reference cycle: an app serving calls would otherwise leave the whole graph of every
call to Python's cycle collector (~30 objects a call), which then runs more often and
longer in the app's own process. Each call here runs with the collector off, and
``gc.DEBUG_SAVEALL`` shows what only it could have freed.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Iterator
from typing import Any

import pytest

import stepline
from stepline._comm import CommHandler, CommRequest

from .comm_calls import CHECKPOINT, URL, body_for, make_client, memo, serve, sha1

pytestmark = [pytest.mark.slow]


def _stepline_garbage() -> list[str]:
    """The stepline objects the cycle collector finds unreachable now."""
    gc.collect()
    found = [type(o).__qualname__ for o in gc.garbage if _ours(o)]
    gc.garbage.clear()
    return found


def _ours(thing: object) -> bool:
    return type(thing).__module__.startswith("stepline")


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.garbage.clear()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def _functions(client: stepline.Client) -> list[stepline.Function]:
    @client.function(id="sync-fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def sync_fn(ctx: stepline.SyncContext) -> int:
        a = ctx.step.run("a", lambda: 1)
        return int(ctx.step.run("b", lambda: a + 1))

    @client.function(id="async-fn", trigger=stepline.TriggerEvent(event="demo/go"))
    async def async_fn(ctx: stepline.Context) -> int:
        async def one() -> int:
            return 1

        a = await ctx.step.run("a", one)
        return int(await ctx.step.run("b", lambda: a + 1))

    return [sync_fn, async_fn]


#: the calls of a two-step run: the first step, the second (one memo), the return
CALLS = [{}, {sha1("a"): memo(1)}, {sha1("a"): memo(1), sha1("b"): memo(2)}]


def _request(function: str, steps: dict[str, Any], **ctx: Any) -> CommRequest:
    body = json.dumps(body_for(steps=steps, **ctx)).encode()
    url = f"{URL}?fnId=app-{function}&stepId=step"
    return CommRequest.build(method="POST", url=url, headers={}, body=body)


@pytest.mark.usefixtures("collector_off")
@pytest.mark.parametrize("fn_id", ["sync-fn", "async-fn"])
@pytest.mark.parametrize("server", ["sync", "async"])
def test_a_call_leaves_nothing_to_the_cycle_collector(fn_id: str, server: str) -> None:
    client = make_client()
    handler = serve(client, *_functions(client))
    for steps in CALLS:
        response = _answer(handler, _request(fn_id, steps), server)
        assert response.status in (200, 206), response.body
        del response
        assert _stepline_garbage() == [], f"{fn_id} on a {server} server, memos {list(steps)}"


@pytest.mark.usefixtures("collector_off")
@pytest.mark.parametrize("server", ["sync", "async"])
def test_a_checkpointed_call_leaves_nothing_to_the_cycle_collector(server: str) -> None:
    client = make_client(checkpointing=True)
    handler = serve(client, *_functions(client))
    response = _answer(handler, _request("sync-fn", {}, **CHECKPOINT), server)
    assert response.status in (200, 206), response.body
    del response
    assert _stepline_garbage() == []


def _answer(handler: CommHandler, request: CommRequest, server: str) -> Any:
    if server == "sync":
        return handler.handle_sync(request)
    return asyncio.run(handler.handle(request))
