"""CommHandler on async and sync servers: threads, loops, streaming, isolation.

pytest-asyncio is not installed: async drivers run under ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import hashlib
import json
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

import stepline
from stepline._comm import CommHandler, CommRequest, CommResponse
from stepline._comm import handler as handler_module
from stepline._protocol import signing
from tests._support.polling import wait_until
from tests._support.stub_server import StubServer

KEY_A = "signkey-prod-aaaa"
KEY_B = "signkey-prod-bbbb"
URL = "http://app.test/api/inngest"
EVENT = {"name": "demo/go", "data": {"n": 1}, "id": "01JEVENT", "ts": 1_700_000_000_000}


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


# --- helpers ------------------------------------------------------------------------


def make_client(app_id: str = "app", **settings: Any) -> stepline.Client:
    options: dict[str, Any] = {"is_production": False, "environ": {}}
    options.update(settings)
    return stepline.Client(app_id, **options)


def body_for(
    *, steps: dict[str, Any] | None = None, data: dict[str, Any] | None = None, **ctx: Any
) -> dict[str, Any]:
    event = {**EVENT, "data": data if data is not None else EVENT["data"]}
    context: dict[str, Any] = {
        "attempt": 0,
        "max_attempts": 3,
        "disable_immediate_execution": False,
        "run_id": "01JRUN",
        "step_id": "step",
        "stack": {"stack": list(steps or {}), "current": len(steps or {})},
    }
    context.update(ctx)
    return {
        "event": event,
        "events": [event],
        "steps": steps or {},
        "ctx": context,
        "use_api": False,
        "version": 2,
    }


def post(
    fn_id: str,
    body: dict[str, Any] | None = None,
    *,
    app_id: str = "app",
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> CommRequest:
    url = f"{URL}?fnId={app_id}-{fn_id}&stepId=step"
    data = raw if raw is not None else json.dumps(body or body_for()).encode()
    return CommRequest.build(method="POST", url=url, headers=headers or {}, body=data)


def decoded(response: CommResponse) -> Any:
    return json.loads(response.body)


def close(handler: CommHandler) -> None:
    """Release the handler's pool and private loop."""
    handler.close()


@pytest.fixture
def handlers() -> Iterator[list[CommHandler]]:
    """Handlers created by a test, closed after it."""
    made: list[CommHandler] = []
    yield made
    for each in made:
        close(each)


def make_handler(
    made: list[CommHandler],
    client: stepline.Client,
    functions: list[stepline.Function],
    **options: Any,
) -> CommHandler:
    handler = CommHandler(client=client, functions=functions, framework="test", **options)
    made.append(handler)
    return handler


def thread_recorder(
    client: stepline.Client, seen: list[threading.Thread]
) -> tuple[stepline.Function, stepline.Function]:
    @client.function(id="sync", trigger=stepline.TriggerEvent(event="demo/go"))
    def sync_fn(ctx: stepline.SyncContext) -> str:
        seen.append(threading.current_thread())
        return "sync-done"

    @client.function(id="async", trigger=stepline.TriggerEvent(event="demo/go"))
    async def async_fn(ctx: stepline.Context) -> str:
        seen.append(threading.current_thread())
        await asyncio.sleep(0)
        return "async-done"

    return sync_fn, async_fn


# --- where functions run ------------------------------------------------------------


def test_async_server_runs_sync_function_on_a_worker_thread(
    handlers: list[CommHandler],
) -> None:
    seen: list[threading.Thread] = []
    client = make_client()
    handler = make_handler(handlers, client, list(thread_recorder(client, seen)))
    response = asyncio.run(handler.handle(post("sync")))
    assert response.status == 200
    assert decoded(response) == "sync-done"
    [thread] = seen
    assert thread is not threading.main_thread()
    assert thread.name.startswith("stepline")


def test_async_server_runs_async_function_on_its_own_loop(handlers: list[CommHandler]) -> None:
    seen: list[threading.Thread] = []
    client = make_client()
    handler = make_handler(handlers, client, list(thread_recorder(client, seen)))
    response = asyncio.run(handler.handle(post("async")))
    assert response.status == 200
    assert decoded(response) == "async-done"
    assert seen == [threading.main_thread()]


@pytest.mark.parametrize("where", ["handler", "client"])
def test_async_server_runs_sync_function_inline_with_zero_workers(
    handlers: list[CommHandler], where: str
) -> None:
    seen: list[threading.Thread] = []
    if where == "client":
        client = make_client(thread_pool_max_workers=0)
        options: dict[str, Any] = {}
    else:
        client = make_client()
        options = {"thread_pool_max_workers": 0}
    handler = make_handler(handlers, client, list(thread_recorder(client, seen)), **options)
    response = asyncio.run(handler.handle(post("sync")))
    assert response.status == 200
    assert seen == [threading.main_thread()]
    assert handler._pool is None  # no pool was ever started


def test_worker_thread_sees_the_callers_context_variables(handlers: list[CommHandler]) -> None:
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")
    client = make_client()

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> list[str]:
        return [marker.get(), threading.current_thread().name]

    handler = make_handler(handlers, client, [fn])

    async def serve_one() -> CommResponse:
        marker.set("from-request")
        return await handler.handle(post("fn"))

    value, thread_name = decoded(asyncio.run(serve_one()))
    assert value == "from-request"
    assert thread_name != threading.main_thread().name


def test_handle_pooled_runs_a_sync_function_s_whole_call_on_one_pool_thread(
    handlers: list[CommHandler], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the embedded engine's calls: the SDK's parsing and answer on the pool too, one hop
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")
    parsed_on: list[threading.Thread] = []
    parse = handler_module.ExecutionRequest.parse

    def recorded(body: bytes) -> Any:
        parsed_on.append(threading.current_thread())
        return parse(body)

    monkeypatch.setattr(handler_module.ExecutionRequest, "parse", staticmethod(recorded))
    seen: list[threading.Thread] = []
    client = make_client()
    sync_fn, async_fn = thread_recorder(client, seen)

    @client.function(id="marked", trigger=stepline.TriggerEvent(event="demo/go"))
    def marked(ctx: stepline.SyncContext) -> str:
        return marker.get()

    handler = make_handler(handlers, client, [sync_fn, async_fn, marked])

    async def serve() -> list[Any]:
        marker.set("from-request")
        answers = [await handler.handle_pooled(post(f)) for f in ("sync", "async", "marked")]
        return [decoded(a) for a in answers]

    assert asyncio.run(serve()) == ["sync-done", "async-done", "from-request"]
    sync_thread, async_thread = seen
    assert sync_thread is not threading.main_thread()
    assert parsed_on[0] is sync_thread  # parsed where the function ran, not on the loop
    assert (async_thread, parsed_on[1]) == (threading.main_thread(), threading.main_thread())


def test_sync_server_runs_async_function_on_the_private_loop(
    handlers: list[CommHandler],
) -> None:
    client = make_client()
    seen: list[str] = []
    calls: list[str] = []

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    async def fn(ctx: stepline.Context) -> dict[str, Any]:
        seen.append(threading.current_thread().name)
        asyncio.get_running_loop()  # really inside a running loop

        async def first() -> int:
            calls.append("first")
            await asyncio.sleep(0.01)
            return ctx.event.data["n"] + 1

        a = await ctx.step.run("first", first)
        b = await ctx.step.run("second", lambda: calls.append("second") or a * 10)
        return {"a": a, "b": b}

    handler = make_handler(handlers, client, [fn])
    first = handler.handle_sync(post("fn"))
    assert first.status == 206
    [op] = decoded(first)
    assert (op["op"], op["id"], op["data"]) == ("StepRun", sha1("first"), 2)

    second = handler.handle_sync(post("fn", body_for(steps={sha1("first"): {"data": 2}})))
    assert second.status == 206
    [op] = decoded(second)
    assert (op["id"], op["data"]) == (sha1("second"), 20)

    steps = {sha1("first"): {"data": 2}, sha1("second"): {"data": 20}}
    done = handler.handle_sync(post("fn", body_for(steps=steps)))
    assert done.status == 200
    assert decoded(done) == {"a": 2, "b": 20}
    assert calls == ["first", "second"]
    assert seen == ["stepline-loop"] * 3


def test_sync_server_passes_context_variables_to_async_functions(
    handlers: list[CommHandler],
) -> None:
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")
    client = make_client()

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    async def fn(ctx: stepline.Context) -> str:
        return marker.get()

    handler = make_handler(handlers, client, [fn])

    def serve_one() -> CommResponse:
        marker.set("from-request")
        return handler.handle_sync(post("fn"))

    assert decoded(contextvars.copy_context().run(serve_one)) == "from-request"


def test_sync_server_runs_async_functions_from_several_threads(
    handlers: list[CommHandler],
) -> None:
    client = make_client()

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    async def fn(ctx: stepline.Context) -> int:
        await asyncio.sleep(0.05)
        return int(ctx.event.data["n"]) * 2

    handler = make_handler(handlers, client, [fn])
    results: dict[int, Any] = {}

    def worker(n: int) -> None:
        response = handler.handle_sync(post("fn", body_for(data={"n": n})))
        results[n] = (response.status, decoded(response))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == {n: (200, n * 2) for n in range(6)}


def test_close_releases_the_private_loop() -> None:
    client = make_client()

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    async def fn(ctx: stepline.Context) -> str:
        return "ok"

    handler = CommHandler(client=client, functions=[fn], framework="test")
    assert handler.handle_sync(post("fn")).status == 200
    loop = handler._loop_thread._loop
    assert loop is not None
    try:
        handler.close()
        wait_until(lambda: not loop.is_running(), timeout=5, interval=0.005, message="no loop")
        assert not loop.is_running()
        assert loop.is_closed()
    finally:
        if not loop.is_running() and not loop.is_closed():
            loop.close()  # keep the leak out of the rest of the suite


# --- the two step faces -------------------------------------------------------------


def test_async_face_accepts_sync_and_async_callables(handlers: list[CommHandler]) -> None:
    client = make_client()
    calls: list[str] = []

    def plain() -> str:
        calls.append("plain")
        return "from-sync"

    async def coroutine() -> str:
        calls.append("coroutine")
        await asyncio.sleep(0)
        return "from-async"

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    async def fn(ctx: stepline.Context) -> list[str]:
        a = await ctx.step.run("plain", plain)
        b = await ctx.step.run("coroutine", coroutine)
        c = await ctx.step.run("args", lambda x, y: f"{x}+{y}", "p", "q")
        return [a, b, c]

    handler = make_handler(handlers, client, [fn])

    def run(steps: dict[str, Any]) -> CommResponse:
        return asyncio.run(handler.handle(post("fn", body_for(steps=steps))))

    [op] = decoded(run({}))
    assert (op["id"], op["data"]) == (sha1("plain"), "from-sync")
    steps = {sha1("plain"): {"data": "from-sync"}}
    [op] = decoded(run(steps))
    assert (op["id"], op["data"]) == (sha1("coroutine"), "from-async")
    steps[sha1("coroutine")] = {"data": "from-async"}
    [op] = decoded(run(steps))
    assert (op["id"], op["data"]) == (sha1("args"), "p+q")
    steps[sha1("args")] = {"data": "p+q"}
    done = run(steps)
    assert done.status == 200
    assert decoded(done) == ["from-sync", "from-async", "p+q"]
    assert calls == ["plain", "coroutine"]


def test_sync_face_rejects_async_callable_cleanly(handlers: list[CommHandler]) -> None:
    client = make_client()
    started: list[str] = []

    async def coroutine() -> str:
        started.append("body ran")  # never: the coroutine is never awaited
        return "x"

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> str:
        return ctx.step.run("async-in-sync", coroutine)  # type: ignore[arg-type,return-value]

    handler = make_handler(handlers, client, [fn])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        response = handler.handle_sync(post("fn"))
        gc.collect()  # a never-awaited coroutine would warn when collected
    assert [str(w.message) for w in caught] == []
    assert response.status == 206
    [op] = decoded(response)
    assert op["op"] == "StepFailed"
    assert op["id"] == sha1("async-in-sync")
    message = op["error"]["message"]
    assert "async-in-sync" in message
    assert "awaitable" in message
    assert "async function" in message
    assert response.headers["x-inngest-no-retry"] == "true"
    assert started == []


def test_async_face_step_errors(handlers: list[CommHandler]) -> None:
    client = make_client()

    @client.function(id="retriable", trigger=stepline.TriggerEvent(event="demo/go"))
    async def retriable(ctx: stepline.Context) -> None:
        async def boom() -> None:
            await asyncio.sleep(0)
            raise ValueError("async boom")

        await ctx.step.run("boom", boom)

    @client.function(id="final", trigger=stepline.TriggerEvent(event="demo/go"))
    async def final(ctx: stepline.Context) -> None:
        async def stop() -> None:
            raise stepline.NonRetriableError("stop")

        await ctx.step.run("stop", stop)

    handler = make_handler(handlers, client, [retriable, final])
    response = asyncio.run(handler.handle(post("retriable")))
    [op] = decoded(response)
    assert (op["op"], op["error"]["name"], op["error"]["message"]) == (
        "StepError",
        "ValueError",
        "async boom",
    )
    assert "x-inngest-no-retry" not in response.headers

    response = asyncio.run(handler.handle(post("final")))
    assert response.status == 500
    assert decoded(response)["code"] == "non_retriable_error"
    assert response.headers["x-inngest-no-retry"] == "true"


def test_nested_step_in_async_face(handlers: list[CommHandler]) -> None:
    client = make_client()

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    async def fn(ctx: stepline.Context) -> None:
        async def outer() -> int:
            return await ctx.step.run("inner", lambda: 1)

        await ctx.step.run("outer", outer)

    handler = make_handler(handlers, client, [fn])
    response = asyncio.run(handler.handle(post("fn")))
    [op] = decoded(response)
    assert op["op"] == "StepFailed"
    assert op["id"] == sha1("outer")
    assert op["error"]["code"] == "step_nested"
    assert response.headers["x-inngest-no-retry"] == "true"


def test_async_checkpointing_runs_steps_in_one_request(handlers: list[CommHandler]) -> None:
    client = make_client()

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    async def fn(ctx: stepline.Context) -> int:
        a = await ctx.step.run("a", lambda: 1)
        b = await ctx.step.run("b", lambda: a + 1)
        return a + b

    handler = make_handler(handlers, client, [fn])
    response = asyncio.run(handler.handle(post("fn", body_for(fn_id="fn-uuid", qi_id="qi"))))
    reported = decoded(response)
    assert response.status == 206
    assert [(op["op"], op["data"]) for op in reported] == [
        ("StepRun", 1),
        ("StepRun", 2),
        ("RunComplete", 3),
    ]


# --- streaming ----------------------------------------------------------------------


def slow_function(client: stepline.Client) -> stepline.Function:
    @client.function(id="slow", trigger=stepline.TriggerEvent(event="demo/go"))
    async def slow(ctx: stepline.Context) -> dict[str, Any]:
        await asyncio.sleep(0.1)
        n = await ctx.step.run("n", lambda: ctx.event.data["n"] + 1)
        return {"n": n}

    return slow


async def collect(response: CommResponse) -> list[bytes]:
    assert response.stream is not None
    return [chunk async for chunk in response.stream]


@pytest.mark.parametrize(
    ("steps", "status"),
    [({}, 206), ({sha1("n"): {"data": 2}}, 200)],
    ids=["step", "done"],
)
def test_streaming_wraps_the_answer_in_an_envelope(
    handlers: list[CommHandler],
    monkeypatch: pytest.MonkeyPatch,
    steps: dict[str, Any],
    status: int,
) -> None:
    monkeypatch.setattr(handler_module, "KEEPALIVE_SECONDS", 0.02)
    client = make_client()
    fn = slow_function(client)
    streaming = make_handler(handlers, client, [fn], streaming="force")
    plain = make_handler(handlers, client, [fn])
    request = post("slow", body_for(steps=steps))

    async def scenario() -> tuple[CommResponse, list[bytes], CommResponse]:
        outer = await streaming.handle(request)
        chunks = await collect(outer)
        return outer, chunks, await plain.handle(request)

    outer, chunks, expected = asyncio.run(scenario())
    assert outer.status == 201
    assert outer.body == b""
    assert outer.headers["x-inngest-sdk"].startswith("stepline-py:v")
    assert len(chunks) >= 2
    assert all(chunk == b" " for chunk in chunks[:-1])
    envelope = json.loads(chunks[-1])
    assert set(envelope) == {"status", "headers", "body"}
    assert envelope["status"] == status == expected.status
    assert isinstance(envelope["body"], str)
    assert json.loads(envelope["body"]) == decoded(expected)
    assert envelope["headers"] == expected.headers
    # The engine parses the whole 201 body as JSON: keepalive spaces are leading whitespace.
    assert json.loads(b"".join(chunks)) == envelope


def test_streaming_carries_error_status_and_retry_headers(
    handlers: list[CommHandler],
) -> None:
    client = make_client()

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    async def fn(ctx: stepline.Context) -> None:
        raise stepline.NonRetriableError("no")

    handler = make_handler(handlers, client, [fn], streaming="force")

    async def scenario() -> tuple[CommResponse, list[bytes]]:
        outer = await handler.handle(post("fn"))
        return outer, await collect(outer)

    outer, chunks = asyncio.run(scenario())
    assert outer.status == 201
    envelope = json.loads(chunks[-1])
    assert envelope["status"] == 500
    assert envelope["headers"]["x-inngest-no-retry"] == "true"
    assert json.loads(envelope["body"])["code"] == "non_retriable_error"


def test_streaming_leaves_get_and_sync_server_alone(handlers: list[CommHandler]) -> None:
    client = make_client()
    handler = make_handler(handlers, client, [slow_function(client)], streaming="force")
    get = CommRequest.build(method="GET", url=URL, headers={}, body=b"")
    inspected = asyncio.run(handler.handle(get))
    assert inspected.status == 200
    assert inspected.stream is None
    assert decoded(inspected)["function_count"] == 1
    # A sync server cannot stream: handle_sync answers directly.
    direct = handler.handle_sync(post("slow"))
    assert direct.status == 206
    assert direct.stream is None


# --- isolation ----------------------------------------------------------------------


def who_am_i(client: stepline.Client, calls: list[str]) -> stepline.Function:
    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> str:
        calls.append(client.app_id)
        return ctx.step.run("who", lambda: client.app_id)

    return fn


def two_apps(
    made: list[CommHandler], *, production: bool = False
) -> tuple[CommHandler, CommHandler, list[str]]:
    calls: list[str] = []
    client_a = make_client("app-a", is_production=production, signing_key=KEY_A)
    client_b = make_client("app-b", is_production=production, signing_key=KEY_B)
    a = make_handler(made, client_a, [who_am_i(client_a, calls)])
    b = make_handler(made, client_b, [who_am_i(client_b, calls)])
    return a, b, calls


def test_two_handlers_serve_only_their_own_functions(handlers: list[CommHandler]) -> None:
    a, b, calls = two_apps(handlers)
    [op] = decoded(a.handle_sync(post("fn", app_id="app-a")))
    assert op["data"] == "app-a"
    [op] = decoded(b.handle_sync(post("fn", app_id="app-b")))
    assert op["data"] == "app-b"
    wrong = a.handle_sync(post("fn", app_id="app-b"))
    assert wrong.status == 500
    assert decoded(wrong)["code"] == "function_not_found"
    assert calls == ["app-a", "app-b"]

    inspected = [
        decoded(h.handle_sync(CommRequest.build(method="GET", url=URL, headers={}, body=b"")))
        for h in (a, b)
    ]
    assert [i["function_count"] for i in inspected] == [1, 1]


def test_two_handlers_keep_their_own_keys(handlers: list[CommHandler]) -> None:
    a, b, calls = two_apps(handlers, production=True)
    raw = json.dumps(body_for()).encode()
    by_a = {"x-inngest-signature": signing.sign(raw, KEY_A, now=time.time())}
    ok = a.handle_sync(post("fn", app_id="app-a", raw=raw, headers=by_a))
    assert ok.status == 206
    assert signing.verify(ok.body, ok.headers["x-inngest-signature"], [KEY_A], now=time.time())
    refused = b.handle_sync(post("fn", app_id="app-b", raw=raw, headers=by_a))
    assert refused.status == 401
    assert calls == ["app-a"]


def test_two_handlers_concurrently_on_one_loop(handlers: list[CommHandler]) -> None:
    a, b, _ = two_apps(handlers)

    async def both() -> list[CommResponse]:
        requests = [
            a.handle(post("fn", app_id="app-a", body=body_for(data={"n": n}))) for n in range(4)
        ] + [b.handle(post("fn", app_id="app-b", body=body_for(data={"n": n}))) for n in range(4)]
        return list(await asyncio.gather(*requests))

    responses = asyncio.run(both())
    assert [r.status for r in responses] == [206] * 8
    assert [decoded(r)[0]["data"] for r in responses] == ["app-a"] * 4 + ["app-b"] * 4
    assert [r.headers["x-inngest-framework"] for r in responses] == ["test"] * 8


def test_concurrent_requests_on_one_handler_keep_their_own_state(
    handlers: list[CommHandler],
) -> None:
    client = make_client()

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    async def fn(ctx: stepline.Context) -> int:
        first = await ctx.step.run("first", lambda: ctx.event.data["n"])
        await asyncio.sleep(0.01 * (5 - first))
        second = await ctx.step.run("second", lambda: first * 100)
        return int(second)

    handler = make_handler(handlers, client, [fn])

    async def many() -> list[CommResponse]:
        return list(
            await asyncio.gather(
                *(
                    handler.handle(
                        post("fn", body_for(data={"n": n}, steps={sha1("first"): {"data": n}}))
                    )
                    for n in range(5)
                )
            )
        )

    responses = asyncio.run(many())
    for n, response in enumerate(responses):
        [op] = decoded(response)
        assert (op["id"], op["data"]) == (sha1("second"), n * 100)


def test_a_handler_refuses_another_apps_functions() -> None:
    mine, theirs = make_client("mine"), make_client("theirs")

    @theirs.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> None:
        return None

    with pytest.raises(stepline.ConfigError, match="theirs"):
        CommHandler(client=mine, functions=[fn], framework="test")


@pytest.mark.slow
def test_async_server_syncs_out_of_band(
    handlers: list[CommHandler], stub_server: StubServer
) -> None:
    stub_server.answer = lambda _req: (200, {"ok": True, "modified": True})
    client = make_client(api_base_url=stub_server.url, env="branch-1")
    handler = make_handler(handlers, client, [slow_function(client)])
    put = CommRequest.build(
        method="PUT", url=URL, headers={"x-inngest-server-kind": "dev"}, body=b""
    )
    response = asyncio.run(handler.handle(put))
    assert response.status == 200
    assert response.headers["x-inngest-sync-kind"] == "out_of_band"
    assert decoded(response) == {"ok": True, "modified": True}
    [sent] = stub_server.requests
    assert sent["path"] == "/fn/register"
    assert sent["headers"]["x-inngest-env"] == "branch-1"
    assert sent["headers"]["x-inngest-expected-server-kind"] == "dev"
    assert [f["id"] for f in sent["body"]["functions"]] == ["app-slow"]
