"""``RunHandle.stream`` and ``SyncRunHandle.stream`` against real engines, on both stores.

A function publishes while a reader follows it through each face of the client; the
iterator ends when the run ends. Then a real engine process is SIGKILLed mid-stream and
restarted on its port: the reader, connection refused meanwhile, carries on from the last
message it got, every message exactly once, in order.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

import stepline
from stepline._status import RunStatus
from stepline._transport import effects
from stepline.embedded import EmbeddedEngine
from stepline.engine._store import Store
from tests._support.polling import wait_until
from tests._support.processes import APPS, clean_env, free_port, spawn, wait_until_up
from tests.engine.test_store_contract import run_record, with_store

ENGINE = APPS / "engine_server.py"
RUN = "01RUNCLIENTSTREAM000000001"
CSRF = {"x-stepline-csrf": "1"}
BACKOFF = 0.05  # between a publisher's attempts while the engine is down


def read_all(handle: stepline.SyncRunHandle, face: str, **options: object) -> list:
    """Every message of ``handle.stream(**options)`` through ``face``, until it ends."""
    if face == "sync":
        return list(handle.stream(**options))  # type: ignore[arg-type]

    async def read() -> list:
        connection = handle.connection
        async_handle = stepline.RunHandle(connection, handle.run_id)
        try:
            return [m async for m in async_handle.stream(**options)]  # type: ignore[arg-type]
        finally:
            await connection.async_transport.aclose()

    return asyncio.run(read())


class Follower(threading.Thread):
    """Reads a stream through one face on a thread of its own, keeping what came."""

    def __init__(self, handle: stepline.SyncRunHandle, face: str, **options: object) -> None:
        super().__init__(name=f"stream-{face}", daemon=True)
        self.handle, self.face, self.options = handle, face, options
        self.messages: list[stepline.StreamMessage] = []
        self.error: BaseException | None = None
        self.ended = False

    def run(self) -> None:
        try:
            if self.face == "sync":
                for message in self.handle.stream(**self.options):  # type: ignore[arg-type]
                    self.messages.append(message)
            else:
                asyncio.run(self._read_async())
            self.ended = True
        except BaseException as exc:  # handed to the test
            self.error = exc

    async def _read_async(self) -> None:
        connection = self.handle.connection
        handle = stepline.RunHandle(connection, self.handle.run_id)
        try:
            async for message in handle.stream(**self.options):  # type: ignore[arg-type]
                self.messages.append(message)
        finally:
            await connection.async_transport.aclose()

    def seqs(self) -> list[int]:
        return [m.seq for m in self.messages]


# -- a real run, followed live -------------------------------------------------------------


@pytest.fixture
def app(db: str) -> Iterator[tuple[stepline.Client, stepline.Function]]:
    client = stepline.Client("streamer", is_production=False, environ={})

    @client.function(id="steps", trigger=stepline.TriggerEvent(event="s/steps"))
    async def steps(ctx: stepline.Context) -> str:
        await ctx.step.publish("one", topic="progress", data={"n": 1})
        ctx.publish("tokens", "a")
        await ctx.step.wait_for_event("go", event="s/go", timeout=dt.timedelta(hours=1))
        ctx.publish("tokens", "b")
        await ctx.step.publish("two", topic="progress", data={"n": 2})
        return "done"

    engine = EmbeddedEngine(client, [steps], database=db, poll_interval=0.05)
    yield client, steps
    engine.stop()


@pytest.mark.parametrize("face", ["sync", "async"])
def test_follow_a_run_live_until_it_ends(
    app: tuple[stepline.Client, stepline.Function], face: str
) -> None:
    client, steps = app
    handle = client.start_sync(steps)
    follower = Follower(handle, face)
    follower.start()
    wait_until(lambda: len(follower.messages) >= 2 or follower.error, message="two messages")
    assert follower.error is None
    assert not follower.ended  # the run waits: so does the iterator
    wait_until(
        lambda: any(s.name == "go" and s.status == "Waiting" for s in handle.steps()),
        message="the run to wait for s/go",
    )
    client.send_sync(stepline.Event(name="s/go"))
    follower.join(30)
    assert follower.error is None
    assert follower.ended  # the run ended: so did the iterator
    assert follower.seqs() == [1, 2, 3, 4]
    by_topic = sorted((m.topic, str(m.data)) for m in follower.messages)
    assert by_topic == [
        ("progress", "{'n': 1}"),
        ("progress", "{'n': 2}"),
        ("tokens", "a"),
        ("tokens", "b"),
    ]
    assert all(m.at.tzinfo is not None for m in follower.messages)
    # read again after the end: from a seq, and of one topic
    assert [m.seq for m in read_all(handle, face, after=2)] == [3, 4]
    assert [m.data for m in read_all(handle, face, topic="tokens")] == ["a", "b"]
    assert read_all(handle, face, after=4) == []


@pytest.mark.parametrize("face", ["sync", "async"])
def test_an_unknown_run_is_run_not_found(
    app: tuple[stepline.Client, stepline.Function], face: str
) -> None:
    client, _ = app
    with pytest.raises(stepline.RunNotFoundError):
        read_all(client.get_run_sync("01NOSUCHRUN"), face)


# -- across an engine's SIGKILL ------------------------------------------------------------


def watch_refusals(client: stepline.Client) -> threading.Event:
    """Set once a request of ``client`` (either face) finds no engine (status 0)."""
    refused = threading.Event()
    sync_perform = client.connection.sync_transport.perform
    async_perform = client.connection.async_transport.perform

    def perform(effect: object) -> object:
        answer = sync_perform(effect)
        if isinstance(answer, effects.HttpResponse) and answer.status == 0:
            refused.set()
        return answer

    async def aperform(effect: object) -> object:
        answer = await async_perform(effect)
        if isinstance(answer, effects.HttpResponse) and answer.status == 0:
            refused.set()
        return answer

    client.connection.sync_transport.perform = perform  # type: ignore[method-assign,assignment]
    client.connection.async_transport.perform = aperform  # type: ignore[method-assign,assignment]
    return refused


def publish(base: str, n: int) -> int:
    """Publish durable message ``n`` until the engine answers; returns its seq."""
    body = {"messages": [{"topic": "work", "data": {"n": n}, "id": f"step-{n}"}]}

    def answered() -> int | None:
        try:
            answer = httpx.post(f"{base}/v1/runs/{RUN}/stream", json=body, timeout=10)
        except httpx.HTTPError:
            return None
        assert answer.status_code == 200, answer.text
        seq: int = answer.json()["data"]["seqs"][0]
        return seq

    return wait_until(
        answered, timeout=60, interval=BACKOFF, message=f"message {n} to be published"
    )


def seed(db: str) -> None:
    async def body(store: Store) -> None:
        record = run_record(RUN, status=RunStatus.RUNNING, created_at=time.time())
        await store.atomic(lambda tx: tx.insert_run(record))

    with_store(db, body)


@pytest.mark.process
@pytest.mark.timeout(180)
@pytest.mark.parametrize("face", ["sync", "async"])
def test_the_reader_resumes_across_an_engine_sigkill(db: str, tmp_path: Path, face: str) -> None:
    seed(db)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "engine.log"

    def start() -> subprocess.Popen[bytes]:
        proc = spawn(
            [sys.executable, str(ENGINE), str(port), db], log=log, env=clean_env(), append=True
        )
        try:
            wait_until_up(f"{base}/health", proc, log=log)
        except BaseException:
            kill(proc)
            raise
        return proc

    def kill(proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    client = stepline.Client(
        "reader", is_production=False, environ={}, api_base_url=base, request_timeout=5
    )
    refused = watch_refusals(client)
    proc = start()
    follower = Follower(client.get_run_sync(RUN), face)
    follower.start()
    total = 40
    seqs: list[int] = []

    def got(count: int) -> Callable[[], bool]:
        return lambda: len(follower.messages) >= count or follower.error is not None

    try:
        for n in range(total):
            seqs.append(publish(base, n))
            if n == 10:
                wait_until(got(8), message="the reader to read")
                kill(proc)  # the reader holds a long-poll: it breaks off mid-stream
                # the engine stays down until the reader has been refused at least once
                wait_until(refused.is_set, message="the reader to find the engine down")
                proc = start()
            if n == 25:
                kill(proc)
                proc = start()
        wait_until(got(total), timeout=60, message="every message")
        cancel = httpx.post(f"{base}/v1/runs/{RUN}/cancel", headers=CSRF, timeout=10)
        assert cancel.status_code == 200, cancel.text
        follower.join(60)
    finally:
        kill(proc)
        client.close()
    assert follower.error is None, follower.error
    assert follower.ended
    assert seqs == list(range(1, total + 1))
    assert follower.seqs() == seqs  # each once, in order
    assert [m.data["n"] for m in follower.messages] == list(range(total))
