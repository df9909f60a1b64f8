"""An app written with the official ``inngest`` package, for the end-to-end engine tests.

Each function mirrors a case of inngest-py's own suite (PROTOCOL.md 11.3) and records
what it saw in a shared ``Record``: how often it was called, which steps really ran and
when, and the values the test asserts on. The app and the test run in one process, so
the record is plain memory (guarded by a lock: sync functions run on the SDK's thread pool).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import functools
import threading
import time
from collections.abc import Callable
from typing import Any

import inngest

APP_ID = "official-py"
EXTRA_APP_ID = "official-py-extra"
#: Step outputs this large (x4) push the state past the 4 MiB inline limit.
BIG = 1536 * 1024


def event(name: str) -> str:
    """The event name a scenario's function is triggered by."""
    return f"{APP_ID}/{name}"


def fid(local: str) -> str:
    """The composite id the SDK registers for a local function id."""
    return f"{APP_ID}-{local}"


class MyError(Exception):
    """A user error with a recognisable name."""


@dataclasses.dataclass
class Record:
    """What the functions saw; written from the app's threads, read by the tests."""

    calls: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    ran: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    times: dict[str, list[float]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(list)
    )
    values: dict[str, Any] = dataclasses.field(default_factory=dict)
    order: dict[str, list[str]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(list)
    )
    flags: dict[str, threading.Event] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(threading.Event)
    )
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def call(self, key: str) -> None:
        """A function was called (one SDK request)."""
        with self.lock:
            self.calls[key] += 1
            self.times[key].append(time.monotonic())

    def step(self, key: str) -> None:
        """A step's body really ran (not replayed from its memo)."""
        with self.lock:
            self.ran[key] += 1
            self.times[key].append(time.monotonic())

    def note(self, scenario: str, item: str) -> None:
        with self.lock:
            self.order[scenario].append(item)


def build(engine_url: str) -> tuple[inngest.Inngest, list[inngest.Function[Any]], Record]:
    """The client, every function and the record of the main test app."""
    client = inngest.Inngest(
        app_id=APP_ID,
        is_production=False,
        api_base_url=engine_url,
        event_api_base_url=engine_url,
    )
    rec = Record()
    functions: list[inngest.Function[Any]] = []

    def fn(**options: Any) -> Callable[[Callable[..., Any]], inngest.Function[Any]]:
        options.setdefault("retries", 0)
        decorate = client.create_function(**options)

        def register(handler: Callable[..., Any]) -> inngest.Function[Any]:
            function = decorate(handler)
            functions.append(function)
            return function

        return register

    # -- basics ---------------------------------------------------------------------------

    @fn(fn_id="two-steps", trigger=inngest.TriggerEvent(event=event("two-steps")))
    async def two_steps(ctx: inngest.Context) -> dict[str, int]:
        rec.call("two-steps")

        async def a() -> int:
            rec.step("two-steps.a")
            return int(ctx.event.data["n"]) + 1

        first = await ctx.step.run("a", a)

        def b() -> int:  # a sync step callback inside an async function
            rec.step("two-steps.b")
            return first * 2

        second = await ctx.step.run("b", b)
        return {"a": first, "b": second}

    @fn(fn_id="no-steps", trigger=inngest.TriggerEvent(event=event("no-steps")))
    def no_steps(ctx: inngest.ContextSync) -> dict[str, Any]:
        rec.call("no-steps")
        return {"data": ctx.event.data, "attempt": ctx.attempt, "run_id": ctx.run_id}

    # -- time -----------------------------------------------------------------------------

    @fn(fn_id="sleep", trigger=inngest.TriggerEvent(event=event("sleep")))
    async def sleep(ctx: inngest.Context) -> str:
        rec.call("sleep")
        await ctx.step.sleep("nap", dt.timedelta(seconds=2))
        return "rested"

    @fn(fn_id="sleep-until", trigger=inngest.TriggerEvent(event=event("sleep-until")))
    def sleep_until(ctx: inngest.ContextSync) -> str:
        rec.call("sleep-until")
        # from the event, not now(): a replay must ask for the same wake-up time
        until = dt.datetime.fromisoformat(ctx.event.data["until"])
        ctx.step.sleep_until("until", until)
        rec.values["sleep-until.woke"] = dt.datetime.now(dt.timezone.utc)
        return "awake"

    # -- waiting for events ---------------------------------------------------------------

    @fn(fn_id="wait-fulfill", trigger=inngest.TriggerEvent(event=event("wait-fulfill")))
    async def wait_fulfill(ctx: inngest.Context) -> Any:
        rec.call("wait-fulfill")
        got = await ctx.step.wait_for_event(
            "reply",
            event=event("wait-fulfill.reply"),
            if_exp="event.data.order == async.data.order",
            timeout=dt.timedelta(seconds=30),
        )
        return None if got is None else {"name": got.name, "data": got.data, "id": got.id}

    @fn(fn_id="wait-timeout", trigger=inngest.TriggerEvent(event=event("wait-timeout")))
    async def wait_timeout(ctx: inngest.Context) -> Any:
        rec.call("wait-timeout")
        got = await ctx.step.wait_for_event(
            "reply", event=event("wait-timeout.reply"), timeout=dt.timedelta(seconds=1)
        )
        return {"got": None if got is None else got.data}

    # -- cancellation ---------------------------------------------------------------------

    @fn(
        fn_id="cancel-sleeping",
        trigger=inngest.TriggerEvent(event=event("cancel-sleeping")),
        cancel=[
            inngest.Cancel(
                event=event("cancel-sleeping.stop"), if_exp="event.data.id == async.data.id"
            )
        ],
    )
    async def cancel_sleeping(ctx: inngest.Context) -> str:
        rec.call("cancel-sleeping")
        await ctx.step.sleep("long", dt.timedelta(seconds=30))

        async def after() -> None:
            rec.step("cancel-sleeping.after")

        await ctx.step.run("after", after)
        return "not cancelled"

    @fn(
        fn_id="cancel-inflight",
        trigger=inngest.TriggerEvent(event=event("cancel-inflight")),
        cancel=[
            inngest.Cancel(
                event=event("cancel-inflight.stop"), if_exp="event.data.id == async.data.id"
            )
        ],
    )
    async def cancel_inflight(ctx: inngest.Context) -> str:
        rec.call("cancel-inflight")
        rec.flags["cancel-inflight.started"].set()
        await asyncio.sleep(1.5)  # the cancel event arrives while this call is in flight

        async def late() -> str:
            rec.step("cancel-inflight.late")
            return "late"

        try:
            return await ctx.step.run("late", late)
        finally:
            rec.flags["cancel-inflight.done"].set()

    # -- parallelism ----------------------------------------------------------------------

    @fn(fn_id="parallel/child", trigger=inngest.TriggerEvent(event="never"))
    def parallel_child(ctx: inngest.ContextSync) -> str:
        ctx.step.sleep("sleep", dt.timedelta(seconds=1))
        return "done"

    @fn(fn_id="parallel", trigger=inngest.TriggerEvent(event=event("parallel")))
    async def parallel(ctx: inngest.Context) -> list[Any]:
        rec.call("parallel")

        async def one_a() -> int:
            rec.step("parallel.1a")
            return 1

        async def one_b() -> int:
            rec.step("parallel.1b")
            return 2

        output = await ctx.group.parallel(
            (
                lambda: ctx.step.invoke("invoke", function=parallel_child),
                lambda: ctx.step.run("1a", one_a),
                lambda: ctx.step.run("1b", one_b),
                lambda: ctx.step.send_event("send", events=inngest.Event(name="noop")),
            )
        )

        async def after() -> None:
            rec.step("parallel.after")

        await ctx.step.run("after", after)
        return list(output)

    @fn(fn_id="race", trigger=inngest.TriggerEvent(event=event("race")))
    async def race(ctx: inngest.Context) -> None:
        rec.call("race")

        def make(name: str, delay: float) -> Any:
            async def body() -> None:
                await asyncio.sleep(delay)
                rec.note("race", name)

            return body

        async def fast_group() -> None:
            await ctx.step.run("a.1", make("a.1", 0))
            await ctx.step.run("a.2", make("a.2", 0))

        async def slow_group() -> None:
            await ctx.step.run("b.1", make("b.1", 1.0))
            await ctx.step.run("b.2", make("b.2", 1.0))

        await ctx.group.parallel((fast_group, slow_group), parallel_mode=inngest.ParallelMode.RACE)

    @fn(fn_id="parallel-groups", trigger=inngest.TriggerEvent(event=event("parallel-groups")))
    def parallel_groups(ctx: inngest.ContextSync) -> list[Any]:
        rec.call("parallel-groups")

        def run(step_id: str) -> str:
            def body() -> str:
                rec.step(f"parallel-groups.{step_id}")
                return step_id

            return ctx.step.run(step_id, body)

        output = ctx.group.parallel(
            (
                lambda: [run("1a"), run("1b")],
                lambda: [run("2a"), run("2b"), run("2c")],
                lambda: run("3"),
            )
        )
        run("after")
        return list(output)

    @fn(fn_id="unexpected-step", trigger=inngest.TriggerEvent(event=event("unexpected-step")))
    async def unexpected_step(ctx: inngest.Context) -> None:
        rec.call("unexpected-step")

        def body(step_id: str) -> Any:
            async def run() -> None:
                rec.step(f"unexpected-step.{step_id}")

            return run

        # non-deterministic on purpose: a step appears only when another is targeted
        if ctx.step._target_hashed_id is not None:
            await ctx.step.run("unexpected", body("unexpected"))
        await ctx.group.parallel(
            (
                lambda: ctx.step.run("parallel_1", body("parallel_1")),
                lambda: ctx.step.run("parallel_2", body("parallel_2")),
            )
        )

    @fn(fn_id="vanishing-step", trigger=inngest.TriggerEvent(event=event("vanishing-step")))
    async def vanishing_step(ctx: inngest.Context) -> None:
        first = rec.calls["vanishing-step"] == 0
        rec.call("vanishing-step")

        def body(step_id: str) -> Any:
            async def run() -> str:
                rec.step(f"vanishing-step.{step_id}")
                return step_id

            return run

        # non-deterministic on purpose: 1c is planned on the first call only, so the call
        # that targets it finds "after" instead
        ids = ("1a", "1b", "1c") if first else ("1a", "1b")
        await ctx.group.parallel(
            tuple(lambda step_id=step_id: ctx.step.run(step_id, body(step_id)) for step_id in ids)
        )
        await ctx.step.run("after", body("after"))

    # -- invoke ---------------------------------------------------------------------------

    @fn(fn_id="invoke/child", trigger=inngest.TriggerEvent(event="never"))
    async def invoke_child(ctx: inngest.Context) -> dict[str, Any]:
        rec.call("invoke/child")
        return {"doubled": int(ctx.event.data["n"]) * 2, "event": ctx.event.name}

    @fn(fn_id="invoke-by-object", trigger=inngest.TriggerEvent(event=event("invoke-by-object")))
    def invoke_by_object(ctx: inngest.ContextSync) -> Any:
        rec.call("invoke-by-object")
        return ctx.step.invoke("invoke", function=invoke_child, data={"n": 21})

    @fn(fn_id="invoke-by-id", trigger=inngest.TriggerEvent(event=event("invoke-by-id")))
    async def invoke_by_id(ctx: inngest.Context) -> Any:
        rec.call("invoke-by-id")
        return await ctx.step.invoke_by_id("invoke", function_id="invoke/child", data={"n": 4})

    @fn(fn_id="invoke-failure/child", trigger=inngest.TriggerEvent(event="never"))
    def invoke_failure_child(ctx: inngest.ContextSync) -> None:
        raise MyError("oh no")

    @fn(fn_id="invoke-failure", trigger=inngest.TriggerEvent(event=event("invoke-failure")))
    async def invoke_failure(ctx: inngest.Context) -> None:
        try:
            await ctx.step.invoke("invoke", function=invoke_failure_child)
        except inngest.StepError as err:
            rec.values["invoke-failure.error"] = err
            raise

    @fn(fn_id="invoke-timeout/child", trigger=inngest.TriggerEvent(event="never"))
    async def invoke_timeout_child(ctx: inngest.Context) -> None:
        await ctx.step.sleep("sleep", dt.timedelta(seconds=60))

    @fn(fn_id="invoke-timeout", trigger=inngest.TriggerEvent(event=event("invoke-timeout")))
    async def invoke_timeout(ctx: inngest.Context) -> None:
        try:
            await ctx.step.invoke(
                "invoke", function=invoke_timeout_child, timeout=dt.timedelta(seconds=1)
            )
        except inngest.StepError as err:
            rec.values["invoke-timeout.error"] = err
            raise

    # -- errors and retries ---------------------------------------------------------------

    @fn(
        fn_id="non-retriable",
        retries=1,
        trigger=inngest.TriggerEvent(event=event("non-retriable")),
    )
    async def non_retriable(ctx: inngest.Context) -> None:
        rec.call("non-retriable")
        rec.values.setdefault("non-retriable.attempts", []).append(ctx.attempt)

        async def step_1() -> None:
            raise inngest.NonRetriableError("foo", quiet=True)

        await ctx.step.run("step_1", step_1)

    @fn(fn_id="flaky", retries=3, trigger=inngest.TriggerEvent(event=event("flaky")))
    def flaky(ctx: inngest.ContextSync) -> dict[str, int]:
        rec.values.setdefault("flaky.attempts", []).append(ctx.attempt)
        if ctx.attempt < 2:
            raise MyError(f"attempt {ctx.attempt} fails")
        return {"succeeded_on": ctx.attempt, "max": 3}

    @fn(fn_id="retry-after", retries=2, trigger=inngest.TriggerEvent(event=event("retry-after")))
    async def retry_after(ctx: inngest.Context) -> str:
        rec.values.setdefault("retry-after.attempts", []).append(ctx.attempt)
        times = rec.times
        if not times["retry-after.fn1.raise"]:
            rec.step("retry-after.fn1.raise")
            raise inngest.RetryAfterError("fn-1", 1000, quiet=True)
        if not times["retry-after.fn1.retry"]:
            rec.step("retry-after.fn1.retry")

        async def step_fn() -> None:
            if not times["retry-after.step.raise"]:
                rec.step("retry-after.step.raise")
                raise inngest.RetryAfterError("step", dt.timedelta(seconds=1), quiet=True)
            if not times["retry-after.step.retry"]:
                rec.step("retry-after.step.retry")

        await ctx.step.run("step_1", step_fn)
        if not times["retry-after.fn2.raise"]:
            rec.step("retry-after.fn2.raise")
            at = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)
            raise inngest.RetryAfterError("fn-2", at, quiet=True)
        if not times["retry-after.fn2.retry"]:
            rec.step("retry-after.fn2.retry")
        return "done"

    @fn(fn_id="step-error", retries=2, trigger=inngest.TriggerEvent(event=event("step-error")))
    async def step_error(ctx: inngest.Context) -> dict[str, Any]:
        rec.call("step-error")
        rec.values.setdefault("step-error.attempts", []).append(ctx.attempt)

        def boom() -> None:
            rec.step("step-error.boom")
            raise ValueError("boom")

        try:
            await ctx.step.run("boom", boom)
        except inngest.StepError as err:
            return {"caught": err.name, "message": err.message, "has_stack": bool(err.stack)}
        return {"caught": None}

    @fn(
        fn_id="step-error-uncaught",
        trigger=inngest.TriggerEvent(event=event("step-error-uncaught")),
    )
    def step_error_uncaught(ctx: inngest.ContextSync) -> None:
        def boom() -> None:
            raise ValueError("left alone")

        ctx.step.run("boom", boom)

    @fn(fn_id="change-step-error", trigger=inngest.TriggerEvent(event=event("change-step-error")))
    async def change_step_error(ctx: inngest.Context) -> None:
        def foo() -> None:
            raise ValueError("foo")

        try:
            await ctx.step.run("foo", foo)
        except inngest.StepError:
            raise MyError("I am new") from None

    def on_failure_handler(ctx: inngest.ContextSync) -> str:
        rec.call("on-failure-handler")
        rec.values["on-failure.event"] = ctx.event
        rec.values["on-failure.events"] = ctx.events
        rec.values["on-failure.attempt"] = ctx.attempt
        rec.values["on-failure.run_id"] = ctx.run_id
        return "handled"

    @fn(
        fn_id="on-failure",
        on_failure=on_failure_handler,
        trigger=inngest.TriggerEvent(event=event("on-failure")),
    )
    def on_failure(ctx: inngest.ContextSync) -> None:
        rec.values["on-failure.failed_run_id"] = ctx.run_id
        raise MyError("intentional failure")

    @fn(fn_id="unserializable", trigger=inngest.TriggerEvent(event=event("unserializable")))
    async def unserializable(ctx: inngest.Context) -> None:
        class Foo:
            pass

        async def step_1() -> Foo:
            return Foo()

        await ctx.step.run("step_1", step_1)

    # -- events ---------------------------------------------------------------------------

    @fn(fn_id="sender", trigger=inngest.TriggerEvent(event=event("sender")))
    async def sender(ctx: inngest.Context) -> list[str]:
        return await ctx.step.send_event(
            "send", inngest.Event(name=event("sent"), data={"from_run": ctx.run_id})
        )

    @fn(fn_id="receiver", trigger=inngest.TriggerEvent(event=event("sent")))
    def receiver(ctx: inngest.ContextSync) -> dict[str, Any]:
        return {"data": ctx.event.data, "id": ctx.event.id}

    @fn(fn_id="echo", trigger=inngest.TriggerEvent(event=event("echo")))
    async def echo(ctx: inngest.Context) -> Any:
        rec.call("echo")
        return ctx.event.data

    @fn(fn_id="idempotent", trigger=inngest.TriggerEvent(event=event("idempotent")))
    async def idempotent(ctx: inngest.Context) -> Any:
        rec.call("idempotent")
        return ctx.event.data

    # -- large state ----------------------------------------------------------------------

    @fn(fn_id="large-state", trigger=inngest.TriggerEvent(event=event("large-state")))
    async def large_state(ctx: inngest.Context) -> list[int]:
        rec.call("large-state")

        def make(step_id: str, fill: str) -> str:
            rec.step(f"large-state.{step_id}")
            return fill * BIG

        sizes = []
        for i in range(4):
            step_id = f"step_{i}"
            out = await ctx.step.run(step_id, functools.partial(make, step_id, "abcd"[i]))
            assert out == "abcd"[i] * BIG, "the memo came back intact"
            sizes.append(len(out))
        return sizes

    return client, functions, rec


def build_extra(engine_url: str) -> tuple[inngest.Inngest, list[inngest.Function[Any]]]:
    """A second, one-function app, to watch a first sync report ``modified``."""
    client = inngest.Inngest(
        app_id=EXTRA_APP_ID,
        is_production=False,
        api_base_url=engine_url,
        event_api_base_url=engine_url,
    )

    @client.create_function(fn_id="hello", trigger=inngest.TriggerEvent(event="extra/hello"))
    async def hello(ctx: inngest.Context) -> str:
        return "hello"

    return client, [hello]
