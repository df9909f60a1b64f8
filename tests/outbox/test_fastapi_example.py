"""docs/outbox-sqlalchemy.md's FastAPI endpoint, as written there, on async SQLite.

No ``from __future__ import annotations``: FastAPI reads the endpoint's annotations, and
its dependency is local to ``build``.
"""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import stepline
import stepline.sqlalchemy
from tests._support.outbox_db import Database
from tests._support.outbox_shop import Shop


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    total: Mapped[int]


stepline.sqlalchemy.outbox_table(Base.metadata)


def build(url: str, client: stepline.Client) -> tuple[FastAPI, object]:
    engine = create_async_engine(url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def session() -> AsyncIterator[AsyncSession]:
        async with sessions() as s:
            yield s

    app = FastAPI()

    @app.post("/orders")
    async def place_order(
        total: int, db: Annotated[AsyncSession, Depends(session)]
    ) -> dict[str, object]:
        async with db.begin():
            order = Order(total=total)
            db.add(order)
            await db.flush()
            run = await stepline.sqlalchemy.start_async(
                db, client, "process-order", {"order_id": order.id}
            )
            if total < 0:
                raise ValueError("refused after the writes: the transaction rolls back")
        return {"order": order.id, "run_id": run.run_id}

    return app, engine


def test_the_documented_endpoint_commits_the_order_and_its_run(shop: Shop, tmp_path: Path) -> None:
    database = Database("sqlite", str(tmp_path / "app.db"))
    app, engine = build(database.sqlalchemy_url(asynchronous=True), shop.client)

    async def create() -> None:
        async with engine.begin() as connection:  # type: ignore[attr-defined]
            await connection.run_sync(Base.metadata.create_all)

    asyncio.run(create())
    with TestClient(app, raise_server_exceptions=False) as http:
        placed = http.post("/orders", params={"total": 250})
        refused = http.post("/orders", params={"total": -1})
    asyncio.run(engine.dispose())  # type: ignore[attr-defined]
    assert placed.status_code == 200, placed.text
    assert refused.status_code == 500
    run_id = placed.json()["run_id"]
    assert [row["kind"] for row in database.rows()] == ["start"]  # none for the refused one
    assert shop.deliver(database) == [run_id]
    assert shop.client.get_run_sync(run_id).result(timeout=20) == {"order": placed.json()["order"]}
