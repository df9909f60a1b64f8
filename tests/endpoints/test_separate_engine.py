"""Durable endpoints with a separate engine process: checkpoints over its REST API.

The app runs behind uvicorn (a thread of this process) with a client pointed at a
``stepline dev`` or ``stepline start`` process; the engine resumes a suspended run on the
app's serve endpoint over HTTP, signed in ``start`` mode.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastapi
import httpx
import pytest

import stepline
import stepline.fastapi
from stepline._protocol import signing
from tests._support.polling import wait_until
from tests._support.processes import clean_env, engine_command, free_port, spawned
from tests._support.server_thread import serving

pytestmark = [pytest.mark.process]

SIGNING_KEY = "signkey-prod-" + "ab12" * 16
EVENT_KEY = "evt-" + "7" * 32


def app_for(client: stepline.Client, ran: list[str]) -> fastapi.FastAPI:
    app = fastapi.FastAPI(lifespan=stepline.fastapi.lifespan(client))  # closes its connections

    @app.post("/pay/{order}")
    @stepline.fastapi.durable(client)
    async def pay(ctx: stepline.EndpointContext) -> dict[str, str]:
        def charge() -> str:
            ran.append("charge")
            return f"ch-{ctx.request.path_params['order']}"

        charged = await ctx.step.run("charge", charge)
        if ctx.request.query.get("nap"):
            await ctx.step.sleep("nap", dt.timedelta(seconds=0.5))

        def send_receipt() -> str:
            ran.append("receipt")
            return "sent"

        receipt = await ctx.step.run("receipt", send_receipt)
        return {"charge": charged, "receipt": receipt}

    stepline.fastapi.serve(app, client, [])
    return app


@contextlib.contextmanager
def engine_and_app(tmp_path: Path, mode: str) -> Iterator[tuple[httpx.Client, str, list[str]]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = ["--port", str(port), "--db", str(tmp_path / "e.db"), "--retry-scale", "0"]
    env = clean_env()
    if mode == "start":
        env.update(STEPLINE_SIGNING_KEY=SIGNING_KEY, STEPLINE_EVENT_KEY=EVENT_KEY)
    environ = {"STEPLINE_API_BASE_URL": base, "STEPLINE_EVENT_API_BASE_URL": base}
    if mode == "start":
        environ["STEPLINE_SIGNING_KEY"] = SIGNING_KEY
    client = stepline.Client("sep", is_production=mode == "start", environ=environ)
    ran: list[str] = []
    log = tmp_path / "engine.log"
    command = engine_command(mode, *args)
    with (  # the engine stops first: no connection of its is left open on the app's server
        serving(app_for(client, ran)) as url,
        spawned(command, log=log, env=env, up=f"{base}/health", what="the engine"),
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        auth = {"authorization": signing.bearer_token(SIGNING_KEY)} if mode == "start" else {}
        synced = httpx.post(
            f"{base}/v1/apps/sync", json={"url": f"{url}/api/inngest"}, headers=auth, timeout=30
        )
        assert synced.status_code == 200, synced.text
        assert synced.json()["data"]["ok"], synced.text
        yield http, base, ran


@pytest.mark.parametrize("mode", ["dev", "start"])
def test_inline_over_the_engine_api_and_resumed_over_http(tmp_path: Path, mode: str) -> None:
    with engine_and_app(tmp_path, mode) as (http, base, ran):
        answer = http.post("/pay/7")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"charge": "ch-7", "receipt": "sent"}
        assert ran == ["charge", "receipt"]
        ran.clear()
        suspended = http.post("/pay/8", params={"nap": "1"})
        assert suspended.status_code == 202, suspended.text
        run_id = suspended.headers["x-stepline-run-id"]
        auth = {"authorization": signing.bearer_token(SIGNING_KEY)} if mode == "start" else {}

        def ended() -> dict[str, Any] | None:
            run: dict[str, Any] = httpx.get(f"{base}/v1/runs/{run_id}", headers=auth).json()["data"]
            return run if run["status"] == "Completed" else None

        run = wait_until(ended, timeout=20, message="the suspended run to end")
        assert run["output"]["json"] == {"charge": "ch-8", "receipt": "sent"}
        assert ran == ["charge", "receipt"]  # the engine's call replayed the charge
