"""Publishing on a run's stream from a function: ``step.publish`` and ``ctx.publish``.

Driven through a real ``CommHandler`` with execution requests as the engine sends them;
the engine's stream route is a recording fake (a real HTTP server on localhost) that
stores messages as the contract says: one sequence number per message, a message id
stored once. The same behaviour on the real engine: ``tests/engine/test_publish_runs.py``.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
from typing import Any

import pydantic
import pytest

import stepline
from stepline._comm import CommHandler
from stepline._execution.publish import MAX_BATCH
from tests._support.polling import wait_until
from tests._support.stub_server import StubServer

from .comm_calls import CHECKPOINT, body_for, call, decoded, memo, ops, sha1

pytestmark = [pytest.mark.slow]

RUN = "01JRUN000000000000000000000"
KEY = "signkey-prod-123abc"


class FakeEngine:
    """``POST /v1/runs/{id}/stream`` as the engine answers it; everything else 404s."""

    def __init__(self, server: StubServer) -> None:
        self.server = server
        self.stored: list[dict[str, Any]] = []
        self.seq_of_id: dict[str, int] = {}
        self.fail_after_storing = 0  # answer 500 this many times, after storing
        self.status: int | None = None  # answer this instead of storing
        #: set: hold messages without an id until one with an id arrives (or for 1 s)
        self.hold_lightweight: threading.Event | None = None
        self.lock = threading.Lock()
        server.answer = self.answer

    @property
    def url(self) -> str:
        return self.server.url

    def posts(self) -> list[dict[str, Any]]:
        return [r for r in self.server.requests if r["method"] == "POST"]

    def answer(self, request: dict[str, Any]) -> tuple[Any, ...]:
        if request["method"] != "POST" or request["path"] != f"/v1/runs/{RUN}/stream":
            return 404, {"error": "not found"}
        if self.status is not None:
            return self.status, {"error": f"refused with {self.status}"}
        seqs = []
        messages = request["body"]["messages"]
        if self.hold_lightweight is not None:
            if any(m["id"] is not None for m in messages):
                self.hold_lightweight.set()
            else:  # a slow engine: a message sent after these must still come after them
                self.hold_lightweight.wait(1.0)
        with self.lock:
            for message in messages:
                ident = message["id"]
                if ident is not None and ident in self.seq_of_id:
                    seqs.append(self.seq_of_id[ident])
                    continue
                self.stored.append(message)
                seqs.append(len(self.stored))
                if ident is not None:
                    self.seq_of_id[ident] = len(self.stored)
            if self.fail_after_storing:
                self.fail_after_storing -= 1
                return 500, {"error": "stored, then the answer was lost"}
        return 200, {"data": {"seqs": seqs}}


@pytest.fixture
def engine(stub_server: StubServer) -> FakeEngine:
    return FakeEngine(stub_server)


def client_for(url: str, **settings: Any) -> stepline.Client:
    options: dict[str, Any] = {"is_production": False, "environ": {}, "api_base_url": url}
    options.update(settings)
    return stepline.Client("app", **options)


def serve(client: stepline.Client, fn: stepline.Function) -> CommHandler:
    return CommHandler(client=client, functions=[fn], framework="test")


TRIGGER = stepline.TriggerEvent(event="demo/go")


def durable_fn(client: stepline.Client, faces: str, seen: list[int]) -> stepline.Function:
    """Publishes durably, then runs a step: ``[publish "started", step "work"]``."""
    if faces == "async":

        @client.function(id="fn", trigger=TRIGGER)
        async def fn(ctx: stepline.Context) -> str:
            seen.append(await ctx.step.publish("started", topic="progress", data={"n": 1}))
            await ctx.step.run("work", lambda: "done")
            return "ok"

        return fn

    @client.function(id="fn", trigger=TRIGGER)
    def sync_fn(ctx: stepline.SyncContext) -> str:
        seen.append(ctx.step.publish("started", topic="progress", data={"n": 1}))
        ctx.step.run("work", lambda: "done")
        return "ok"

    return sync_fn


FACES = ["sync", "async"]


# --- durable: step.publish ------------------------------------------------------------


@pytest.mark.parametrize("faces", FACES)
def test_durable_publish_posts_once_with_the_step_id_and_memoizes_the_seq(
    engine: FakeEngine, faces: str
) -> None:
    seen: list[int] = []
    client = client_for(engine.url)
    handler = serve(client, durable_fn(client, faces, seen))
    [op] = ops(call(handler))
    assert op["op"] == "StepRun"
    assert op["id"] == sha1("started")
    assert op["data"] == {"seq": 1, "topic": "progress"}
    [post] = engine.posts()
    assert post["body"] == {
        "messages": [{"topic": "progress", "data": {"n": 1}, "id": sha1("started")}]
    }
    assert post["headers"]["content-type"] == "application/json"

    assert seen == []  # the step's result went to the engine first

    # Replays return the memo and publish nothing: wrapped as Stepline's engine sends
    # memos ({"data": ...}) and bare, as Inngest's servers may.
    steps = {sha1("started"): memo({"seq": 1, "topic": "progress"})}
    [op] = ops(call(handler, body=body_for(steps=steps)))
    assert op["id"] == sha1("work")
    bare = {sha1("started"): {"seq": 1, "topic": "progress"}, sha1("work"): memo("done")}
    done = call(handler, body=body_for(steps=bare))
    assert done.status == 200
    assert len(engine.posts()) == 1
    assert seen == [1, 1]


@pytest.mark.parametrize("faces", FACES)
def test_durable_publish_retried_after_publishing_is_stored_once(
    engine: FakeEngine, faces: str
) -> None:
    seen: list[int] = []
    client = client_for(engine.url)
    handler = serve(client, durable_fn(client, faces, seen))
    # The engine stores the message, then its answer is lost (500): the SDK posts again.
    engine.fail_after_storing = 1
    [op] = ops(call(handler))
    assert op["data"] == {"seq": 1, "topic": "progress"}
    # The call's answer is lost too: the engine calls again, the step posts again.
    [again] = ops(call(handler))
    assert again == op
    posts = engine.posts()
    assert len(posts) == 3
    assert {p["body"]["messages"][0]["id"] for p in posts} == {sha1("started")}
    assert len(engine.stored) == 1


@pytest.mark.parametrize("faces", FACES)
def test_durable_publish_under_checkpointing_goes_on_to_the_next_step(
    engine: FakeEngine, faces: str
) -> None:
    seen: list[int] = []
    client = client_for(engine.url)
    response = call(serve(client, durable_fn(client, faces, seen)), body=body_for(**CHECKPOINT))
    done = ops(response)
    assert [(o["op"], o["id"]) for o in done] == [
        ("StepRun", sha1("started")),
        ("StepRun", sha1("work")),
        ("RunComplete", "0737c22d3bfae812339732d14d8c7dbd6dc4e09c"),
    ]
    assert done[0]["data"] == {"seq": 1, "topic": "progress"}
    assert len(engine.posts()) == 1


def test_durable_publish_in_a_parallel_group_is_planned_then_run_when_targeted(
    engine: FakeEngine,
) -> None:
    client = client_for(engine.url)

    @client.function(id="fn", trigger=TRIGGER)
    async def fn(ctx: stepline.Context) -> Any:
        return await ctx.step.parallel(
            [
                lambda: ctx.step.publish("p-a", topic="parts", data="A"),
                lambda: ctx.step.publish("p-b", topic="parts", data="B"),
            ]
        )

    handler = serve(client, fn)
    planned = ops(call(handler))
    assert [(o["op"], o["id"]) for o in planned] == [
        ("StepPlanned", sha1("p-a")),
        ("StepPlanned", sha1("p-b")),
    ]
    assert engine.posts() == []
    [op] = ops(call(handler, step_id=sha1("p-b")))
    assert (op["op"], op["data"]) == ("StepRun", {"seq": 1, "topic": "parts"})
    [post] = engine.posts()
    assert post["body"]["messages"] == [{"topic": "parts", "data": "B", "id": sha1("p-b")}]


@pytest.mark.parametrize("faces", FACES)
def test_durable_publish_without_stream_routes_fails_the_step_clearly(
    engine: FakeEngine, faces: str
) -> None:
    engine.status = 404  # Inngest's servers have no /v1/runs/{id}/stream
    client = client_for(engine.url)
    [op] = ops(call(serve(client, durable_fn(client, faces, []))))
    assert op["op"] == "StepFailed"
    assert op["error"]["name"] == "StreamPublishError"
    assert "durable streams need the Stepline engine" in op["error"]["message"]


def test_durable_publish_to_an_ended_run_fails_the_step_for_good(engine: FakeEngine) -> None:
    engine.status = 409
    client = client_for(engine.url)
    response = call(serve(client, durable_fn(client, "sync", [])))
    [op] = ops(response)
    assert op["op"] == "StepFailed"
    assert "409" in op["error"]["message"]
    assert response.headers["x-inngest-no-retry"] == "true"


@pytest.mark.parametrize("faces", FACES)
def test_durable_publish_over_the_size_limit_fails_the_step(engine: FakeEngine, faces: str) -> None:
    client = client_for(engine.url, max_stream_message_bytes=5)
    [op] = ops(call(serve(client, durable_fn(client, faces, []))))
    assert op["op"] == "StepFailed"
    assert op["error"]["name"] == "StreamMessageTooLargeError"
    assert "max_stream_message_bytes" in op["error"]["message"]
    assert engine.posts() == []


def test_durable_publish_sends_the_signing_key_bearer(engine: FakeEngine) -> None:
    client = client_for(engine.url, signing_key=KEY)
    ops(call(serve(client, durable_fn(client, "sync", [])), body=body_for()))
    [post] = engine.posts()
    assert post["headers"]["authorization"].startswith("Bearer ")


def test_durable_publish_bad_topic_is_a_config_error(engine: FakeEngine) -> None:
    client = client_for(engine.url)

    @client.function(id="fn", trigger=TRIGGER)
    def fn(ctx: stepline.SyncContext) -> int:
        return ctx.step.publish("s", topic="no spaces", data=1)

    response = call(serve(client, fn))
    assert response.status == 500
    assert decoded(response)["code"] == "config_invalid"
    assert "invalid stream topic" in decoded(response)["message"]
    assert engine.posts() == []


# --- lightweight: ctx.publish -------------------------------------------------------------


def tokens_fn(client: stepline.Client, faces: str, count: int) -> stepline.Function:
    """Publishes ``count`` tokens, then returns; each token is its index."""
    if faces == "async":

        @client.function(id="fn", trigger=TRIGGER)
        async def fn(ctx: stepline.Context) -> int:
            for n in range(count):
                ctx.publish("tokens", n)
            return count

        return fn

    @client.function(id="fn", trigger=TRIGGER)
    def sync_fn(ctx: stepline.SyncContext) -> int:
        for n in range(count):
            ctx.publish("tokens", n)
        return count

    return sync_fn


@pytest.mark.parametrize("faces", FACES)
def test_lightweight_messages_keep_order_are_batched_and_flushed_before_the_answer(
    engine: FakeEngine, faces: str
) -> None:
    client = client_for(engine.url)
    response = call(serve(client, tokens_fn(client, faces, 1000)))
    assert response.status == 200
    # Stored before the call answered, in order, each once, with no id.
    assert [m["data"] for m in engine.stored] == list(range(1000))
    assert {m["topic"] for m in engine.stored} == {"tokens"}
    assert {m["id"] for m in engine.stored} == {None}
    posts = engine.posts()
    assert 2 <= len(posts) < 1000
    assert all(len(p["body"]["messages"]) <= MAX_BATCH for p in posts)


@pytest.mark.parametrize("faces", FACES)
def test_lightweight_messages_are_skipped_while_replaying(engine: FakeEngine, faces: str) -> None:
    client = client_for(engine.url)
    if faces == "async":

        @client.function(id="fn", trigger=TRIGGER)
        async def fn(ctx: stepline.Context) -> str:
            ctx.publish("progress", "before")
            await ctx.step.run("a", lambda: ctx.publish("progress", "inside a"))
            ctx.publish("progress", "after")
            await ctx.step.run("b", lambda: "b")
            return "ok"

    else:

        @client.function(id="fn", trigger=TRIGGER)
        def fn(ctx: stepline.SyncContext) -> str:
            ctx.publish("progress", "before")
            ctx.step.run("a", lambda: ctx.publish("progress", "inside a"))
            ctx.publish("progress", "after")
            ctx.step.run("b", lambda: "b")
            return "ok"

    handler = serve(client, fn)
    ops(call(handler))
    ops(call(handler, body=body_for(steps={sha1("a"): memo(None)})))
    steps = {sha1("a"): memo(None), sha1("b"): memo("b")}
    assert call(handler, body=body_for(steps=steps)).status == 200
    assert [m["data"] for m in engine.stored] == ["before", "inside a", "after"]


def test_lightweight_messages_published_before_a_durable_one_are_stored_before_it(
    engine: FakeEngine,
) -> None:
    client = client_for(engine.url)

    @client.function(id="fn", trigger=TRIGGER)
    async def fn(ctx: stepline.Context) -> int:
        for n in range(50):
            ctx.publish("tokens", n)
        return await ctx.step.publish("summary", topic="done", data="all 50")

    engine.hold_lightweight = threading.Event()
    [op] = ops(call(serve(client, fn)))
    assert op["data"] == {"seq": 51, "topic": "done"}
    assert [m["data"] for m in engine.stored] == [*range(50), "all 50"]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("faces", FACES)
def test_a_dead_engine_does_not_fail_the_function_and_is_logged_once(
    faces: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = client_for(f"http://127.0.0.1:{closed_port()}")
    with caplog.at_level(logging.WARNING, logger="stepline"):
        response = call(serve(client, tokens_fn(client, faces, 1200)))
    assert response.status == 200
    assert decoded(response) == 1200
    dropped = [r for r in caplog.records if "were dropped" in r.getMessage()]
    assert len(dropped) == 1
    assert RUN in dropped[0].getMessage()


@pytest.mark.parametrize("status", [404, 409])
def test_an_engine_refusing_lightweight_messages_is_one_clear_log_line(
    engine: FakeEngine, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    engine.status = status
    client = client_for(engine.url)
    with caplog.at_level(logging.WARNING, logger="stepline"):
        response = call(serve(client, tokens_fn(client, "async", 3)))
    assert response.status == 200
    [line] = [r.getMessage() for r in caplog.records if "were dropped" in r.getMessage()]
    assert str(status) in line
    if status == 404:
        assert "durable streams need the Stepline engine" in line


@pytest.mark.parametrize("faces", FACES)
def test_a_lightweight_message_over_the_limit_raises_at_the_call(
    engine: FakeEngine, faces: str
) -> None:
    client = client_for(engine.url, max_stream_message_bytes=10)
    caught: list[BaseException] = []

    def publish(ctx: Any) -> None:
        ctx.publish("small", "ok")
        try:
            ctx.publish("big", "x" * 20)
        except stepline.StreamMessageTooLargeError as exc:
            caught.append(exc)

    if faces == "async":

        @client.function(id="fn", trigger=TRIGGER)
        async def fn(ctx: stepline.Context) -> None:
            publish(ctx)

    else:

        @client.function(id="fn", trigger=TRIGGER)
        def fn(ctx: stepline.SyncContext) -> None:
            publish(ctx)

    assert call(serve(client, fn)).status == 200
    [error] = caught
    assert isinstance(error, stepline.SteplineError)
    assert "22 bytes" in str(error)
    assert "limit of 10" in str(error)
    assert [m["data"] for m in engine.stored] == ["ok"]


def test_an_uncaught_oversized_lightweight_message_fails_the_function_without_retry(
    engine: FakeEngine,
) -> None:
    client = client_for(engine.url, max_stream_message_bytes=10)

    @client.function(id="fn", trigger=TRIGGER)
    def fn(ctx: stepline.SyncContext) -> None:
        ctx.publish("big", "x" * 20)

    response = call(serve(client, fn))
    assert response.status == 500
    assert decoded(response)["code"] == "stream_message_too_large"
    assert response.headers["x-inngest-no-retry"] == "true"


@pytest.mark.parametrize("topic", ["", "a b", "x" * 129, "é", 7])
def test_a_bad_topic_is_a_config_error(engine: FakeEngine, topic: Any) -> None:
    client = client_for(engine.url)

    @client.function(id="fn", trigger=TRIGGER)
    def fn(ctx: stepline.SyncContext) -> None:
        ctx.publish(topic, 1)

    response = call(serve(client, fn))
    assert decoded(response)["code"] == "config_invalid"
    assert "invalid stream topic" in decoded(response)["message"]


def test_every_allowed_topic_character_is_accepted(engine: FakeEngine) -> None:
    client = client_for(engine.url)
    topic = "AZaz09_.:/-" + "x" * 117

    @client.function(id="fn", trigger=TRIGGER)
    def fn(ctx: stepline.SyncContext) -> None:
        ctx.publish(topic, 1)

    assert call(serve(client, fn)).status == 200
    assert [m["topic"] for m in engine.stored] == [topic]


# --- values ----------------------------------------------------------------------------


class Progress(pydantic.BaseModel):
    done: int
    total: int


@dataclasses.dataclass
class Part:
    title: str


def test_pydantic_models_and_dataclasses_are_published_as_json(engine: FakeEngine) -> None:
    client = client_for(engine.url)

    @client.function(id="fn", trigger=TRIGGER)
    async def fn(ctx: stepline.Context) -> None:
        ctx.publish("progress", Progress(done=3, total=10))
        await ctx.step.publish("part", topic="parts", data=Part(title="intro"))

    ops(call(serve(client, fn)))
    assert [m["data"] for m in engine.stored] == [{"done": 3, "total": 10}, {"title": "intro"}]


def test_an_unserializable_value_is_refused_at_the_call(engine: FakeEngine) -> None:
    client = client_for(engine.url)

    @client.function(id="fn", trigger=TRIGGER)
    def fn(ctx: stepline.SyncContext) -> None:
        ctx.publish("progress", object())

    response = call(serve(client, fn))
    assert decoded(response)["code"] == "output_unserializable"
    assert engine.posts() == []


# --- settings ------------------------------------------------------------------------------


def test_max_stream_message_bytes_defaults_to_one_mebibyte_and_reads_the_environment() -> None:
    assert stepline.Client("a", environ={}).settings.max_stream_message_bytes == 1024 * 1024
    environ = {"STEPLINE_MAX_STREAM_MESSAGE_BYTES": "2048"}
    assert stepline.Client("a", environ=environ).settings.max_stream_message_bytes == 2048
    with pytest.raises(stepline.ConfigError, match="max_stream_message_bytes"):
        stepline.Client("a", environ={}, max_stream_message_bytes=0)


def test_the_sender_thread_ends_with_the_call(engine: FakeEngine) -> None:
    client = client_for(engine.url)
    assert call(serve(client, tokens_fn(client, "sync", 10))).status == 200
    wait_until(
        lambda: not any(t.name == "stepline-publish" for t in threading.enumerate()),
        message="the publish thread to end",
    )


@pytest.mark.parametrize("faces", FACES)
def test_a_message_published_after_the_call_answered_is_dropped_and_logged(
    engine: FakeEngine, faces: str, caplog: pytest.LogCaptureFixture
) -> None:
    # the call publishes nothing itself (its publisher closes without draining anything),
    # and keeps its context: a publish once the call has answered goes nowhere
    client = client_for(engine.url)
    kept: list[Any] = []
    if faces == "async":

        @client.function(id="fn", trigger=TRIGGER)
        async def fn(ctx: stepline.Context) -> int:
            kept.append(ctx)
            return 1

    else:

        @client.function(id="fn", trigger=TRIGGER)
        def fn(ctx: stepline.SyncContext) -> int:  # type: ignore[misc]
            kept.append(ctx)
            return 1

    assert call(serve(client, fn)).status == 200
    with caplog.at_level(logging.WARNING, logger="stepline"):
        kept[0].publish("tokens", "late")
    [line] = [r.getMessage() for r in caplog.records if "were dropped" in r.getMessage()]
    assert "published after the call had answered" in line
    assert not any(t.name == "stepline-publish" for t in threading.enumerate())
    assert engine.posts() == []
