"""The engine relaying an outbox itself (``relay_outbox``): embedded, and engine-direct.

An embedded engine next to a SQLAlchemy app is given the app's database URL and relays
its outbox without a relay process (SQLite, Postgres, MariaDB). An engine sharing the
app's Postgres relays ``self``: woken by the writers' NOTIFY, well before its poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import pytest

import stepline
import stepline.outbox
from stepline.embedded import EmbeddedEngine
from stepline.engine import Engine
from tests._support.aio import arun
from tests._support.databases import postgres_schema
from tests._support.engines import FAST, running
from tests._support.outbox_db import Database
from tests._support.outbox_shop import ORDER_PLACED, shop_functions
from tests._support.polling import await_until, wait_until

from .relay_support import metric, pending

pytestmark = [pytest.mark.postgres]


def write_order(db: Database, client: stepline.Client, order_id: int) -> dict[str, Any]:
    with contextlib.closing(db.connect()) as connection:
        sent = stepline.outbox.send(
            connection, client, stepline.Event(name=ORDER_PLACED, data={"order_id": order_id})
        )
        started = stepline.outbox.start(connection, client, "process-order", {"order_id": -1})
        connection.commit()
    return {"events": sent, "run_id": started.run_id}


def test_an_embedded_engine_relays_the_apps_outbox(database: Database, tmp_path: Path) -> None:
    database.create_table()
    client = stepline.Client(app_id="shop", is_production=False)
    engine = EmbeddedEngine(
        client,
        shop_functions(client),
        database=str(tmp_path / "engine.db"),
        relay_outbox=database.sqlalchemy_url(),  # what a SQLAlchemy app has at hand
        **FAST,
    )
    engine.start()
    try:
        promised = write_order(database, client, 7)
        run = client.get_run_sync  # the run is there once the engine has relayed the row
        wait_until(lambda: not pending(database), message=lambda: f"{database.rows()}")
        assert run(promised["run_id"]).result(timeout=20) == {"order": -1}
        runs, _ = client.list_runs_sync(limit=10)
        [by_event] = [r for r in runs if r.event_ids == tuple(promised["events"])]
        assert run(by_event.run_id).result(timeout=20) == {"order": 7}
        assert len(runs) == 2
    finally:
        engine.stop()
        client.close()


def test_an_engine_on_the_apps_postgres_relays_it_woken_by_notify() -> None:
    client = stepline.Client(app_id="shop", is_production=False)
    with postgres_schema("direct") as url:
        db = Database("postgresql", url)
        db.create_table()

        async def body() -> list[float]:
            # a 30 s poll: only a NOTIFY delivers within the test's timeouts
            apps = [(client, shop_functions(client))]
            options = {"poll_interval": 30.0, "relay_outbox": "self"}
            async with running(url, apps=apps, **options) as engine:
                await asyncio.to_thread(write_order, db, client, 0)  # the relay is up...
                await await_until(lambda: not pending(db), timeout=10)
                latencies = []  # ...and now waits 30 s unless a NOTIFY wakes it
                for order in range(1, 4):
                    began = time.monotonic()
                    promised = await asyncio.to_thread(write_order, db, client, order)
                    await await_until(lambda: not pending(db), timeout=5)
                    latencies.append(time.monotonic() - began)
                    await _finished(engine, promised["run_id"])

                async def relayed() -> bool:  # the engine's own /metrics shows its relay
                    text = await engine.metrics()
                    delivered = metric(text, "stepline_outbox_delivered_total")
                    return delivered == 8 and metric(text, "stepline_outbox_backlog") == 0

                await await_until(relayed, timeout=10)
                return latencies

        latencies = arun(body())
    assert sorted(latencies)[1] < 1.0, latencies
    client.close()


async def _finished(engine: Engine, run_id: str) -> None:
    async def done() -> bool:
        run = await engine.get_run(run_id)
        return run.status.terminal

    await await_until(done, timeout=20)
