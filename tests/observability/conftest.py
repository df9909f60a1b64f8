"""Fixtures for the observability tests: an in-memory span exporter, engines, servers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import stepline
from stepline.engine import Engine, EngineSettings, ManualClock
from tests._support.polling import await_until, wait_until
from tests._support.server_thread import ServerThread

T = TypeVar("T")


def arun(coro: Awaitable[T]) -> T:
    """Run a coroutine to completion."""

    async def wrapper() -> T:
        return await coro

    return asyncio.run(wrapper())


class Otel:
    """A tracer provider whose spans end up in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        found = list(self.exporter.get_finished_spans())
        return [s for s in found if name is None or s.name == name]

    def wait_for(self, name: str, count: int = 1, timeout: float = 20.0) -> list[ReadableSpan]:
        def missing() -> str:
            return f"{count} {name!r} span(s) to end; have {sorted(s.name for s in self.spans())}"

        wait_until(lambda: len(self.spans(name)) >= count, timeout=timeout, message=missing)
        return self.spans(name)


@pytest.fixture
def otel() -> Iterator[Otel]:
    telemetry = Otel()
    yield telemetry
    telemetry.provider.shutdown()


def settings(path: Path, **overrides: Any) -> EngineSettings:
    """Fast engine settings on a temp SQLite file."""
    options: dict[str, Any] = {"retry_scale": 0.0, "retry_jitter": 0.0, "poll_interval": 0.05}
    options.update(overrides)
    return EngineSettings(database_url=str(path / "engine.db"), **options)


def dev_client(app_id: str = "obs", **kwargs: Any) -> stepline.Client:
    """A dev-mode client that never reaches the network on its own."""
    return stepline.Client(app_id=app_id, is_production=False, **kwargs)


@contextlib.asynccontextmanager
async def running(
    engine: Engine, apps: Sequence[tuple[stepline.Client, Sequence[stepline.Function]]] = ()
) -> AsyncIterator[Engine]:
    """Start ``engine`` with in-process apps, stop it afterwards."""
    await engine.start()
    try:
        for client, functions in apps:
            await engine.serve(client, functions)
        yield engine
    finally:
        await engine.stop()


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    """Wait (in real time) until ``check()`` is true."""
    await await_until(check, timeout=timeout)


async def settle(engine: Engine, clock: ManualClock, done: Callable[[], Awaitable[bool]]) -> None:
    """Run the engine to ``done()``, moving the manual clock whenever it goes idle."""

    async def settled() -> bool:
        if await done():
            return True
        await asyncio.sleep(0.01)
        if await engine.idle() and not await done():
            nxt = await engine.store.read(lambda tx: tx.queue.next_job_at())
            if nxt is not None and nxt > clock.now():
                clock.set(nxt)
        return False

    await await_until(settled, timeout=30, interval=0, message="the engine to settle")


def closing(client: stepline.Client) -> Callable[[Any], Any]:
    """A Starlette lifespan closing the client's connections on the server's own loop."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        await client.aclose()

    return lifespan


@contextlib.contextmanager
def served(
    app: Any, name: str, *, lifespan: Literal["auto", "on", "off"] = "auto"
) -> Iterator[str]:
    """Serve ``app`` over HTTP for the block; yields its base URL."""
    server = ServerThread(name, lifespan=lifespan)
    server.start(app)
    try:
        yield server.url
    finally:
        server.stop()
