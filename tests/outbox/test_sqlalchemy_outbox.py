"""``stepline.sqlalchemy`` against real SQLite, Postgres and MariaDB: Session and Connection,
sync and async, committed and rolled back, delivered to a real engine."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

import stepline
import stepline.sqlalchemy
from stepline._protocol import event_ids
from tests._support.outbox_db import Database, fresh
from tests._support.outbox_shop import ORDER_PLACED, Shop

FACES = ("session", "connection")


def schema() -> tuple[sa.MetaData, sa.Table]:
    metadata = sa.MetaData()
    orders = sa.Table(
        "orders",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("total", sa.Integer, nullable=False),
    )
    stepline.sqlalchemy.outbox_table(metadata)
    return metadata, orders


@pytest.fixture
def tables(database: Database) -> sa.Table:
    """The app's ``orders`` and the outbox, created through SQLAlchemy; yields ``orders``."""
    metadata, orders = schema()
    engine = sa.create_engine(database.sqlalchemy_url())
    metadata.create_all(engine)
    engine.dispose()
    return orders


def order_ids(database: Database) -> list[int]:
    engine = sa.create_engine(database.sqlalchemy_url())
    with engine.connect() as connection:
        found = [r[0] for r in connection.execute(sa.text("SELECT id FROM orders ORDER BY id"))]
    engine.dispose()
    return found


def place_order_sync(
    database: Database, face: str, client: stepline.Client, orders: sa.Table, *, commit: bool
) -> tuple[list[str], stepline.outbox.StartedRun]:
    """One transaction: an order row, an event and a start; committed or rolled back."""
    engine = sa.create_engine(database.sqlalchemy_url())
    try:
        bind: Any = Session(engine) if face == "session" else engine.connect()
        with bind:
            bind.execute(orders.insert().values(id=7, total=250))
            sent = stepline.sqlalchemy.send(
                bind, client, stepline.Event(name=ORDER_PLACED, data={"order_id": 7})
            )
            started = stepline.sqlalchemy.start(bind, client, "process-order", {"order_id": 8})
            if commit:
                bind.commit()
            else:
                bind.rollback()
    finally:
        engine.dispose()
    return sent, started


async def place_order_async(
    database: Database, face: str, client: stepline.Client, orders: sa.Table, *, commit: bool
) -> tuple[list[str], stepline.outbox.StartedRun]:
    engine = create_async_engine(database.sqlalchemy_url(asynchronous=True))
    try:
        bind: AsyncSession | AsyncConnection = (
            AsyncSession(engine) if face == "session" else engine.connect()
        )
        async with bind:
            await bind.execute(orders.insert().values(id=7, total=250))
            sent = await stepline.sqlalchemy.send_async(
                bind, client, stepline.Event(name=ORDER_PLACED, data={"order_id": 7})
            )
            started = await stepline.sqlalchemy.start_async(
                bind, client, "process-order", {"order_id": 8}
            )
            if commit:
                await bind.commit()
            else:
                await bind.rollback()
    finally:
        await engine.dispose()
    return sent, started


def check_delivered(
    database: Database,
    shop: Shop,
    sent: list[str],
    started: stepline.outbox.StartedRun,
    *,
    relay: bool,
) -> None:
    [event_row, start_row] = database.rows()
    assert event_ids.seeded(json.loads(event_row["body"])["seed"], 1) == sent
    assert json.loads(start_row["body"])["run_id"] == started.run_id
    assert order_ids(database) == [7]
    if relay:  # the real relay, in process
        assert shop.relay(database) == 2
        assert all(row["delivered_at"] is not None for row in database.rows())
    else:
        assert shop.deliver(database) == [sent, started.run_id]
    assert started.handle_sync().result(timeout=20) == {"order": 8}
    [by_event] = [r for r in shop.runs() if r.event_ids == tuple(sent)]
    assert shop.client.get_run_sync(by_event.run_id).result(timeout=20) == {"order": 7}


@pytest.mark.parametrize("face", FACES)
def test_sync_committed_writes_are_delivered_with_the_ids_returned(
    database: Database, tables: sa.Table, shop: Shop, face: str
) -> None:
    sent, started = place_order_sync(database, face, shop.client, tables, commit=True)
    check_delivered(database, shop, sent, started, relay=face == "session")


@pytest.mark.parametrize("face", FACES)
def test_async_committed_writes_are_delivered_with_the_ids_returned(
    database: Database, tables: sa.Table, shop: Shop, face: str
) -> None:
    sent, started = asyncio.run(place_order_async(database, face, shop.client, tables, commit=True))
    check_delivered(database, shop, sent, started, relay=face == "connection")


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_rollback_leaves_nothing(
    database: Database, tables: sa.Table, shop: Shop, face: str, asynchronous: bool
) -> None:
    if asynchronous:
        asyncio.run(place_order_async(database, face, shop.client, tables, commit=False))
    else:
        place_order_sync(database, face, shop.client, tables, commit=False)
    assert database.rows() == []
    assert order_ids(database) == []
    assert shop.deliver(database) == []
    assert shop.runs() == []


def test_several_writes_keep_their_order_sync_and_async(
    database: Database, tables: sa.Table
) -> None:
    client = stepline.Client(app_id="shop", is_production=False)
    engine = sa.create_engine(database.sqlalchemy_url())
    with Session(engine) as session, session.begin():
        first = stepline.sqlalchemy.start(session, client, "f", {"n": 1}).run_id
        second = stepline.sqlalchemy.send(session, client, stepline.Event(name="a/b"))
        third = stepline.sqlalchemy.start(session, client, "f", {"n": 3}).run_id
    engine.dispose()

    async def more() -> list[str]:
        aengine = create_async_engine(database.sqlalchemy_url(asynchronous=True))
        async with aengine.begin() as connection:
            fourth = await stepline.sqlalchemy.start_async(connection, client, "f", {"n": 4})
            fifth = await stepline.sqlalchemy.send_async(
                connection, client, [stepline.Event(name="a/c"), stepline.Event(name="a/d")]
            )
        await aengine.dispose()
        return [fourth.run_id, *fifth]

    later = asyncio.run(more())
    bodies = [json.loads(r["body"]) for r in database.rows()]
    assert [b.get("run_id") for b in bodies] == [first, None, third, later[0], None]
    assert event_ids.seeded(bodies[1]["seed"], 1) == second
    assert event_ids.seeded(bodies[4]["seed"], 2) == later[1:]
    assert [e["name"] for e in bodies[4]["events"]] == ["a/c", "a/d"]


def shape(url: str) -> dict[str, Any]:
    """What matters of the outbox table as the database reports it."""
    engine = sa.create_engine(url)
    inspector = sa.inspect(engine)
    columns = {
        c["name"]: (c["nullable"], type(c["type"]).__name__.upper())
        for c in inspector.get_columns("stepline_outbox")
    }
    found = {
        "columns": columns,
        "pk": inspector.get_pk_constraint("stepline_outbox")["constrained_columns"],
        "indexes": sorted(
            (i["name"], tuple(i["column_names"])) for i in inspector.get_indexes("stepline_outbox")
        ),
    }
    engine.dispose()
    return found


def test_the_sqlalchemy_table_is_the_plain_ddls(
    database: Database, tables: sa.Table, tmp_path: Path
) -> None:
    with fresh(database.dialect, tmp_path / "other") as plain:
        plain.create_table()
        assert shape(database.sqlalchemy_url()) == shape(plain.sqlalchemy_url())


def test_outbox_table_is_added_once() -> None:
    metadata = sa.MetaData()
    table = stepline.sqlalchemy.outbox_table(metadata)
    assert stepline.sqlalchemy.outbox_table(metadata) is table
    assert [c.name for c in table.columns] == [
        "id",
        "created_at",
        "kind",
        "body",
        "delivered_at",
        "attempts",
        "last_error",
    ]
    named = sa.MetaData(schema="app")
    assert stepline.sqlalchemy.outbox_table(named).fullname == "app.stepline_outbox"
