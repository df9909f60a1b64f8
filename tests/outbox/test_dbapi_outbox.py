"""The plain DB-API writer against real SQLite, Postgres and MariaDB, delivered to a real engine."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

import stepline
import stepline.outbox
from stepline._protocol import event_ids
from tests._support.outbox_db import Database, fresh
from tests._support.outbox_shop import ORDER_PLACED, Shop
from tests._support.polling import wait_until


def test_a_committed_send_and_start_become_rows_whose_ids_the_engine_keeps(
    database: Database, shop: Shop
) -> None:
    database.create_table()
    with contextlib.closing(database.connect()) as connection:
        cursor = connection.cursor()
        cursor.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER)")
        cursor.execute("INSERT INTO orders (id, total) VALUES (7, 250)")
        sent = stepline.outbox.send(
            connection, shop.client, stepline.Event(name=ORDER_PLACED, data={"order_id": 7})
        )
        started = stepline.outbox.start(
            connection, shop.client, "process-order", {"order_id": 8}, started_by="user-1"
        )
        connection.commit()

    [event_row, start_row] = database.rows()
    assert (event_row["kind"], start_row["kind"]) == ("event", "start")
    assert event_row["delivered_at"] is None
    assert event_row["attempts"] == 0
    body = json.loads(event_row["body"])
    assert event_ids.seeded(body["seed"], 1) == sent
    [wire] = body["events"]
    assert wire["name"] == ORDER_PLACED
    assert wire["data"] == {"order_id": 7}
    assert wire["ts"] > 0  # stamped now, as client.send does
    assert json.loads(start_row["body"]) == {
        "function_id": "shop-process-order",
        "data": {"order_id": 8},
        "run_id": started.run_id,
        "idempotency_key": None,
        "started_by": "user-1",
    }
    assert started.function_id == "shop-process-order"

    # the relay's delivery: the engine assigns exactly the ids the writer returned
    assert shop.deliver(database) == [sent, started.run_id]
    assert started.handle_sync().result(timeout=20) == {"order": 8}
    by_event = wait_until(
        lambda: next((r for r in shop.runs() if r.event_ids == tuple(sent)), None),
        message="a run started by the sent event",
    )
    assert shop.client.get_run_sync(by_event.run_id).result(timeout=20) == {"order": 7}


def test_a_rolled_back_transaction_leaves_no_row(database: Database, shop: Shop) -> None:
    database.create_table()
    with contextlib.closing(database.connect()) as connection:
        stepline.outbox.send(connection, shop.client, stepline.Event(name=ORDER_PLACED))
        stepline.outbox.start(connection, shop.client, "process-order", {"order_id": 1})
        connection.rollback()
    assert database.rows() == []
    assert shop.deliver(database) == []
    assert shop.runs() == []


def test_several_writes_in_one_transaction_keep_their_order(database: Database) -> None:
    database.create_table()
    client = stepline.Client(app_id="shop", is_production=False)
    with contextlib.closing(database.connect()) as connection:
        written = []
        for n in range(5):
            if n % 2:
                written.append(stepline.outbox.start(connection, client, "f", {"n": n}).run_id)
            else:
                event = stepline.Event(name="shop/n", data={"n": n})
                written.append(stepline.outbox.send(connection, client, [event, event])[1])
        connection.commit()
    rows = database.rows()
    assert [r["kind"] for r in rows] == ["event", "start", "event", "start", "event"]
    assert [json.loads(r["body"]).get("run_id") for r in rows[1::2]] == written[1::2]
    assert [event_ids.seeded(json.loads(r["body"])["seed"], 2)[1] for r in rows[::2]] == (
        written[::2]
    )


def test_invalid_writes_are_refused_before_anything_is_written(database: Database) -> None:
    database.create_table()
    client = stepline.Client(app_id="shop", is_production=False)
    with contextlib.closing(database.connect()) as connection:
        with pytest.raises(TypeError, match=r"stepline\.Event"):
            stepline.outbox.send(connection, client, {"name": "a/b"})  # type: ignore[arg-type]
        with pytest.raises(stepline.SendEventError, match="reserved"):
            stepline.outbox.send(connection, client, stepline.Event(name="inngest/x"))
        with pytest.raises(stepline.outbox.OutboxError, match="JSON"):
            stepline.outbox.start(connection, client, "f", {"when": object()})
        with pytest.raises(stepline.outbox.OutboxError, match="idempotency_key"):
            stepline.outbox.start(connection, client, "f", idempotency_key="")
        with pytest.raises(stepline.outbox.OutboxError, match="started_by"):
            stepline.outbox.start(connection, client, "f", started_by="x" * 300)
        connection.commit()
    assert database.rows() == []


def test_the_ddl_is_idempotent(database: Database) -> None:
    database.create_table()
    database.create_table()
    assert database.rows() == []


@pytest.mark.postgres
def test_postgres_writers_notify_at_commit_only(tmp_path: Path) -> None:
    import psycopg

    with fresh("postgresql", tmp_path) as database:
        database.create_table()
        listener = psycopg.connect(database.url, autocommit=True)
        listener.execute("LISTEN stepline_outbox")
        client = stepline.Client(app_id="shop", is_production=False)
        with contextlib.closing(database.connect()) as connection:
            # the channel is the whole database's: other writers (other tests on this
            # server) notify it too, so only this connection's notifications count
            pid = connection.info.backend_pid

            def ours(timeout: float) -> list[Any]:
                notes = listener.notifies(timeout=timeout)
                return [n for n in notes if n.pid == pid and n.channel == "stepline_outbox"]

            stepline.outbox.send(connection, client, stepline.Event(name="a/b"))
            connection.rollback()
            assert ours(0.3) == []
            stepline.outbox.start(connection, client, "f")
            connection.commit()
            assert len(ours(1.0)) == 1
        listener.close()


def test_an_unknown_dialect_or_paramstyle_is_named() -> None:
    with pytest.raises(ValueError, match="mariadb"):
        stepline.outbox.ddl("oracle")
    assert stepline.outbox.ddl("mariadb") == stepline.outbox.ddl("mysql")
    assert stepline.outbox.ddl("postgres") == stepline.outbox.ddl("postgresql")


class Wrapped:
    """A connection of a driver whose module says nothing of its paramstyle."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def cursor(self) -> Any:
        return self.inner.cursor()


def test_a_driver_without_a_paramstyle_is_asked_for_one(tmp_path: Path) -> None:
    with fresh("sqlite", tmp_path) as database:
        database.create_table()
        client = stepline.Client(app_id="shop", is_production=False)
        with contextlib.closing(database.connect()) as connection:
            event = stepline.Event(name="a/b")
            with pytest.raises(ValueError, match="paramstyle='qmark'"):
                stepline.outbox.send(Wrapped(connection), client, event)
            [sent] = stepline.outbox.send(Wrapped(connection), client, event, paramstyle="qmark")
            connection.commit()
        [row] = database.rows()
        assert event_ids.seeded(json.loads(row["body"])["seed"], 1) == [sent]
