"""Engines in the test process: fast settings, started around a block, driven to a state.

``running`` starts an engine (a new one on a database, or one the test built) with
in-process apps; ``settle``, ``advance`` and ``quiet`` move a ``ManualClock`` only while
the engine has nothing in flight; ``finished`` and ``only_run`` wait for runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

import stepline
from stepline._comm import app_sync
from stepline._comm.handler import CommHandler
from stepline.engine import Engine, EngineSettings, ManualClock
from stepline.engine._http.api import build_app
from stepline.engine._model import Run
from stepline.engine._store import Tx, store_for
from tests._support.aio import arun
from tests._support.polling import await_until

#: Settings that keep tests short: retries at once, no jitter, a quick poll.
FAST: dict[str, Any] = {"retry_scale": 0.0, "retry_jitter": 0.0, "poll_interval": 0.05}


def fast_settings(database: Path | str, **overrides: Any) -> EngineSettings:
    """``EngineSettings`` on ``database`` (a SQLite path or a URL), ``FAST`` unless overridden."""
    return EngineSettings(database_url=str(database), **{**FAST, **overrides})


@contextlib.asynccontextmanager
async def running(
    engine: Engine | Path | str,
    *,
    clock: ManualClock | None = None,
    apps: Sequence[tuple[stepline.Client, Sequence[stepline.Function]]] = (),
    **settings: Any,
) -> AsyncIterator[Engine]:
    """An engine with in-process ``apps`` attached, started and stopped around use.

    ``engine``: one the test built (with a tracer provider, say), or a database for a new
    one with ``fast_settings(database, **settings)`` and ``clock``.
    """
    if not isinstance(engine, Engine):
        engine = Engine(fast_settings(engine, **settings), clock=clock)
    elif clock is not None or settings:
        raise TypeError("clock and settings are for a new engine, not one already built")
    await engine.start()
    try:
        for client, functions in apps:
            await engine.serve(client, functions)
        yield engine
    finally:
        await engine.stop()


async def settle(
    engine: Engine,
    clock: ManualClock,
    *,
    until: Callable[[], Awaitable[bool]],
    step: float = 1.0,
    limit: float = 40_000_000.0,
) -> None:
    """Let the engine work until ``until()``, moving the manual clock whenever it goes idle.

    Time only moves when nothing is due and nothing is in flight, so a call never
    sees its lease (or its concurrency slot) expire under it: to the next job's time, or
    by ``step`` when none is scheduled; past ``limit`` seconds it gives up.
    """
    start = clock.now()
    while not await until():
        await quiet(engine)
        if await until():
            return
        nxt = await engine.store.read(lambda tx: tx.queue.next_job_at())
        clock.set(nxt if nxt is not None and nxt > clock.now() else clock.now() + step)
        if clock.now() > start + limit:
            raise AssertionError("engine never settled")


async def advance(engine: Engine, clock: ManualClock, seconds: float) -> None:
    """Move the manual clock forward by ``seconds``, letting every job due on the way run."""
    target = clock.now() + seconds
    while True:
        await quiet(engine)
        nxt = await engine.store.read(lambda tx: tx.queue.next_job_at())
        if nxt is None or nxt > target:
            break
        clock.set(max(nxt, clock.now()))
        if nxt >= target:
            break
    clock.set(target)
    await quiet(engine)


async def quiet(engine: Engine, timeout: float = 10.0) -> None:
    """Wait until nothing is due on the engine's clock and nothing is in flight."""

    async def wait() -> None:
        streak = 0
        while streak < 2:  # twice in a row: a lease may be between commit and dispatch
            await asyncio.sleep(0.01)
            streak = streak + 1 if await engine.idle() else 0

    await asyncio.wait_for(wait(), timeout)


async def finished(engine: Engine, run_id: str, clock: ManualClock | None = None) -> Run:
    """The run once it has ended (advancing a manual clock as needed)."""
    if clock is None:
        return await engine.wait_for_run(run_id, timeout=20)

    async def ended() -> bool:
        return (await engine.get_run(run_id)).status.terminal

    await asyncio.wait_for(settle(engine, clock, until=ended), 20)
    return await engine.get_run(run_id)


async def only_run(engine: Engine, function_id: str, timeout: float = 10.0) -> str:
    """The id of the single run of a function, once it exists."""
    from stepline.engine._store import RunFilter

    async def find() -> str | None:
        runs = await engine.list_runs(RunFilter(function_id=function_id))
        if runs:
            assert len(runs) == 1, runs
            return runs[0].run_id
        return None

    return await await_until(
        find, timeout=timeout, interval=0.01, message=f"a run of {function_id}"
    )


async def register_http(
    engine: Engine, client: stepline.Client, functions: Sequence[stepline.Function], url: str
) -> None:
    """Register an app served over HTTP at ``url`` (what its sync would send)."""
    handler = CommHandler(client=client, functions=functions, framework="asgi")
    try:
        await engine.register(app_sync.register_payload(handler.endpoint, url))
    finally:
        handler.close()


def with_seeded_api(
    db: str,
    seed: Callable[[Tx], None],
    now: float,
    body: Callable[[httpx.AsyncClient], Awaitable[None]],
) -> None:
    """``body`` with a client of the REST app of an engine (no worker, a manual clock at
    ``now``) on ``db``, after ``seed`` wrote its rows in a transaction of their own."""

    async def scenario() -> None:
        settings = EngineSettings(database_url=db)
        store = store_for(settings)
        await store.open()
        try:
            await store.atomic(seed)
        finally:
            await store.close()
        engine = Engine(settings, clock=ManualClock(now))
        await engine.start(worker=False, sync=False)
        try:
            transport = httpx.ASGITransport(app=build_app(engine))
            base = "http://127.0.0.1"
            async with httpx.AsyncClient(transport=transport, base_url=base) as http:
                await body(http)
        finally:
            await engine.stop()

    arun(scenario())
