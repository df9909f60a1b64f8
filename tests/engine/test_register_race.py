"""An app's functions trigger on every event this node accepts once the app shows as synced.

A sync commits the app, then the engine rebuilds the registry it matches events against.
The rebuild must not be a second read after the commit: an event accepted in between (a
client that saw the app in ``GET /v1/apps`` and sent at once, as the dashboard's
screenshot tour does) would be matched against the old registry and start nothing. These
tests widen that gap on purpose, by holding the registering transaction's answer back,
and send the event inside it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from stepline.engine import Engine, EngineSettings, ManualClock
from tests._support.stub_server import StubServer

from .test_versions import FN, body, serving

pytestmark = [pytest.mark.slow]

T = TypeVar("T")
HOLD = 0.3  # seconds the registering transaction's answer is held back


@pytest.fixture
def stub() -> Iterator[StubServer]:
    found = serving("v1")
    yield found
    found.stop()


def hold_after_commit(engine: Engine) -> None:
    """From now on, hold back the answer of each of the engine's write transactions by
    ``HOLD`` seconds, after its commit."""
    inner = engine.store.atomic

    async def atomic(work: Callable[[Any], Any], *, small: bool = False) -> Any:
        result = await inner(work, small=small)
        await asyncio.sleep(HOLD)
        return result

    engine.store.atomic = atomic  # type: ignore[method-assign]


async def shown(engine: Engine) -> None:
    """Wait until the app is listed (committed), as a client polling ``/v1/apps`` would."""
    for _ in range(200):
        if await engine.list_apps():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the app never showed as synced")


async def during_a_sync(
    tmp_path: Any, stub: StubServer, act: Callable[[Engine], Awaitable[T]]
) -> tuple[Engine, T]:
    """Register app ``shop``, and ``act`` once it shows as synced but before the sync
    has answered; returns the (stopped) engine and what ``act`` returned."""
    settings = EngineSettings(database_url=str(tmp_path / "engine.db"), poll_interval=0.05)
    engine = Engine(settings, clock=ManualClock(1_800_000_000.0))
    await engine.start()
    try:
        hold_after_commit(engine)
        registering = asyncio.create_task(engine.register(body(stub, None)))
        await shown(engine)
        assert not registering.done()  # the sync is still settling
        done = await act(engine)
        await registering
        return engine, done
    finally:
        await engine.stop()


def test_an_event_sent_once_the_app_shows_starts_its_run(tmp_path: Any, stub: StubServer) -> None:
    async def send(engine: Engine) -> int:
        [event_id] = await engine.send({"name": "shop/checkout", "data": {}})
        return len(await engine.event_runs(event_id))  # its runs start in its transaction

    _, started = asyncio.run(during_a_sync(tmp_path, stub, send))
    assert started == 1


def test_a_direct_start_once_the_app_shows_finds_the_function(
    tmp_path: Any, stub: StubServer
) -> None:
    async def start(engine: Engine) -> str:
        run_id, created = await engine.start_function(FN, {})
        assert created
        return run_id

    _, run_id = asyncio.run(during_a_sync(tmp_path, stub, start))
    assert run_id
