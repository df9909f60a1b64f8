"""Engines sharing one SQLite file: a node runs functions another node synced.

SQLite has no notifications, so a node learns of a sync only from the store: a call
for a function it has not seen yet re-reads the registrations before giving up.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import stepline
import stepline.asgi
from stepline._comm import app_sync
from stepline.engine import Engine, EngineSettings, RunStatus
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.engines import only_run, running
from tests._support.server_thread import ServerThread

pytestmark = [pytest.mark.slow]


def _app() -> tuple[stepline.Client, list[stepline.Function]]:
    client = dev_client("shared")

    @client.function(id="greet", trigger=stepline.TriggerEvent(event="shared/greet"))
    def greet(ctx: stepline.SyncContext) -> str:
        return ctx.step.run("hello", lambda: f"hello {ctx.event.data['name']}")

    return client, [greet]


def test_a_node_runs_a_function_synced_by_another_after_it_started(tmp_path: Path) -> None:
    client, functions = _app()
    app = stepline.asgi.serve(client, functions)
    server = ServerThread("shared-app").start(app)
    database = str(tmp_path / "shared.db")

    async def scenario() -> None:
        async with running(database) as worker_node:  # started before the app was synced
            assert worker_node.registry.get("shared-greet") is None
            syncing = Engine(EngineSettings(database_url=database, poll_interval=0.05))
            await syncing.start(worker=False, sync=False)  # this node never leases
            try:
                await syncing.register(app_sync.register_payload(app.handler.endpoint, server.url))
                await syncing.send({"name": "shared/greet", "data": {"name": "Ada"}})
                run_id = await only_run(syncing, "shared-greet")
                run = await syncing.wait_for_run(run_id, timeout=20)
            finally:
                await syncing.stop()
            assert run.status is RunStatus.COMPLETED, run.output
            assert json.loads(run.output or "null") == "hello Ada"
            assert worker_node.registry.get("shared-greet") is not None

    try:
        arun(asyncio.wait_for(scenario(), 40))
    finally:
        server.stop()
