"""The official worker's scenarios (``connect_official_worker``) served by Stepline's worker.

``python -m tests.apps.connect_stepline_worker ENGINE_URL INSTANCE LOG [SIGNING_KEY]`` runs
``stepline.connect.Worker(client, functions).run()`` until SIGTERM (it drains). The app id,
events and function ids are the official worker's (``harness`` reads both alike); each
step body that really runs appends ``<instance> <step key>`` to ``LOG``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import stepline
import stepline.connect
from tests.apps.connect_official_worker import APP_ID, event, hold


def hold_sync(data: Mapping[str, Any]) -> None:
    """``hold`` in a thread: sleep ``data["seconds"]``, or until the file ``data["gate"]``
    exists."""
    gate = data.get("gate")
    due = time.monotonic() + float(data.get("seconds", 1))
    while time.monotonic() < due and not (gate and os.path.exists(gate)):
        time.sleep(0.02)


def build(
    engine_url: str, instance: str, log: str, signing_key: str | None = None
) -> tuple[stepline.Client, list[stepline.Function]]:
    """The client and the functions."""
    client = stepline.Client(
        APP_ID,
        is_production=signing_key is not None,
        signing_key=signing_key,
        api_base_url=engine_url,
        event_api_base_url=engine_url,
    )
    functions: list[stepline.Function] = []

    def ran(key: str) -> None:
        with open(log, "a", encoding="utf-8") as out:
            out.write(f"{instance} {key}\n")
            out.flush()

    def fn(name: str, **options: Any) -> Callable[[Callable[..., Any]], stepline.Function]:
        options.setdefault("retries", 0)
        decorate = client.function(
            id=name, trigger=stepline.TriggerEvent(event=event(name)), **options
        )

        def register(handler: Callable[..., Any]) -> stepline.Function:
            function = decorate(handler)
            functions.append(function)
            return function

        return register

    @fn("steps")
    async def steps(ctx: stepline.Context) -> int:
        async def one() -> int:
            ran("steps.one")
            return int(ctx.event.data["n"])

        async def two(value: int) -> int:
            ran("steps.two")
            return value * 10

        first = await ctx.step.run("one", one)
        return int(await ctx.step.run("two", two, first))

    @fn("sync-steps")
    def sync_steps(ctx: stepline.SyncContext) -> int:
        def one() -> int:
            ran("sync-steps.one")
            return int(ctx.event.data["n"])

        return int(ctx.step.run("one", one)) + 1

    @fn("sleep")
    async def sleep(ctx: stepline.Context) -> str:
        await ctx.step.sleep("nap", dt.timedelta(seconds=1))

        def after() -> str:
            ran("sleep.after")
            return "woke"

        return str(await ctx.step.run("after", after))

    @fn("wait")
    async def wait(ctx: stepline.Context) -> Any:
        got = await ctx.step.wait_for_event(
            "reply",
            event=event("wait.reply"),
            if_exp="event.data.key == async.data.key",
            timeout=dt.timedelta(seconds=30),
        )
        return None if got is None else got.data

    @client.function(id="child", trigger=stepline.TriggerEvent(event="never"))
    async def child(ctx: stepline.Context) -> int:
        def double() -> int:
            ran("child.double")
            return int(ctx.event.data["n"]) * 2

        return int(await ctx.step.run("double", double))

    functions.append(child)

    @fn("invoke")
    async def invoke(ctx: stepline.Context) -> Any:
        return await ctx.step.invoke("call", function=child, data={"n": 21})

    @fn("retry", retries=2)
    async def retry(ctx: stepline.Context) -> str:
        def flaky() -> str:
            ran(f"retry.flaky.{ctx.attempt}")
            if ctx.attempt == 0:
                raise RuntimeError("first attempt fails")
            return f"ok after {ctx.attempt}"

        return str(await ctx.step.run("flaky", flaky))

    @fn("parallel")
    async def parallel(ctx: stepline.Context) -> list[Any]:
        def make(key: str, value: int) -> Callable[[], int]:
            def body() -> int:
                ran(f"parallel.{key}")
                return value

            return body

        found = await ctx.step.parallel(
            [lambda: ctx.step.run("a", make("a", 1)), lambda: ctx.step.run("b", make("b", 2))]
        )
        return list(found)

    def slow(name: str, retries: int, *, sync: bool = False) -> None:
        if sync:  # the step sleeps in the SDK's thread pool

            @fn(name, retries=retries)
            def sync_handler(ctx: stepline.SyncContext) -> str:
                def work() -> str:
                    ran(f"{name}.work.start")
                    hold_sync(ctx.event.data)
                    ran(f"{name}.work.end")
                    return "worked"

                ctx.step.run("work", work)
                return "after"

            return

        @fn(name, retries=retries)
        async def handler(ctx: stepline.Context) -> str:
            def before() -> str:
                ran(f"{name}.before")
                return "before"

            async def work() -> str:
                ran(f"{name}.work.start")
                await hold(ctx.event.data)
                ran(f"{name}.work.end")
                return "worked"

            def after() -> str:
                ran(f"{name}.after")
                return "after"

            await ctx.step.run("before", before)
            # the SDK runs several steps per call and reports them together (checkpointing):
            # a sleep ends the call, so "before" is recorded before "work" starts
            await ctx.step.sleep("gap", dt.timedelta(milliseconds=1))
            await ctx.step.run("work", work)
            return str(await ctx.step.run("after", after))

    slow("slow", retries=3)
    slow("fragile", retries=0)  # a failed attempt would fail the run
    slow("slow-sync", retries=0, sync=True)

    return client, functions


def main() -> None:
    """Serve until SIGTERM (the worker drains) or SIGKILL."""
    logging.basicConfig(level=os.environ.get("WORKER_LOG_LEVEL", "INFO"), stream=sys.stderr)
    engine_url, instance, log = sys.argv[1:4]
    key = sys.argv[4] if len(sys.argv) > 4 else None
    client, functions = build(engine_url, instance, log, key)
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"{instance} started {os.getpid()}\n")
    stepline.connect.Worker(client, functions, instance_id=instance).run()
    print(f"{instance} drained and stopped", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
