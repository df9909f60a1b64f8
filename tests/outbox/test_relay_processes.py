"""``stepline relay`` as a real process, between real databases and a real engine process.

On SQLite, Postgres and MariaDB: committed rows become one event and one run each; an app
SIGKILLed right after its commit loses nothing; a relay SIGKILLed after delivering and
before marking delivers again after a restart and the engine still holds one event and
one run; an engine down for a while is caught up with. On Postgres a writer's NOTIFY
wakes a relay that would otherwise sleep for its whole poll interval.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import stepline
import stepline.outbox
from tests._support import processes
from tests._support.outbox_db import Database
from tests._support.outbox_shop import ORDER_PLACED
from tests._support.polling import wait_until

from .relay_support import (
    EngineProcess,
    engine_process,
    metric,
    pending,
    relay_process,
)

pytestmark = [pytest.mark.process, pytest.mark.postgres]

CLIENT = stepline.Client(app_id="shop", is_production=False)


def write_order(db: Database, order_id: int, *, commit: bool = True) -> dict[str, Any]:
    """An order, an outbox send and an outbox start in one transaction; the ids promised."""
    with contextlib.closing(db.connect()) as connection:
        cursor = connection.cursor()
        mark = "?" if db.dialect == "sqlite" else "%s"
        cursor.execute(f"INSERT INTO orders (id, total) VALUES ({mark}, 250)", (order_id,))
        event = stepline.Event(name=ORDER_PLACED, data={"order_id": order_id})
        sent = stepline.outbox.send(connection, CLIENT, event)
        started = stepline.outbox.start(connection, CLIENT, "process-order", {"order_id": order_id})
        if commit:
            connection.commit()
        else:
            connection.rollback()
    return {"events": sent, "run_id": started.run_id}


def prepare(db: Database) -> None:
    db.create_table()
    with contextlib.closing(db.connect()) as connection:
        connection.cursor().execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER)")
        connection.commit()


def assert_relayed_once(
    engine: EngineProcess, db: Database, promised: list[dict[str, Any]]
) -> None:
    """Every promised event stored once, every promised run started once, and no other."""
    wait_until(lambda: not pending(db), message=lambda: f"delivery of {pending(db)}")
    events = engine.events()
    assert sorted(e["internal_id"] for e in events) == sorted(
        i for p in promised for i in p["events"]
    )
    runs = engine.runs()
    started = {p["run_id"] for p in promised}
    assert started <= {r["run_id"] for r in runs}
    # each order: the run its event triggered, and the run started by id
    assert len(runs) == 2 * len(promised), runs
    assert all(row["attempts"] >= 1 and row["last_error"] is None for row in db.rows())


def test_committed_rows_are_relayed_once_and_a_rollback_sends_nothing(
    database: Database, tmp_path: Path
) -> None:
    prepare(database)
    with engine_process(tmp_path) as engine:
        promised = [write_order(database, 1)]
        write_order(database, 2, commit=False)
        assert len(pending(database)) == 2
        with relay_process(database, engine.url, tmp_path / "relay.log"):
            assert_relayed_once(engine, database, promised)


def test_an_app_killed_after_its_commit_still_starts_its_run_once(
    database: Database, tmp_path: Path
) -> None:
    prepare(database)
    out = tmp_path / "promised.json"
    command = [
        sys.executable,
        "-m",
        "tests.apps.outbox_order_writer",
        database.dialect,
        database.url,
    ]
    app = processes.spawn([*command, str(out)], log=tmp_path / "app.log")
    assert app.wait(30) == -signal.SIGKILL, processes.log_tail(tmp_path / "app.log")
    promised = json.loads(out.read_text())
    assert len(pending(database)) == 2  # committed, not delivered: no relay ran yet
    with (
        engine_process(tmp_path) as engine,
        relay_process(database, engine.url, tmp_path / "relay.log"),
    ):
        assert_relayed_once(engine, database, [promised])


def test_a_relay_killed_after_delivering_and_before_marking_sends_nothing_twice(
    database: Database, tmp_path: Path
) -> None:
    prepare(database)
    marker = tmp_path / "paused"
    with engine_process(tmp_path) as engine:
        promised = [write_order(database, 1), write_order(database, 2)]
        pause = {"STEPLINE_RELAY_TEST_PAUSE_AFTER_DELIVERY": str(marker)}
        with relay_process(database, engine.url, tmp_path / "relay1.log", **pause) as first:
            wait_until(marker.exists, message="the relay to deliver and pause")
            assert len(engine.runs()) == 4  # delivered...
            first.kill()  # ...and SIGKILLed before marking
            first.wait(10)
        assert len(pending(database)) == 4
        with relay_process(database, engine.url, tmp_path / "relay2.log"):
            assert_relayed_once(engine, database, promised)


def test_an_engine_down_for_a_while_is_caught_up_with(database: Database, tmp_path: Path) -> None:
    prepare(database)
    engine = EngineProcess(tmp_path)
    engine.start()
    engine.register()
    engine.stop()  # the engine's database keeps the shop's registration
    port = processes.free_port()
    log = tmp_path / "relay.log"
    with relay_process(database, engine.url, log, "--metrics-port", str(port)):

        def scraped() -> str:
            return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text

        promised = [write_order(database, n) for n in range(1, 4)]
        wait_until(
            lambda: metric(scraped(), "stepline_outbox_unavailable_total") >= 3,
            message=lambda: f"failed deliveries while the engine is down:\n{scraped()}",
        )
        assert len(pending(database)) == 6  # nothing marked while the engine is away
        engine.start()
        try:
            assert_relayed_once(engine, database, promised)

            def drained() -> str | None:
                text = scraped()
                return text if metric(text, "stepline_outbox_backlog") == 0 else None

            text = wait_until(drained, message=lambda: f"a zero backlog:\n{scraped()}")
            assert metric(text, "stepline_outbox_delivered_total") == 6
        finally:
            engine.stop()


def test_a_postgres_writer_wakes_the_relay_at_its_commit(tmp_path: Path) -> None:
    from tests._support.outbox_db import fresh

    with fresh("postgresql", tmp_path) as database:
        prepare(database)
        with engine_process(tmp_path) as engine:
            log = tmp_path / "relay.log"
            with relay_process(database, engine.url, log, "--poll-interval", "60"):
                latencies = []
                for order in range(1, 4):
                    began = time.monotonic()
                    promised = write_order(database, order)
                    wait_until(lambda: not pending(database), timeout=10)
                    latencies.append(time.monotonic() - began)
                    assert promised["run_id"] in {r["run_id"] for r in engine.runs()}
                # polling alone would take up to 60 s; a NOTIFY makes it well under one
                assert max(latencies) < 5.0, latencies
                assert sorted(latencies)[1] < 1.0, latencies
