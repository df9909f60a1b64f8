"""Wire fidelity with Inngest's server, seen by an app written with the official npm SDK.

Five points of it as ``inngest`` 4.24.0 (``js_app/wire_app.js``, under Node) meets
them, each over real HTTP against an engine under uvicorn in a thread (a SQLite file):

1. ``step.ai.infer`` (anthropic and openai models): the request reaching the "LLM", a raw
   socket server recording header bytes as they arrived, has canonical names;
2. the app behind a proxy answering HTTP/1.0 with node's ``Transfer-Encoding: chunked``
   over a plain body: runs complete;
3. ``inngest.send([valid, invalid, valid])``: the first event is stored, nothing after;
   the answers (all of the SDK's attempts, one id seed) carry the stored id;
4. node's ``server.keepAliveTimeout`` shorter than a function's sleep, the engine's loop
   busy before each call: every run (``retries: 0``) completes;
5. the app's own ``inngest.send`` has returned before its run's first step runs, the
   engine's answers going out slowly (a server whose ``send`` yields, as in
   ``test_official_wire``) so that a call sent along with the answer would win.

The npm install and the CI rule (fail, not skip, without Node) are ``test_official_js``'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stepline.engine import Engine, EngineSettings
from stepline.engine._driver import Driver
from stepline.engine._http.api import build_app
from tests._support import node_apps, refusing
from tests._support.polling import wait_until
from tests._support.server_thread import ServerThread

from . import test_official_js as official_js
from .test_official_driver import BusyEngineLoop
from .test_official_wire import RawServer, SlowSend
from .wire_servers import Http10Proxy

pytestmark = [pytest.mark.process, pytest.mark.timeout(60, func_only=True)]

TERMINAL = ("Completed", "Failed", "Cancelled")
#: Sends checked for the answer-before-first-step order (each one a run of its own).
ORDER_SENDS = 20
#: node's keep-alive for item 4, in ms (its default is 5 s), and the runs made.
KEEP_ALIVE_MS = 200
NAP_RUNS = 10
NOWHERE = refusing.url()

#: The session fixture: js_app's npm dependencies installed (under CI, no node fails).
js_app = official_js.js_app


@dataclasses.dataclass
class Stack:
    """The engine (``engine``: a client on its base URL) and the node app (``app``)."""

    engine: httpx.Client
    app: httpx.Client
    llm: RawServer | None = None

    def send(self, name: str, data: dict[str, Any]) -> str:
        answer = self.engine.post("/e/key", json={"name": name, "data": data})
        assert answer.status_code == 200, answer.text
        return str(answer.json()["ids"][0])

    def run_of(self, event_id: str) -> str:
        def found() -> str | None:
            runs = self.engine.get(f"/v1/events/{event_id}/runs").json()["data"]
            return str(runs[0]["run_id"]) if runs else None

        return str(wait_until(found, message=f"a run of event {event_id}"))

    def finished(self, run_id: str, timeout: float = 30) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:
            run: dict[str, Any] = self.engine.get(f"/v1/runs/{run_id}").json()["data"]
            return run if run["status"] in TERMINAL else None

        return dict(wait_until(ended, timeout=timeout, message=f"run {run_id} to end"))

    def events(self, name: str) -> list[dict[str, Any]]:
        return list(self.engine.get("/v1/events", params={"name": name}).json()["data"])


@contextlib.contextmanager
def node(app_dir: Path, engine_url: str, llm_url: str, log: Path, **env: str) -> Iterator[str]:
    """``node wire_app.js`` pointed at the engine; yields its origin."""
    with node_apps.serving(app_dir, "wire_app.js", [engine_url, llm_url], log, env) as origin:
        yield origin


@contextlib.contextmanager
def stack(
    app_dir: Path,
    tmp: Path,
    *,
    llm: RawServer | None = None,
    driver: Driver | None = None,
    proxied: bool = False,
    slow_answers: bool = False,
    **env: str,
) -> Iterator[Stack]:
    """An engine and the node app, registered (with the proxy's URL when ``proxied``)."""
    engine_server = ServerThread("stepline-engine")
    settings = EngineSettings(
        database_url=str(tmp / "engine.db"),
        port=engine_server.port,
        retry_scale=0.001,
        retry_jitter=0.0,
        poll_interval=0.05,
        gateway_allow=("127.0.0.1/32",) if llm else (),  # the raw "LLM" is on loopback
    )
    with contextlib.ExitStack() as stop:
        stop.callback(engine_server.stop)
        app = build_app(Engine(settings, http=driver))
        # a server whose send yields (item 5): the answer takes a while to go out
        engine_server.start(SlowSend(app, []) if slow_answers else app)
        proxy_handler: Any = None
        if proxied:
            proxy_handler = type("Proxy", (Http10Proxy,), {})
            proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), proxy_handler)
            threading.Thread(target=proxy.serve_forever, daemon=True).start()
            stop.callback(proxy.server_close)
            stop.callback(proxy.shutdown)
            env["INNGEST_SERVE_ORIGIN"] = f"http://127.0.0.1:{proxy.server_address[1]}"
        llm_url = llm.url if llm else NOWHERE
        origin = stop.enter_context(
            node(app_dir, engine_server.url, llm_url, tmp / "node.log", **env)
        )
        if proxy_handler is not None:
            proxy_handler.upstream = origin
        # the SDK registers the URL the engine is to call: the proxy's, when there is one
        synced = httpx.put(f"{origin}/api/inngest", timeout=30)
        assert synced.status_code == 200, synced.text
        yield Stack(
            stop.enter_context(httpx.Client(base_url=engine_server.url, timeout=30)),
            stop.enter_context(httpx.Client(base_url=origin, timeout=30)),
            llm,
        )


@pytest.fixture(scope="module")
def wire(js_app: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Items 1, 3 and 5: one engine (its event answers slow to go out) and one app."""
    llm = RawServer()
    try:
        tmp = tmp_path_factory.mktemp("official-js-wire")
        with stack(js_app, tmp, llm=llm, slow_answers=True) as s:
            yield s
    finally:
        llm.close()


# -- item 1: the AI gateway's header names ---------------------------------------------------


def test_gateway_sends_canonical_header_names(wire: Stack) -> None:
    run = wire.finished(wire.run_of(wire.send("wire/infer", {})))
    assert run["status"] == "Completed", run
    answer = {"content": [{"type": "text", "text": "hi"}]}
    assert run["output"] == {"a": answer, "b": answer}
    assert wire.llm is not None
    anthropic, openai = wire.llm.heads
    request_line, *lines = anthropic.split(b"\r\n")
    assert request_line == b"POST /v1/messages HTTP/1.1"
    names = [line.partition(b":")[0] for line in lines]
    for wanted in (b"Host", b"Content-Type", b"X-Api-Key", b"Anthropic-Version"):
        assert wanted in names, anthropic  # the exact bytes, as Inngest's server (Go) sends them
    assert b"X-Api-Key: sk-ant" in lines
    assert b"X-My-Header: mine" in lines  # the model's own headers, canonicalised too
    assert b"X-Shouted: loud" in lines
    assert b"Content-Type: application/json" in lines
    assert all(name[:1].isupper() and name.lower() != name for name in names), anthropic

    request_line, *lines = openai.split(b"\r\n")
    assert request_line == b"POST /v1/chat/completions HTTP/1.1"
    assert b"Authorization: Bearer sk-oai" in lines
    assert b"Content-Type: application/json" in lines
    assert all(line[:1].isupper() for line in lines), openai


# -- item 3: a batch with an invalid event -----------------------------------------------------


def test_a_batch_stores_the_events_before_the_first_invalid_one(wire: Stack) -> None:
    sent = wire.app.post("/batch").json()  # the app's inngest.send([valid, invalid, valid])
    assert "sent" not in sent, sent
    batch = wire.events("wire/batch")
    assert [e["data"] for e in batch] == [{"i": 0}], "the event before the invalid one, only"
    stored = batch[0]
    # inngest-js 4.24.0 throws a plain Error carrying the answer's message (no ids field):
    # the ids are in the answer its fetch got, every attempt of the send (one id seed)
    error = sent["error"]
    assert error["message"].startswith("Inngest API Error: 400 "), error
    assert "event 1" in error["message"]
    assert "the 1 event(s) before it were stored" in error["message"]
    assert sent["answers"], sent
    for answer in sent["answers"]:
        assert answer["status"] == 400, answer
        assert answer["body"]["ids"] == [stored["internal_id"]], answer
    run = wire.finished(wire.run_of(stored["internal_id"]))
    assert (run["status"], run["output"]) == ("Completed", {"i": 0}), run


# -- item 5: the event answer before the first call --------------------------------------------


def test_the_apps_send_has_returned_before_its_runs_first_step(wire: Stack) -> None:
    for number in range(ORDER_SENDS):
        sent = wire.app.post(f"/send/{number}")  # the app's own inngest.send, in its loop
        assert sent.status_code == 200, sent.text

        def first_step(n: int = number) -> dict[str, Any] | None:
            seen: dict[str, Any] | None = wire.app.get("/first", params={"n": n}).json()
            return seen

        seen = wait_until(first_step, message=f"the first step of run {number}")
        assert seen["sendReturned"] is True, (number, seen)
        assert seen["returnedAt"] <= seen["at"], (number, seen)


# -- item 2: an HTTP/1.0 proxy's chunked header over a plain body -------------------------------


def test_js_app_behind_an_http10_proxy_completes(js_app: Path, tmp_path: Path) -> None:
    # node answers chunked; the proxy de-chunks, copies the header and answers HTTP/1.0:
    # with retries: 0 one unread answer fails the run
    with stack(js_app, tmp_path, proxied=True, CHUNKED="1") as s:
        run_ids = [s.run_of(s.send("wire/two", {"n": n})) for n in range(3)]
        for n, run_id in enumerate(run_ids):
            run = s.finished(run_id)
            assert (run["status"], run["output"]) == (
                "Completed",
                {"a": n + 1, "b": 2 * (n + 1)},
            ), run


# -- item 4: pooled connections node closed while the run slept --------------------------------


def test_js_app_sleeping_past_nodes_keep_alive_completes(js_app: Path, tmp_path: Path) -> None:
    # node closes idle connections after 0.2 s; every run sleeps 1 s between its steps and
    # the engine's loop is busy 0.3 s before each call, so calls meet connections node has
    # closed; with retries: 0 each such call counted as an attempt would fail its run
    driver = BusyEngineLoop(KEEP_ALIVE_MS / 1000 * 1.5)
    with stack(js_app, tmp_path, driver=driver, KEEP_ALIVE_MS=str(KEEP_ALIVE_MS)) as s:
        events = [s.send("wire/two", {"n": n, "nap": "1s"}) for n in range(NAP_RUNS)]
        run_ids = [s.run_of(event_id) for event_id in events]
        for n, run_id in enumerate(run_ids):
            run = s.finished(run_id, timeout=45)
            assert (run["status"], run["output"]) == (
                "Completed",
                {"a": n + 1, "b": 2 * (n + 1)},
            ), run
    assert driver.calls >= 2 * NAP_RUNS, driver.calls
