"""The AI gateway and a model on the developer's machine, with the official ``inngest`` SDK.

An inngest-py function asks ``step.ai.infer`` for a mock LLM that listens on loopback (a
local model server, or the mock a test suite starts). ``stepline dev`` calls it, as
Inngest's dev server does, with no ``--gateway-allow``; ``stepline start`` refuses it (a
production engine must not become a proxy into its own host), and the SDK's step fails
with the engine's reason.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastapi
import httpx
import inngest
import pydantic.warnings
import pytest
from inngest.experimental.ai import openai

from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app
from tests._support.polling import wait_until
from tests._support.server_thread import ServerThread

pytestmark = [pytest.mark.slow]

with warnings.catch_warnings():
    # inngest 0.5.19's comm_lib.CommRequest declares a class-based pydantic ``Config``
    warnings.filterwarnings(
        "ignore",
        message="Support for class-based `config` is deprecated",
        category=pydantic.warnings.PydanticDeprecatedSince20,
    )
    import inngest.fast_api

PROD_KEY = "signkey-prod-" + "c3" * 32
PROD_EVENT_KEY = "event-key-gateway-prod"
ANSWER = {"choices": [{"message": {"role": "assistant", "content": "hello from loopback"}}]}
TERMINAL = ("Completed", "Failed", "Cancelled")


class MockModel(http.server.ThreadingHTTPServer):
    """An OpenAI-style chat endpoint on 127.0.0.1 that answers every POST the same."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        super().__init__(("127.0.0.1", 0), _ModelHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _ModelHandler(http.server.BaseHTTPRequestHandler):
    server: MockModel

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.server.bodies.append(json.loads(self.rfile.read(length) or b"null"))
        data = json.dumps(ANSWER).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads what the model received instead."""


@contextlib.contextmanager
def mock_model() -> Iterator[MockModel]:
    model = MockModel()
    try:
        yield model
    finally:
        model.shutdown()
        model.server_close()


def _run_infer(tmp_path: Path, model: MockModel, *, production: bool) -> dict[str, Any]:
    """Start an engine (``dev``, or ``start`` with keys) and the app; the infer run, ended."""
    engine_server = ServerThread("stepline-engine-gateway", lifespan="on")
    app_server = ServerThread("inngest-app-gateway")
    keys: dict[str, Any] = {}
    if production:
        keys = {"mode": "start", "signing_keys": (PROD_KEY,), "event_keys": (PROD_EVENT_KEY,)}
    settings = EngineSettings(
        database_url=str(tmp_path / "gateway.db"),
        retry_scale=0.001,
        retry_jitter=0.0,
        poll_interval=0.05,
        **keys,
    )
    client = inngest.Inngest(
        app_id="official-gateway",
        is_production=production,
        signing_key=PROD_KEY if production else None,
        event_key=PROD_EVENT_KEY if production else None,
        api_base_url=engine_server.url,
        event_api_base_url=engine_server.url,
    )

    @client.create_function(fn_id="ask", trigger=inngest.TriggerEvent(event="local/ask"), retries=0)
    async def ask(ctx: inngest.Context) -> Any:
        adapter = openai.Adapter(auth_key="sk-local", base_url=f"{model.url}/v1", model="llama")
        body = {"messages": [{"role": "user", "content": "hi"}]}
        return await ctx.step.ai.infer("ask-model", adapter=adapter, body=body)

    app = fastapi.FastAPI()
    inngest.fast_api.serve(app, client, [ask])
    bearer = {"authorization": f"Bearer {PROD_KEY}"} if production else {}
    with contextlib.ExitStack() as stop:
        stop.callback(engine_server.stop)
        stop.callback(app_server.stop)
        engine_server.start(build_app(Engine(settings)))
        app_server.start(app)
        http_client = stop.enter_context(
            httpx.Client(base_url=engine_server.url, timeout=30, headers=bearer)
        )
        synced = http_client.post("/v1/apps/sync", json={"url": f"{app_server.url}/api/inngest"})
        assert synced.status_code == 200, synced.text
        [event_id] = client.send_sync(inngest.Event(name="local/ask"))

        def ended() -> dict[str, Any] | None:
            runs = http_client.get(f"/v1/events/{event_id}/runs").json()["data"]
            return runs[0] if runs and runs[0]["status"] in TERMINAL else None

        return dict(wait_until(ended, message="the infer run to end"))


@pytest.mark.timeout(60)
def test_dev_mode_calls_a_model_served_on_loopback(tmp_path: Path) -> None:
    with mock_model() as model:
        run = _run_infer(tmp_path, model, production=False)
    assert run["status"] == "Completed", run
    assert run["output"] == ANSWER
    [body] = model.bodies
    assert body["model"] == "llama"
    assert body["messages"] == [{"role": "user", "content": "hi"}]


@pytest.mark.timeout(60)
def test_start_mode_refuses_a_model_on_loopback(tmp_path: Path) -> None:
    with mock_model() as model:
        run = _run_infer(tmp_path, model, production=True)
    assert model.bodies == [], "a production engine reached its own loopback"
    assert run["status"] == "Failed", run
    message = json.dumps(run["output"])
    assert "127.0.0.1 is not a public address (loopback)" in message, run["output"]
    assert "--gateway-allow" in message
