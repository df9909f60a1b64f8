"""The app the run-management, embedded-engine and web-kit tests drive.

``build(app_id)`` declares the same functions on a fresh client each time, so every
engine (real HTTP, embedded, production) gets its own. ``worker`` is the body of one
process of the multi-process test (imported by ``multiprocessing`` in a spawned child).

A step of ``traced`` appends one line per execution to a trace file (a single
``O_APPEND`` write: lines from several processes never interleave), so the test can
count how often each step really ran.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import json
import os
from typing import Any

import stepline
from tests._support.engines import FAST

#: Fast engine settings for tests: no retry delays, quick polling.
SIGNING_KEY = "signkey-prod-" + "c0ffee12" * 8
EVENT_KEY = "prod-event-key"


@dataclasses.dataclass
class App:
    """A client and its functions."""

    client: stepline.Client
    order: stepline.Function
    sleeper: stepline.Function
    limited: stepline.Function
    waiter: stepline.Function
    hidden: stepline.Function
    traced: stepline.Function

    @property
    def functions(self) -> list[stepline.Function]:
        return [self.order, self.sleeper, self.limited, self.waiter, self.hidden, self.traced]


def build(app_id: str = "shop", *, trace: str | None = None, **client_options: Any) -> App:
    """A client (dev mode unless ``client_options`` say otherwise) with the test functions."""
    client_options.setdefault("is_production", False)
    client = stepline.Client(app_id=app_id, **client_options)

    @client.function(id="order", trigger=stepline.TriggerEvent(event="shop/order"), retries=0)
    def order(ctx: stepline.SyncContext) -> dict[str, Any]:
        a = ctx.step.run("a", lambda: 1)
        b = ctx.step.run("b", lambda: a + 1)
        if ctx.event.data.get("fail"):
            raise stepline.NonRetriableError("boom")
        return {"n": b, "x": ctx.event.data.get("x")}

    @client.function(id="sleeper", trigger=stepline.TriggerEvent(event="shop/sleep"))
    async def sleeper(ctx: stepline.Context) -> str:
        await ctx.step.sleep("nap", dt.timedelta(hours=1))
        return "rested"

    @client.function(
        id="limited",
        trigger=stepline.TriggerEvent(event="shop/limited"),
        rate_limit=stepline.RateLimit(limit=1, period=dt.timedelta(hours=1), key="event.data.k"),
    )
    def limited(ctx: stepline.SyncContext) -> str:
        return "ran"

    @client.function(id="waiter", trigger=stepline.TriggerEvent(event="shop/wait"))
    def waiter(ctx: stepline.SyncContext) -> Any:
        got = ctx.step.wait_for_event(
            "go",
            event="shop/go",
            timeout=dt.timedelta(hours=1),
            if_exp="async.data.token == event.data.token",
        )
        return None if got is None else got.data.get("value")

    @client.function(id="hidden", trigger=stepline.TriggerEvent(event="shop/hidden"))
    def hidden(ctx: stepline.SyncContext) -> str:
        return "secret"

    @client.function(id="traced", trigger=stepline.TriggerEvent(event="shop/traced"))
    def traced(ctx: stepline.SyncContext) -> int:
        run_id = ctx.run_id
        total = 0
        for name in ("one", "two", "three"):
            total += ctx.step.run(name, lambda name=name: _trace(trace, run_id, name))
        return total

    return App(client, order, sleeper, limited, waiter, hidden, traced)


def _trace(path: str | None, run_id: str, step: str) -> int:
    if path is not None:
        line = json.dumps({"pid": os.getpid(), "run": run_id, "step": step}) + "\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    return 1


def worker(database: str, trace: str, out: str, runs: int, everyone_done: Any) -> None:
    """One web-worker process: an embedded engine on the shared file, ``runs`` starts at once.

    Writes ``{"results": {run_id: output}, "pid": ...}`` to ``out``, then waits at the
    ``everyone_done`` barrier before stopping: its engine may be running a step of
    another worker's run, and stopping would leave that step to run again elsewhere.
    """
    from stepline.embedded import EmbeddedEngine

    app = build(trace=trace)
    embedded = EmbeddedEngine(app.client, app.functions, database=database, **FAST)
    try:

        def one(i: int) -> tuple[str, Any]:
            handle = app.client.start_sync(app.traced, {"i": i})
            return handle.run_id, handle.result(timeout=40)

        with concurrent.futures.ThreadPoolExecutor(runs) as pool:
            results = dict(pool.map(one, range(runs)))
        with open(out, "w", encoding="utf-8") as file:
            json.dump({"results": results, "pid": os.getpid()}, file)
        everyone_done.wait(40)
    finally:
        embedded.stop()
