"""The official ``inngest`` package's app through the engine, over real HTTP.

Behind a proxy: the app sits behind a proxy built on ``http.server`` that answers HTTP/1.0
with the app's ``Transfer-Encoding: chunked`` over a plain body; runs complete. Keep-alive:
the app is served by uvicorn with a short keep-alive and sleeps past it between steps while
the engine's loop is busy, so calls meet pooled connections the server has closed;
with ``retries=0`` every run still completes. Driver-level cases: ``test_driver_http``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import http.server
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import fastapi
import httpx
import inngest
import pydantic.warnings
import pytest

from stepline.engine import Engine, EngineSettings
from stepline.engine._driver import AiohttpDriver, Driver
from stepline.engine._http.api import build_app
from stepline.engine._wire.response import RawResponse
from tests._support.polling import wait_until
from tests._support.server_thread import ServerThread

from .wire_servers import Http10Proxy, KeepAliveServer, chunked

pytestmark = [pytest.mark.slow]

with warnings.catch_warnings():
    # as in test_official_py: inngest 0.5.19 declares a class-based pydantic Config
    warnings.filterwarnings(
        "ignore",
        message="Support for class-based `config` is deprecated",
        category=pydantic.warnings.PydanticDeprecatedSince20,
    )
    import inngest.fast_api

#: uvicorn's keep-alive here, in seconds (its default is 5).
KEEP_ALIVE = 0.2


@dataclasses.dataclass
class Stack:
    """An engine over HTTP and the official SDK's app, the engine reaching it at ``origin``."""

    engine_url: str
    client: inngest.Inngest
    http: httpx.Client

    def run_of(self, event_id: str) -> str:
        def found() -> str | None:
            runs = self.http.get(f"/v1/events/{event_id}/runs").json()["data"]
            return str(runs[0]["run_id"]) if runs else None

        return str(wait_until(found, message=f"a run of event {event_id}"))

    def finished(self, run_id: str, timeout: float = 30) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:
            run: dict[str, Any] = self.http.get(f"/v1/runs/{run_id}").json()["data"]
            return run if run["status"] in ("Completed", "Failed", "Cancelled") else None

        return dict(wait_until(ended, timeout=timeout, message=f"run {run_id} to end"))


@contextlib.contextmanager
def stack(
    tmp_path: Path,
    build: Callable[[inngest.Inngest], list[inngest.Function[Any]]],
    *,
    keep_alive: float = 5,
    proxied: bool = False,
    driver: Driver | None = None,
) -> Iterator[Stack]:
    engine_server = ServerThread("stepline-engine")
    app_server = KeepAliveServer("official-app", keep_alive)
    settings = EngineSettings(
        database_url=str(tmp_path / "engine.db"),
        port=engine_server.port,
        retry_scale=0.001,
        retry_jitter=0.0,
        poll_interval=0.05,
    )
    client = inngest.Inngest(
        app_id="driver-http",
        is_production=False,
        api_base_url=engine_server.url,
        event_api_base_url=engine_server.url,
    )
    with contextlib.ExitStack() as stop:
        stop.callback(engine_server.stop)
        stop.callback(app_server.stop)
        origin = app_server.url
        if proxied:
            handler = type("Proxy", (Http10Proxy,), {"upstream": app_server.url})
            proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
            threading.Thread(target=proxy.serve_forever, daemon=True).start()
            stop.callback(proxy.server_close)
            stop.callback(proxy.shutdown)
            origin = f"http://127.0.0.1:{proxy.server_address[1]}"
        app = fastapi.FastAPI()
        inngest.fast_api.serve(app, client, build(client), serve_origin=origin)
        engine_server.start(build_app(Engine(settings, http=driver)))
        app_server.start(chunked(app) if proxied else app)
        # the SDK registers the URL the engine calls: the proxy's, when there is one
        synced = httpx.put(f"{app_server.url}/api/inngest", timeout=30)
        assert synced.status_code == 200, synced.text
        rest = stop.enter_context(httpx.Client(base_url=engine_server.url, timeout=30))
        yield Stack(engine_server.url, client, rest)


def _two_steps(
    name: str, pause: dt.timedelta | None = None
) -> Callable[[inngest.Inngest], list[inngest.Function[Any]]]:
    def build(client: inngest.Inngest) -> list[inngest.Function[Any]]:
        @client.create_function(
            fn_id=name, trigger=inngest.TriggerEvent(event=f"t/{name}"), retries=0
        )
        async def two_steps(ctx: inngest.Context) -> dict[str, int]:
            def a() -> int:
                return int(str(ctx.event.data["n"])) + 1

            first = await ctx.step.run("a", a)
            if pause is not None:
                await ctx.step.sleep("nap", pause)

            def b() -> int:
                return first * 2

            second = await ctx.step.run("b", b)
            return {"a": first, "b": second}

        return [two_steps]

    return build


@pytest.mark.timeout(120)
def test_official_app_behind_an_http10_proxy_completes(tmp_path: Path) -> None:
    # the proxy answers every call HTTP/1.0 with the app's chunked header over a plain
    # body; with retries=0 one unread answer fails the run
    with stack(tmp_path, _two_steps("proxied"), proxied=True) as s:
        run_ids = [
            s.run_of(s.client.send_sync(inngest.Event(name="t/proxied", data={"n": n}))[0])
            for n in range(3)
        ]
        for n, run_id in enumerate(run_ids):
            run = s.finished(run_id)
            assert (run["status"], run["output"]) == (
                "Completed",
                {"a": n + 1, "b": 2 * (n + 1)},
            ), run


class BusyEngineLoop:
    """The engine's default driver, its event loop busy for ``pause`` s before each call.

    As under load: uvicorn's keep-alive closes the idle connection meanwhile, and the
    loop has not yet read the close when the call takes the connection from the pool.
    """

    def __init__(self, pause: float) -> None:
        self.inner = AiohttpDriver()
        self.pause = pause
        self.calls = 0

    async def request(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> RawResponse:
        self.calls += 1
        time.sleep(self.pause)  # blocks the loop, as a burst of CPU work would
        return await self.inner.request(method, url, body, headers, timeout)

    async def close(self) -> None:
        await self.inner.close()


RUNS = 10


@pytest.mark.timeout(240)
def test_official_app_sleeping_past_uvicorns_keep_alive_completes(tmp_path: Path) -> None:
    # uvicorn closes idle connections after 0.2 s; every run sleeps 1 s between its
    # steps and the engine's loop is busy 0.3 s before each call, so every call after
    # the first meets a connection the server has closed; with retries=0 each such call
    # that failed would fail its run
    driver = BusyEngineLoop(KEEP_ALIVE * 1.5)
    napper = _two_steps("napper", dt.timedelta(seconds=1))
    with stack(tmp_path, napper, keep_alive=KEEP_ALIVE, driver=driver) as s:
        events = [inngest.Event(name="t/napper", data={"n": n}) for n in range(RUNS)]
        run_ids = [s.run_of(event_id) for event_id in s.client.send_sync(events)]
        for n, run_id in enumerate(run_ids):
            run = s.finished(run_id, timeout=120)
            assert (run["status"], run["output"]) == (
                "Completed",
                {"a": n + 1, "b": 2 * (n + 1)},
            ), run
    assert driver.calls >= 3 * RUNS, driver.calls
