"""Functions publishing on their run's stream, end to end, on SQLite and Postgres.

The engine's API (``build_app``) and the app (``stepline.asgi.serve``) each listen on a
real socket (uvicorn in a thread); the app syncs itself, a run is started through the
client, the function publishes with ``step.publish`` and ``ctx.publish`` over HTTP, and
the stream is read back through ``GET /v1/runs/{id}/stream``. Checkpointing is off, so
every step is its own call and everything before it is replayed.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

import stepline
import stepline.asgi
from stepline.embedded import EmbeddedEngine
from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app
from tests._support.server_thread import ServerThread

pytestmark = [pytest.mark.slow]

FACES = ["sync", "async"]
TRIGGER = stepline.TriggerEvent(event="pub/go")


@dataclasses.dataclass
class Part:
    title: str


@dataclasses.dataclass
class Stack:
    client: stepline.Client
    engine_url: str

    def read(self, run_id: str, **query: Any) -> dict[str, Any]:
        answer = httpx.get(f"{self.engine_url}/v1/runs/{run_id}/stream", params=query, timeout=30)
        assert answer.status_code == 200, answer.text
        page: dict[str, Any] = answer.json()
        return page


class LoseFirstAnswer:
    """ASGI wrapper: the app's first answer to an execution call is lost (a 500 instead)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lost = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or self.lost:
            await self.app(scope, receive, send)
            return
        self.lost += 1

        async def drop(message: Any) -> None:
            pass

        await self.app(scope, receive, drop)
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b"connection reset"})


class ClosingClient:
    """ASGI wrapper: at lifespan shutdown, close the client's connections of this loop."""

    def __init__(self, app: Any, client: stepline.Client) -> None:
        self.app = app
        self.client = client

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def receive_then_close() -> Any:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await self.client.aclose()
            return message

        await self.app(scope, receive_then_close, send)


@contextlib.contextmanager
def stack(
    db: str,
    declare: Callable[[stepline.Client], list[stepline.Function]],
    wrap: Callable[[Any], Any] = lambda app: app,
    checkpointing: bool | stepline.Checkpointing = False,
) -> Iterator[Stack]:
    """An engine and an app, each on its own socket; the app synced to the engine."""
    settings = EngineSettings(
        database_url=db, retry_scale=0.0, retry_jitter=0.0, poll_interval=0.05
    )
    engine_server = ServerThread("engine").start(build_app(Engine(settings)))
    client = stepline.Client(
        "pub",
        is_production=False,
        environ={},
        api_base_url=engine_server.url,
        event_api_base_url=engine_server.url,
        checkpointing=checkpointing,
    )
    app_server: ServerThread | None = None
    try:
        app = stepline.asgi.serve(client, declare(client))
        app_server = ServerThread("app").start(ClosingClient(wrap(app), client))
        synced = httpx.put(f"{app_server.url}/api/inngest", timeout=30)
        assert synced.status_code == 200, synced.text
        yield Stack(client, engine_server.url)
    finally:
        if app_server is not None:
            app_server.stop()
        engine_server.stop()
        client.close()


def report_functions(faces: str) -> Callable[[stepline.Client], list[stepline.Function]]:
    """A report: durable and lightweight messages before, inside and between steps."""

    def declare(client: stepline.Client) -> list[stepline.Function]:
        if faces == "async":

            @client.function(id="report", trigger=TRIGGER)
            async def report(ctx: stepline.Context) -> int:
                ctx.publish("log", "starting")
                first = await ctx.step.publish("p1", topic="progress", data={"done": 1})
                for token in ("a", "b", "c"):
                    ctx.publish("tokens", token)
                await ctx.step.run("work", lambda: ctx.publish("tokens", "in-step"))
                await ctx.step.publish("p2", topic="progress", data=Part(title="done"))
                return first

            return [report]

        @client.function(id="report", trigger=TRIGGER)
        def sync_report(ctx: stepline.SyncContext) -> int:
            ctx.publish("log", "starting")
            first = ctx.step.publish("p1", topic="progress", data={"done": 1})
            for token in ("a", "b", "c"):
                ctx.publish("tokens", token)
            ctx.step.run("work", lambda: ctx.publish("tokens", "in-step"))
            ctx.step.publish("p2", topic="progress", data=Part(title="done"))
            return first

        return [sync_report]

    return declare


@pytest.mark.parametrize("faces", FACES)
def test_a_function_publishes_durable_and_lightweight_messages_once_each(
    db: str, faces: str
) -> None:
    with stack(db, report_functions(faces)) as env:
        handle = env.client.start_sync("report")
        assert handle.result(timeout=30) == 2  # "log" took seq 1
        page = env.read(handle.run_id, wait=5)
    # Four calls replayed the code before their step: still each message once, in order.
    assert [(m["seq"], m["topic"], m["data"]) for m in page["data"]] == [
        (1, "log", "starting"),
        (2, "progress", {"done": 1}),
        (3, "tokens", "a"),
        (4, "tokens", "b"),
        (5, "tokens", "c"),
        (6, "tokens", "in-step"),
        (7, "progress", {"title": "done"}),
    ]
    assert page["ended"] is True
    assert page["next"] == 7
    assert all(isinstance(m["at"], float) for m in page["data"])


def lost_answer_functions(faces: str) -> Callable[[stepline.Client], list[stepline.Function]]:
    def declare(client: stepline.Client) -> list[stepline.Function]:
        if faces == "async":

            @client.function(id="once", trigger=TRIGGER)
            async def once(ctx: stepline.Context) -> list[int]:
                seq = await ctx.step.publish("only", topic="progress", data="half way")
                after = await ctx.step.run("after", lambda: ctx.attempt)
                return [seq, after]

            return [once]

        @client.function(id="once", trigger=TRIGGER)
        def sync_once(ctx: stepline.SyncContext) -> list[int]:
            seq = ctx.step.publish("only", topic="progress", data="half way")
            after = ctx.step.run("after", lambda: ctx.attempt)
            return [seq, after]

        return [sync_once]

    return declare


@pytest.mark.parametrize("faces", FACES)
def test_a_durable_publish_run_again_after_a_lost_answer_is_stored_once(
    db: str, faces: str
) -> None:
    wrapper: list[LoseFirstAnswer] = []

    def wrap(app: Any) -> Any:
        wrapper.append(LoseFirstAnswer(app))
        return wrapper[0]

    with stack(db, lost_answer_functions(faces), wrap) as env:
        handle = env.client.start_sync("once")
        # the step published, its answer was lost, the engine called again: the step
        # published again under the same id, and got the same seq
        assert handle.result(timeout=30) == [1, 0]
        page = env.read(handle.run_id, wait=5)
    assert wrapper[0].lost == 1
    assert [(m["seq"], m["data"]) for m in page["data"]] == [(1, "half way")]
    assert page["ended"] is True


def test_a_function_served_to_an_engine_without_streams_fails_its_durable_step(
    db: str,
) -> None:
    """Inngest's servers have no stream routes: a 404 fails the step for good."""

    class NoStreams:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["path"].endswith("/stream"):
                await send({"type": "http.response.start", "status": 404, "headers": []})
                await send({"type": "http.response.body", "body": b"404 page not found"})
                return
            await self.app(scope, receive, send)

    settings = EngineSettings(
        database_url=db, retry_scale=0.0, retry_jitter=0.0, poll_interval=0.05
    )
    engine_server = ServerThread("engine").start(NoStreams(build_app(Engine(settings))))
    client = stepline.Client(
        "pub",
        is_production=False,
        environ={},
        api_base_url=engine_server.url,
        event_api_base_url=engine_server.url,
    )
    try:
        app = stepline.asgi.serve(client, lost_answer_functions("sync")(client))
        app_server = ServerThread("app").start(ClosingClient(app, client))
        try:
            assert httpx.put(f"{app_server.url}/api/inngest", timeout=30).status_code == 200
            handle = client.start_sync("once")
            with pytest.raises(stepline.RunFailedError) as failed:
                handle.result(timeout=30)
            assert "durable streams need the Stepline engine" in str(failed.value)
        finally:
            app_server.stop()
    finally:
        engine_server.stop()
        client.close()


@pytest.mark.parametrize("faces", FACES)
def test_publishing_through_the_embedded_engine(db: str, faces: str) -> None:
    """The client's engine traffic stays in process: publishing takes that route too."""
    client = stepline.Client("pub", is_production=False, environ={}, checkpointing=False)
    embedded = EmbeddedEngine(
        client,
        report_functions(faces)(client),
        database=db,
        poll_interval=0.05,
        retry_scale=0.0,
        retry_jitter=0.0,
    )
    try:
        handle = client.start_sync("report")
        assert handle.result(timeout=30) == 2
        messages = list(handle.stream())
    finally:
        embedded.stop()
        client.close()
    assert [(m.seq, m.topic, m.data) for m in messages] == [
        (1, "log", "starting"),
        (2, "progress", {"done": 1}),
        (3, "tokens", "a"),
        (4, "tokens", "b"),
        (5, "tokens", "c"),
        (6, "tokens", "in-step"),
        (7, "progress", {"title": "done"}),
    ]
