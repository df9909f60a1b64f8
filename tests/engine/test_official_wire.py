"""Wire fidelity with Inngest's server, seen by an app written with the official ``inngest``.

One engine (``build_app`` under uvicorn) and one FastAPI app served with
``inngest.fast_api.serve`` run in background threads for the module, once per store.
What an official app (or the code it calls) notices:

* the AI gateway's request carries canonical MIME header names (``X-Api-Key``,
  ``Content-Type``, the adapter's own headers), as Go's ``http.Header`` writes them;
  a raw socket server records the header bytes exactly as they arrived;
* a batch with an invalid event stores the events before it (their ids come back with
  the error: ``SendEventsError.ids``) and nothing after it;
* ``POST /e`` hands its whole answer to the server before the runs it started make their
  first calls, even when the server's ``send`` yields (flow control, other ASGI servers,
  middleware): the engine records both, in its own order.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import socket
import threading
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import fastapi
import httpx
import inngest
import pydantic.warnings
import pytest
from inngest._internal.errors import SendEventsError  # not re-exported by inngest 0.5.19
from inngest.experimental.ai import anthropic

import stepline
from stepline.engine import Engine, EngineSettings
from stepline.engine._driver import default_driver
from stepline.engine._gateway import proxy
from stepline.engine._http.api import build_app
from stepline.engine._wire.response import RawResponse
from tests._support.polling import wait_until
from tests._support.server_thread import ServerThread

with warnings.catch_warnings():
    # inngest 0.5.19's comm_lib.CommRequest declares a class-based pydantic ``Config``
    warnings.filterwarnings(
        "ignore",
        message="Support for class-based `config` is deprecated",
        category=pydantic.warnings.PydanticDeprecatedSince20,
    )
    import inngest.fast_api

APP_ID = "official-wire"
LLM_ANSWER = b'{"content": [{"type": "text", "text": "hi"}]}'
#: Sends checked for the answer-before-first-call order (each one a run of its own).
ORDER_SENDS = 40


class RawServer:
    """A socket server recording each request's header block byte for byte (case kept)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.heads: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                while len(body) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    body += chunk
                self.heads.append(head)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                    % (len(LLM_ANSWER), LLM_ANSWER)
                )

    def close(self) -> None:
        self.sock.close()


class Recording:
    """The engine's HTTP driver, noting each call to an app before it is made."""

    def __init__(self, log: list[str]) -> None:
        self.inner = default_driver()
        self.log = log

    async def request(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> RawResponse:
        if b"wire/first" in body:
            self.log.append("call")
        return await self.inner.request(method, url, body, headers, timeout)

    async def close(self) -> None:
        await self.inner.close()


class SlowSend:
    """The engine's app under a server whose ``send`` takes a while (a client reading
    slowly, flow control, another ASGI server): notes when an event answer is out."""

    def __init__(self, app: Any, log: list[str]) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        answer = scope["type"] == "http" and scope["path"].startswith("/e/")

        async def slow(message: Any) -> None:
            if answer:
                await asyncio.sleep(0.005)
            await send(message)
            if answer and message["type"] == "http.response.body" and not message.get("more_body"):
                self.log.append("answered")

        await self.app(scope, receive, slow if answer else send)


@dataclasses.dataclass
class Wire:
    engine_url: str
    app_url: str
    client: inngest.Inngest
    http: httpx.Client
    llm: RawServer
    #: the send numbers whose run's first call reached the app
    first_calls: set[int]
    #: "answered" (an event answer handed to the server) and "call" (a wire/first call)
    log: list[str] = dataclasses.field(default_factory=list)

    def runs(self, fn: str) -> list[dict[str, Any]]:
        found = self.http.get("/v1/runs", params={"function_id": f"{APP_ID}-{fn}"})
        return list(found.json()["data"])

    def events(self, name: str) -> list[dict[str, Any]]:
        return list(self.http.get("/v1/events", params={"name": name}).json()["data"])


def _app(engine_url: str, llm: RawServer) -> tuple[fastapi.FastAPI, inngest.Inngest, Wire]:
    client = inngest.Inngest(
        app_id=APP_ID, is_production=False, api_base_url=engine_url, event_api_base_url=engine_url
    )
    first: set[int] = set()

    @client.create_function(
        fn_id="infer", trigger=inngest.TriggerEvent(event="wire/infer"), retries=0
    )
    async def infer(ctx: inngest.Context) -> Any:
        adapter = anthropic.Adapter(
            auth_key="sk-wire",
            base_url=f"{llm.url}/v1",
            headers={"anthropic-version": "2023-06-01", "x-my-header": "mine"},
            model="claude-test",
        )
        body = {"max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
        return await ctx.step.ai.infer("ask", adapter=adapter, body=body)

    @client.create_function(
        fn_id="batch", trigger=inngest.TriggerEvent(event="wire/batch"), retries=0
    )
    def batch(ctx: inngest.ContextSync) -> Any:
        return ctx.event.data

    @client.create_function(
        fn_id="first", trigger=inngest.TriggerEvent(event="wire/first"), retries=0
    )
    def first_call(ctx: inngest.ContextSync) -> None:
        first.add(int(str(ctx.event.data["n"])))

    app = fastapi.FastAPI()
    inngest.fast_api.serve(app, client, [infer, batch, first_call])

    @app.post("/send/{number}")
    async def send(number: int) -> dict[str, Any]:
        """The app sending an event itself, as a web request handler would."""
        ids = await client.send(inngest.Event(name="wire/first", data={"n": number}))
        return {"ids": ids}

    wire = Wire(engine_url, "", client, httpx.Client(), llm, first)
    return app, client, wire


@pytest.fixture(scope="module")
def wire(module_db: str) -> Iterator[Wire]:
    engine_server = ServerThread("stepline-engine")
    app_server = ServerThread("inngest-app")
    llm = RawServer()
    settings = EngineSettings(
        database_url=module_db,
        port=engine_server.port,
        retry_scale=0.001,
        retry_jitter=0.0,
        poll_interval=0.05,
        gateway_allow=("127.0.0.1/32",),  # the raw "LLM" listens on loopback
    )
    app, _client, state = _app(engine_server.url, llm)
    with contextlib.ExitStack() as stop:
        stop.callback(llm.close)
        stop.callback(engine_server.stop)
        stop.callback(app_server.stop)
        engine = Engine(settings, http=Recording(state.log))
        engine_server.start(SlowSend(build_app(engine), state.log))
        app_server.start(app)
        state.http = stop.enter_context(httpx.Client(base_url=engine_server.url, timeout=30))
        state.app_url = app_server.url
        synced = httpx.put(f"{app_server.url}/api/inngest", timeout=30)
        assert synced.status_code == 200, synced.text
        yield state


def _finished(wire: Wire, fn: str, count: int = 1) -> list[dict[str, Any]]:
    def ended() -> list[dict[str, Any]] | None:
        runs = wire.runs(fn)
        done = [r for r in runs if r["status"] in ("Completed", "Failed", "Cancelled")]
        return runs if len(done) >= count else None

    return list(wait_until(ended, message=f"{count} finished run(s) of {fn}"))


# -- the AI gateway's header names ------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ("x-api-key", "X-Api-Key"),
        ("CONTENT-TYPE", "Content-Type"),
        ("anthropic-version", "Anthropic-Version"),
        ("x-my-header", "X-My-Header"),
        ("x--1a_b", "X--1a_b"),
        ("has space", "has space"),  # not a token: as given, as Go leaves it
        ("ünïcode", "ünïcode"),
    ],
)
def test_header_names_are_canonical_as_go_writes_them(given: str, sent: str) -> None:
    assert proxy.canonical(given) == sent
    built = proxy.build({"url": "http://h/", "headers": {given: "v"}, "format": "anthropic"})
    assert built.headers[sent] == "v"


def test_gateway_sends_canonical_header_names(wire: Wire) -> None:
    wire.client.send_sync(inngest.Event(name="wire/infer"))
    [run] = _finished(wire, "infer")
    assert run["status"] == "Completed", run
    assert run["output"] == {"content": [{"type": "text", "text": "hi"}]}
    [head] = wire.llm.heads
    request_line, *lines = head.split(b"\r\n")
    assert request_line == b"POST /v1/messages HTTP/1.1"
    names = [line.partition(b":")[0] for line in lines]
    for wanted in (b"Host", b"Content-Type", b"X-Api-Key", b"Anthropic-Version", b"X-My-Header"):
        assert wanted in names, head  # the exact bytes, as Inngest's server (Go) sends them
    assert all(name[:1].isupper() for name in names), head
    assert b"X-Api-Key: sk-wire" in lines
    assert b"X-My-Header: mine" in lines
    assert b"Content-Type: application/json" in lines


# -- a batch with an invalid event --------------------------------------------------------------


def test_a_batch_stores_the_events_before_the_first_invalid_one(wire: Wire) -> None:
    events = [
        inngest.Event(name="wire/batch", data={"i": 0}),
        inngest.Event(name="wire/batch", data={"i": 1}),
        inngest.Event(name="wire/batch", data={"i": 2}, ts=5),  # ts before 1980: invalid
        inngest.Event(name="wire/batch", data={"i": 3}),
    ]
    with pytest.raises(SendEventsError) as raised:
        wire.client.send_sync(events)
    error = raised.value
    assert len(error.ids) == 2, error.ids
    assert "event 2" in str(error)
    assert "ts 5" in str(error)
    stored = wire.events("wire/batch")
    assert sorted(e["internal_id"] for e in stored) == sorted(error.ids)
    assert sorted(e["data"]["i"] for e in stored) == [0, 1], "nothing after the invalid event"
    runs = _finished(wire, "batch", 2)
    assert sorted(r["output"]["i"] for r in runs) == [0, 1], "the stored events started runs"
    assert sorted(r["event_ids"][0] for r in runs) == sorted(error.ids)


def test_a_batch_answer_over_raw_http_has_inngests_shape(wire: Wire) -> None:
    body = [
        {"name": "wire/raw", "data": {"i": 0}},
        {"name": "inngest/function.failed", "data": {}},  # reserved: invalid
        {"name": "wire/raw", "data": {"i": 2}},
    ]
    answer = wire.http.post("/e/k", json=body)
    assert answer.status_code == 400, answer.text
    payload = answer.json()
    assert set(payload) == {"ids", "status", "error"}
    assert payload["status"] == 400
    assert "event 1" in payload["error"]
    assert "reserved" in payload["error"]
    [stored] = wire.events("wire/raw")
    assert payload["ids"] == [stored["internal_id"]]
    assert stored["data"] == {"i": 0}
    # the first event invalid: nothing stored, no ids
    first_bad = wire.http.post("/e/k", json=[{"name": ""}, {"name": "wire/raw2"}])
    assert first_bad.status_code == 400
    assert first_bad.json()["ids"] == []
    assert wire.events("wire/raw2") == []
    # the REST route: the same prefix rule, the ids in its data
    rest = wire.http.post(
        "/v1/events", json=[{"name": "wire/rest"}, {"name": "wire/rest", "ts": 1}]
    )
    assert rest.status_code == 400, rest.text
    [kept] = wire.events("wire/rest")
    assert rest.json()["data"]["ids"] == [kept["internal_id"]]
    assert "event 1" in rest.json()["error"]


# -- the answer before the first call -----------------------------------------------------------


def _called(wire: Wire, number: int) -> bool | None:
    return number in wire.first_calls or None


@pytest.mark.slow
def test_the_event_answer_is_out_before_the_first_call(wire: Wire) -> None:
    with httpx.Client(base_url=wire.app_url, timeout=30) as app:
        for number in range(ORDER_SENDS):
            del wire.log[:]
            answer = app.post(f"/send/{number}")  # the app's own client.send, in its loop
            assert answer.status_code == 200, answer.text
            called = functools.partial(_called, wire, number)
            wait_until(called, message=f"the first call of run {number}")
            assert wire.log[:2] == ["answered", "call"], (number, wire.log)


def test_stepline_s_sender_carries_the_stored_ids_too(wire: Wire) -> None:
    client = stepline.Client(
        "wire-sender",
        is_production=False,
        api_base_url=wire.engine_url,
        event_api_base_url=wire.engine_url,
        environ={},
    )
    events = [
        stepline.Event(name="wire/ours", data={"i": 0}),
        stepline.Event(name="wire/ours", data={"i": 1}, ts=5),  # ts before 1980: invalid
        stepline.Event(name="wire/ours", data={"i": 2}),
    ]
    try:
        with pytest.raises(stepline.SendEventError) as raised:
            client.send_sync(events)
    finally:
        client.close()
    [stored] = wire.events("wire/ours")
    assert raised.value.ids == [stored["internal_id"]]
    assert stored["data"] == {"i": 0}
