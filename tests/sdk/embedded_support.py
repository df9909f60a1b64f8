"""Test plumbing: an engine under uvicorn, an event loop on a thread, one face for sync/async.

``Face`` lets a test be written once against the client's run-management methods and
run with the blocking methods (``start_sync``...) or the async ones (``start``...),
which then run on a long-lived event loop in another thread, as in an async web app.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar

import stepline
from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app
from tests._support.clients import closing_client
from tests._support.polling import wait_until
from tests._support.server_thread import ServerThread

T = TypeVar("T")


def poll(check: Callable[[], T], timeout: float = 15.0, interval: float = 0.02) -> T:
    """Call ``check`` until it returns something truthy (bounded)."""
    found: T = wait_until(
        lambda: check() or None, timeout=timeout, interval=interval, message="a truthy result"
    )
    return found


class LoopThread:
    """An event loop running in a daemon thread; ``run`` blocks on a coroutine there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[T], timeout: float = 50.0) -> T:
        async def wrapper() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Blocking:
    """Calls ``target``'s coroutine methods on a ``LoopThread`` (other attributes pass)."""

    def __init__(self, target: Any, loop: LoopThread) -> None:
        self.target = target
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.target, name)
        if inspect.iscoroutinefunction(attribute):
            return lambda *args, **kwargs: self._loop.run(attribute(*args, **kwargs))
        return attribute


class Face:
    """The client's run management through its sync or its async methods, called alike."""

    def __init__(self, client: stepline.Client, kind: str, loop: LoopThread | None) -> None:
        self.client = client
        self.kind = kind
        self._loop = loop

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if self.kind == "sync":
            return getattr(self.client, f"{name}_sync")(*args, **kwargs)
        assert self._loop is not None
        return self._loop.run(getattr(self.client, name)(*args, **kwargs))

    def _handle(self, handle: Any) -> Any:
        wanted = stepline.SyncRunHandle if self.kind == "sync" else stepline.RunHandle
        assert type(handle) is wanted, handle
        return handle if self.kind == "sync" else Blocking(handle, self._loop)  # type: ignore[arg-type]

    def start(self, *args: Any, **kwargs: Any) -> Any:
        return self._handle(self._call("start", *args, **kwargs))

    def get_run(self, run_id: str) -> Any:
        if self.kind == "sync":
            return self._handle(self.client.get_run_sync(run_id))
        return self._handle(self.client.get_run(run_id))

    def list_runs(self, **kwargs: Any) -> Any:
        return self._call("list_runs", **kwargs)

    def rerun(self, run_id: str) -> Any:
        return self._handle(self._call("rerun", run_id))

    def send(self, event: stepline.Event) -> list[str]:
        result: list[str] = self._call("send", event)
        return result


@contextlib.contextmanager
def faces(client: stepline.Client) -> Iterator[Callable[[str], Face]]:
    """A factory of faces over ``client``; the async face's loop closes afterwards."""
    loop = LoopThread()
    try:
        yield lambda kind: Face(client, kind, loop)
    finally:
        with contextlib.suppress(Exception):
            loop.run(client.aclose(), timeout=10)
        loop.close()


class EngineServer:
    """A real engine under uvicorn on loopback, serving some apps in-process.

    Apps given to ``serve`` before ``start`` are attached (``engine.serve``) once the
    engine's lifespan has started it, on uvicorn's own loop.
    """

    def __init__(self, database: str, **settings: Any) -> None:
        self.engine = Engine(EngineSettings(database_url=database, **settings))
        self._apps: list[tuple[stepline.Client, Sequence[stepline.Function]]] = []
        self._server = ServerThread("engine", lifespan="on", graceful=2)
        self.url = self._server.url

    def _wrap(self, app: Any) -> Any:
        engine, apps = self.engine, self._apps

        async def wrapped(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "lifespan":
                await app(scope, receive, send)
                return

            async def sending(message: Any) -> None:
                if message["type"] == "lifespan.startup.complete":
                    for client, functions in apps:
                        await engine.serve(client, functions)
                await send(message)

            await app(scope, receive, sending)

        return wrapped

    def serve(self, client: stepline.Client, functions: Sequence[stepline.Function]) -> None:
        """Attach an app (before ``start``)."""
        self._apps.append((client, functions))

    def start(self) -> EngineServer:
        self._server.start(self._wrap(build_app(self.engine)), timeout=20)
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> EngineServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ClosingEngineServer(EngineServer):
    """An ``EngineServer`` whose serving closes ``client``'s connection pool as it stops (the
    SDK's pool lives on the server's loop: a stream's publishes, a set of attributes)."""

    client: stepline.Client

    def _wrap(self, app: Any) -> Any:
        return closing_client(super()._wrap(app), self.client)
