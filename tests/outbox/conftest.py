"""The outbox tests' databases (SQLite, Postgres, MariaDB), a real engine, and delivery.

Each database fixture gives a fresh, empty database: a temp SQLite file, a new Postgres
schema, a new MariaDB database. URLs come from ``STEPLINE_TEST_POSTGRES_URL`` and
``STEPLINE_TEST_MYSQL_URL``; under ``CI=true`` a missing server fails the test, elsewhere
it skips. ``Shop.deliver`` moves committed rows to the engine as the relay does (the event API
with the row's seed, the start route with its run id) and marks them delivered;
``Shop.relay`` runs the real relay in process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sqlite3
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import stepline
from stepline.embedded import EmbeddedEngine
from stepline.outbox import ddl
from tests._support.ci import under_ci
from tests._support.polling import wait_until
from tests.engine.servers import postgres_schema

#: The MariaDB/MySQL the suites run against (a fresh database per test); CI fails without it.
MYSQL_URL = os.environ.get("STEPLINE_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
DIALECTS = ("sqlite", "postgresql", "mysql")
FAST = {"poll_interval": 0.05, "retry_scale": 0.0, "retry_jitter": 0.0}
ORDER_PLACED = "shop/order.placed"


def _unavailable(what: str, exc: Exception) -> None:
    if under_ci():
        pytest.fail(f"{what} is required under CI: {exc}")
    pytest.skip(f"no {what}: {exc}")


@contextlib.contextmanager
def mysql_database() -> Iterator[str]:
    """A ``mysql://`` URL of a new, empty database (dropped afterwards)."""
    import pymysql

    parts = urllib.parse.urlsplit(MYSQL_URL)
    name = f"t_{uuid.uuid4().hex[:16]}"
    try:
        admin = pymysql.connect(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 3306,
            user=urllib.parse.unquote(parts.username or "root"),
            password=urllib.parse.unquote(parts.password or ""),
            autocommit=True,
            connect_timeout=5,
        )
    except pymysql.err.OperationalError as exc:
        _unavailable(f"MariaDB/MySQL at {MYSQL_URL}", exc)
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {name}")
        yield urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


@dataclasses.dataclass(frozen=True)
class Database:
    """One fresh database of a dialect, reachable by DB-API, SQLAlchemy and Django."""

    dialect: str
    url: str  # sqlite: a file path; else postgresql:// or mysql://

    def connect(self) -> Any:
        """A new DB-API connection (transactions on: commit or roll back yourself)."""
        if self.dialect == "sqlite":
            return sqlite3.connect(self.url)
        if self.dialect == "postgresql":
            import psycopg

            return psycopg.connect(self.url)
        import pymysql

        parts = urllib.parse.urlsplit(self.url)
        return pymysql.connect(
            host=parts.hostname,
            port=parts.port or 3306,
            user=urllib.parse.unquote(parts.username or "root"),
            password=urllib.parse.unquote(parts.password or ""),
            database=parts.path.lstrip("/"),
        )

    def sqlalchemy_url(self, *, asynchronous: bool = False) -> str:
        """The database as a SQLAlchemy URL (sync or async driver)."""
        if self.dialect == "sqlite":
            return f"sqlite+{'aiosqlite' if asynchronous else 'pysqlite'}:///{self.url}"
        driver = {"postgresql": "psycopg", "mysql": "aiomysql" if asynchronous else "pymysql"}
        scheme, rest = self.url.split("://", 1)
        return f"{scheme}+{driver[self.dialect]}://{rest}"

    def create_table(self) -> None:
        """The outbox table, from the plain DDL."""
        with contextlib.closing(self.connect()) as connection:
            cursor = connection.cursor()
            for statement in ddl(self.dialect):
                cursor.execute(statement)
            connection.commit()

    def rows(self) -> list[dict[str, Any]]:
        """The outbox's rows in id order."""
        with contextlib.closing(self.connect()) as connection:
            cursor = connection.cursor()
            cursor.execute(
                "SELECT id, created_at, kind, body, delivered_at, attempts, last_error "
                "FROM stepline_outbox ORDER BY id"
            )
            names = [d[0] for d in cursor.description]
            found = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
            connection.rollback()
        return found

    def mark_delivered(self, row_id: int) -> None:
        with contextlib.closing(self.connect()) as connection:
            cursor = connection.cursor()
            mark = "?" if self.dialect == "sqlite" else "%s"
            cursor.execute(
                f"UPDATE stepline_outbox SET delivered_at = {mark} WHERE id = {mark}",
                (time.time(), row_id),
            )
            connection.commit()


@contextlib.contextmanager
def fresh(dialect: str, tmp_path: Path) -> Iterator[Database]:
    """A fresh database of ``dialect``."""
    if dialect == "sqlite":
        tmp_path.mkdir(parents=True, exist_ok=True)
        yield Database("sqlite", str(tmp_path / "app.db"))
    elif dialect == "postgresql":
        with postgres_schema("outbox") as url:
            yield Database("postgresql", url)
    else:
        with mysql_database() as url:
            yield Database("mysql", url)


@pytest.fixture(params=DIALECTS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh database of each dialect in turn (no outbox table yet)."""
    with fresh(request.param, tmp_path) as db:
        yield db


# -- the engine --------------------------------------------------------------------------------


@dataclasses.dataclass
class Shop:
    """An app with one function, served by a real embedded engine."""

    client: stepline.Client
    engine: EmbeddedEngine
    http: httpx.Client

    def deliver(self, db: Database) -> list[list[str] | str]:
        """Relay ``db``'s pending rows in id order, as the relay does; what the engine answered."""
        answers: list[list[str] | str] = []
        for row in db.rows():
            if row["delivered_at"] is not None:
                continue
            answers.append(self.deliver_body(row["kind"], json.loads(row["body"])))
            db.mark_delivered(row["id"])
        return answers

    def deliver_body(self, kind: str, body: dict[str, Any]) -> list[str] | str:
        if kind == "event":
            answer = self.http.post(
                "/e/NO_EVENT_KEY_SET",
                json=body["events"],
                headers={"x-inngest-event-id-seed": body["seed"]},
            )
            assert answer.status_code == 200, answer.text
            ids: list[str] = answer.json()["ids"]
            return ids
        assert kind == "start"
        payload = {k: v for k, v in body.items() if k != "function_id" and v is not None}
        answer = self.http.post(f"/v1/functions/{body['function_id']}/runs", json=payload)
        assert answer.status_code in (200, 201), answer.text
        run_id: str = answer.json()["data"]["run_id"]
        return run_id

    def relay(self, db: Database) -> int:
        """Run the real relay (``stepline.outbox._relay``) in process until ``db`` is drained."""
        from stepline.outbox import _relay, _relay_db, _relay_deliver

        connection, dialect = _relay_db.connect(db.url)
        deliverer = _relay_deliver.HttpDeliverer("http://127.0.0.1", event_key="k", http=self.http)
        relay = _relay.Relay(_relay_db.OutboxDb(connection, dialect), deliverer.deliver)
        delivered = [0]

        def drained() -> bool:
            # a batch may find the relay lock taken (it is per database, or per server
            # on MySQL: relays of other tests on the same server): it then delivers nothing
            count, available = relay.step()
            assert available
            delivered[0] += count
            return all(row["delivered_at"] is not None for row in db.rows())

        try:
            wait_until(drained, message="the relay delivering every row")
        finally:
            relay.close()
        return delivered[0]

    def runs(self) -> list[stepline.RunInfo]:
        runs, _ = self.client.list_runs_sync(limit=100)
        return runs


def shop_functions(client: stepline.Client) -> list[stepline.Function]:
    @client.function(id="process-order", trigger=stepline.TriggerEvent(event=ORDER_PLACED))
    def process_order(ctx: stepline.SyncContext) -> dict[str, Any]:
        return {"order": ctx.event.data.get("order_id")}

    return [process_order]


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    """The shop app and its embedded engine (temp SQLite), with an HTTP client on its API."""
    client = stepline.Client(app_id="shop", is_production=False)
    engine = EmbeddedEngine(
        client, shop_functions(client), database=str(tmp_path / "engine.db"), **FAST
    )
    engine.start()
    http = httpx.Client(
        transport=httpx.WSGITransport(app=engine.wsgi_app()),
        base_url="http://127.0.0.1",
        headers={"x-stepline-csrf": "1"},
    )
    try:
        yield Shop(client, engine, http)
    finally:
        http.close()
        engine.stop()
        client.close()


Deliver = Callable[[Database], list[Any]]
