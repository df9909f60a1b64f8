"""An app served by the official ``inngest`` package's Connect worker, run as a process.

``python -m tests.apps.connect_official_worker ENGINE_URL INSTANCE LOG [SIGNING_KEY]``
connects to the engine's gateway (``inngest.connect.connect(...).start()``) and serves the
functions below until SIGTERM, on which the official worker drains (finishes its calls,
takes no new ones) and the process says ``<instance> drained and stopped``. Each step body
that really runs appends ``<instance> <step key>`` to ``LOG`` (flushed at once), so a test
in another process sees which worker ran what, and that no recorded step ran twice. The
slow functions' step ``work`` lasts the event's ``seconds``, or ends as soon as the file its
``gate`` names exists (``hold``). Without a signing key the client is in dev mode; with one,
in production mode.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import inngest
import pydantic.warnings

with warnings.catch_warnings():  # inngest 0.5.19's class-based pydantic Config
    warnings.filterwarnings("ignore", category=pydantic.warnings.PydanticDeprecatedSince20)
    import inngest.connect

APP_ID = "connect-py"
EXTRA_APP_ID = "connect-py-extra"


def event(name: str) -> str:
    """The event a scenario's function is triggered by."""
    return f"{APP_ID}/{name}"


def fid(local: str) -> str:
    """The composite id the SDK registers for a local function id."""
    return f"{APP_ID}-{local}"


async def hold(data: Mapping[str, Any]) -> None:
    """Sleep ``data["seconds"]`` (1 by default), or less: until the file ``data["gate"]``
    exists, so that a test holds a call in flight for exactly as long as it looks at it."""
    gate = data.get("gate")
    due = time.monotonic() + float(str(data.get("seconds", 1)))
    while time.monotonic() < due and not (gate and os.path.exists(str(gate))):
        await asyncio.sleep(0.02)


def build(
    engine_url: str, instance: str, log: str, signing_key: str | None = None
) -> tuple[inngest.Inngest, list[inngest.Function[Any]]]:
    """The client and the functions."""
    client = inngest.Inngest(
        app_id=APP_ID,
        is_production=signing_key is not None,
        signing_key=signing_key,
        api_base_url=engine_url,
        event_api_base_url=engine_url,
        logger=logging.getLogger("worker"),
    )
    functions: list[inngest.Function[Any]] = []

    def ran(key: str) -> None:
        with open(log, "a", encoding="utf-8") as out:
            out.write(f"{instance} {key}\n")
            out.flush()

    def fn(name: str, **options: Any) -> Callable[[Callable[..., Any]], inngest.Function[Any]]:
        options.setdefault("retries", 0)
        decorate = client.create_function(
            fn_id=name, trigger=inngest.TriggerEvent(event=event(name)), **options
        )

        def register(handler: Callable[..., Any]) -> inngest.Function[Any]:
            function = decorate(handler)
            functions.append(function)
            return function

        return register

    @fn("steps")
    async def steps(ctx: inngest.Context) -> int:
        async def one() -> int:
            ran("steps.one")
            return int(str(ctx.event.data["n"]))

        async def two(value: int) -> int:
            ran("steps.two")
            return value * 10

        first = await ctx.step.run("one", one)
        return await ctx.step.run("two", two, first)

    @fn("sync-steps")
    def sync_steps(ctx: inngest.ContextSync) -> int:
        def one() -> int:
            ran("sync-steps.one")
            return int(str(ctx.event.data["n"]))

        return ctx.step.run("one", one) + 1

    @fn("sleep")
    async def sleep(ctx: inngest.Context) -> str:
        await ctx.step.sleep("nap", dt.timedelta(seconds=1))

        async def after() -> str:
            ran("sleep.after")
            return "woke"

        return await ctx.step.run("after", after)

    @fn("wait")
    async def wait(ctx: inngest.Context) -> Any:
        got = await ctx.step.wait_for_event(
            "reply",
            event=event("wait.reply"),
            if_exp="event.data.key == async.data.key",
            timeout=dt.timedelta(seconds=30),
        )
        return None if got is None else got.data

    @client.create_function(fn_id="child", trigger=inngest.TriggerEvent(event="never"))
    async def child(ctx: inngest.Context) -> int:
        async def double() -> int:
            ran("child.double")
            return int(str(ctx.event.data["n"])) * 2

        return await ctx.step.run("double", double)

    functions.append(child)

    @fn("invoke")
    async def invoke(ctx: inngest.Context) -> Any:
        return await ctx.step.invoke("call", function=child, data={"n": 21})

    @fn("retry", retries=2)
    async def retry(ctx: inngest.Context) -> str:
        async def flaky() -> str:
            ran(f"retry.flaky.{ctx.attempt}")
            if ctx.attempt == 0:
                raise RuntimeError("first attempt fails")
            return f"ok after {ctx.attempt}"

        return await ctx.step.run("flaky", flaky)

    @fn("parallel")
    async def parallel(ctx: inngest.Context) -> list[Any]:
        def make(key: str, value: int) -> Any:
            async def body() -> int:
                ran(f"parallel.{key}")
                return value

            return body

        return list(
            await ctx.group.parallel(
                (lambda: ctx.step.run("a", make("a", 1)), lambda: ctx.step.run("b", make("b", 2)))
            )
        )

    def slow(name: str, retries: int) -> None:
        @fn(name, retries=retries)
        async def handler(ctx: inngest.Context) -> str:
            async def before() -> str:
                ran(f"{name}.before")
                return "before"

            async def work() -> str:
                ran(f"{name}.work.start")
                await hold(ctx.event.data)
                ran(f"{name}.work.end")
                return "worked"

            async def after() -> str:
                ran(f"{name}.after")
                return "after"

            await ctx.step.run("before", before)
            await ctx.step.run("work", work)
            return await ctx.step.run("after", after)

    slow("slow", retries=3)
    slow("fragile", retries=0)  # a failed attempt would fail the run

    return client, functions


def build_extra(
    engine_url: str, signing_key: str | None = None
) -> tuple[inngest.Inngest, list[inngest.Function[Any]]]:
    """A second app served by the same worker (one socket, two apps)."""
    client = inngest.Inngest(
        app_id=EXTRA_APP_ID,
        is_production=signing_key is not None,
        signing_key=signing_key,
        api_base_url=engine_url,
        event_api_base_url=engine_url,
        logger=logging.getLogger("worker"),
    )

    @client.create_function(fn_id="hello", trigger=inngest.TriggerEvent(event="extra/hello"))
    async def hello(ctx: inngest.Context) -> str:
        return f"hello {ctx.event.data.get('name')}"

    return client, [hello]


def main() -> None:
    """Serve until SIGTERM (the worker drains) or SIGKILL."""
    logging.basicConfig(level=os.environ.get("WORKER_LOG_LEVEL", "INFO"), stream=sys.stderr)
    engine_url, instance, log = sys.argv[1:4]
    key = sys.argv[4] if len(sys.argv) > 4 else None
    client, functions = build(engine_url, instance, log, key)
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"{instance} started {os.getpid()}\n")
    apps = [(client, functions), build_extra(engine_url, key)]
    conn = inngest.connect.connect(apps, instance_id=instance)
    asyncio.run(conn.start())
    print(f"{instance} drained and stopped", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
