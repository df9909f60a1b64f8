"""Engine fixtures: an engine on a temp SQLite file, with a manual or real clock."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

import stepline
from stepline.engine import Engine, EngineSettings, ManualClock
from stepline.engine._model import Run
from tests._support.polling import await_until

from .servers import postgres_schema

T = TypeVar("T")


def arun(coro: Awaitable[T]) -> T:
    """Run a coroutine to completion (pytest-asyncio is not a dependency)."""

    async def wrapper() -> T:
        return await coro

    return asyncio.run(wrapper())


def dev_client(app_id: str = "t", **kwargs: Any) -> stepline.Client:
    """A dev-mode client that never reaches the network on its own."""
    return stepline.Client(app_id=app_id, is_production=False, **kwargs)


@contextlib.asynccontextmanager
async def running(
    path: Path | str,
    *,
    clock: ManualClock | None = None,
    apps: Sequence[tuple[stepline.Client, Sequence[stepline.Function]]] = (),
    **settings: Any,
) -> AsyncIterator[Engine]:
    """An engine on ``path`` with in-process apps attached, started and stopped around use."""
    options: dict[str, Any] = {"retry_scale": 0.0, "retry_jitter": 0.0, "poll_interval": 0.05}
    options.update(settings)
    engine = Engine(EngineSettings(database_url=str(path), **options), clock=clock)
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
    """Let the engine work, moving the manual clock forward whenever it goes idle.

    Time only moves when nothing is due and nothing is in flight, so a call never
    sees its lease (or its concurrency slot) expire under it.
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


#: The stores every engine test runs on (the ids of the parametrized fixtures).
STORES = ("sqlite", "postgres")


@contextlib.contextmanager
def database(store: str, directory: Path) -> Iterator[str]:
    """A database URL on ``store``: a SQLite file in ``directory``, or a fresh Postgres schema."""
    if store == "sqlite":
        yield str(directory / "engine.db")
    else:
        with postgres_schema() as url:
            yield url


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL for one engine: a SQLite file, or a fresh Postgres schema."""
    if request.param == "sqlite":
        yield str(tmp_path / "engine.db")
    else:
        with postgres_schema() as url:
            yield url


@pytest.fixture(scope="module", params=STORES)
def module_store(request: pytest.FixtureRequest) -> str:
    """The store a module's long-lived engines use; the module's tests run once per store."""
    return str(request.param)


@pytest.fixture(scope="module")
def module_db(module_store: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database URL for one module-scoped engine on ``module_store``."""
    with database(module_store, tmp_path_factory.mktemp(module_store)) as url:
        yield url
