"""The relay loop in process, on real databases and a real (embedded) engine.

What the process tests do not show: a row the engine rejects is retried on its own backoff
without holding up the rows after it; delivered rows are deleted after a day; on Postgres
and MariaDB one relay delivers while another stands by; what each engine answer means.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import stepline
import stepline.outbox
from stepline.outbox import _relay, _relay_db, _relay_deliver
from stepline.outbox._relay_deliver import DeliveryOutcome
from tests._support import refusing
from tests._support.outbox_db import Database, fresh
from tests._support.outbox_shop import ORDER_PLACED, Shop
from tests._support.polling import wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@contextlib.contextmanager
def relay_for(db: Database, shop: Shop, clock: Clock) -> Iterator[_relay.Relay]:
    connection, dialect = _relay_db.connect(db.url)
    deliverer = _relay_deliver.HttpDeliverer("http://127.0.0.1", event_key="k", http=shop.http)
    relay = _relay.Relay(_relay_db.OutboxDb(connection, dialect), deliverer.deliver, clock=clock)
    try:
        yield relay
    finally:
        relay.close()


def write(db: Database, shop: Shop, *functions: str) -> list[str]:
    """One start per function id, in one transaction; the run ids promised."""
    with contextlib.closing(db.connect()) as connection:
        ids = [stepline.outbox.start(connection, shop.client, f, {}).run_id for f in functions]
        connection.commit()
    return ids


def test_a_rejected_row_is_retried_later_and_does_not_block_the_rows_after_it(
    database: Database, shop: Shop
) -> None:
    database.create_table()
    clock = Clock()
    [_, good] = write(database, shop, "no-such-function", "process-order")
    with relay_for(database, shop, clock) as relay:
        assert relay.step() == (1, True)
        bad_row, good_row = database.rows()
        assert good_row["delivered_at"] is not None
        assert good in {run.run_id for run in shop.runs()}
        assert bad_row["delivered_at"] is None
        assert bad_row["attempts"] == 1
        assert bad_row["last_error"].startswith("404 ")
        assert relay.step() == (0, True)  # not again before its backoff...
        assert database.rows()[0]["attempts"] == 1
        clock.now += 1.5  # ...but once it is over (1 s, then 2 s, 4 s...)
        assert relay.step() == (0, True)
        assert database.rows()[0]["attempts"] == 2
        clock.now += 1.5
        assert relay.step() == (0, True)
        assert database.rows()[0]["attempts"] == 2  # the second wait is 2 s
        assert relay.stats.rejected == 2
        relay.housekeeping()
        assert relay.stats.backlog == 1


def test_delivered_rows_are_deleted_after_a_day(database: Database, shop: Shop) -> None:
    database.create_table()
    clock = Clock()
    write(database, shop, "process-order", "process-order")
    with relay_for(database, shop, clock) as relay:
        assert relay.step() == (2, True)
        relay.housekeeping()
        assert len(database.rows()) == 2  # delivered, kept for a day
        write(database, shop, "process-order")
        clock.now += 86_400 + relay.settings.purge_interval
        relay.housekeeping()
        [left] = database.rows()  # the two delivered rows went; the pending one stays
        assert left["delivered_at"] is None
        assert relay.stats.backlog == 1
    wait_until(lambda: len(shop.runs()) == 2)


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_one_relay_delivers_while_another_stands_by(
    dialect: str, tmp_path: Path, shop: Shop
) -> None:
    with fresh(dialect, tmp_path) as db:
        db.create_table()
        write(db, shop, "process-order", "process-order")
        first = _relay_db.OutboxDb(*_relay_db.connect(db.url))
        second = _relay_db.OutboxDb(*_relay_db.connect(db.url))
        try:
            claimed = first.claim(10)
            assert claimed is not None
            assert [row.kind for row in claimed] == ["start", "start"]
            assert second.claim(10) is None  # the first holds the relay lock: stand by
            with fresh(dialect, tmp_path / "other") as other_db:  # another app's outbox
                other_db.create_table()
                other = _relay_db.open_url(other_db.url)
                try:
                    assert other.claim(10) == []  # not held up by the first app's relay
                    other.abandon()
                finally:
                    other.close()
            first.finish([claimed[0].id], [], 1.0)
            again = second.claim(10)
            assert again is not None
            assert [row.id for row in again] == [claimed[1].id]
            second.abandon()
        finally:
            first.close()
            second.close()


@pytest.mark.parametrize(
    ("kind", "status", "text", "expected"),
    [
        ("event", 200, '{"ids": []}', DeliveryOutcome.DELIVERED),
        ("start", 201, "{}", DeliveryOutcome.DELIVERED),
        # the engine decided
        ("start", 409, '{"error": "rate limited"}', DeliveryOutcome.DELIVERED),
        ("start", 409, '{"code": "run_id_taken"}', DeliveryOutcome.REJECTED),
        ("start", 404, '{"error": "not registered"}', DeliveryOutcome.REJECTED),
        ("event", 400, '{"error": "bad"}', DeliveryOutcome.REJECTED),
        # the relay is at fault
        ("event", 401, '{"error": "event key"}', DeliveryOutcome.UNAVAILABLE),
        ("start", 429, "", DeliveryOutcome.UNAVAILABLE),
        ("start", 503, "", DeliveryOutcome.UNAVAILABLE),
    ],
)
def test_what_an_answer_means_for_the_row(
    kind: str, status: int, text: str, expected: DeliveryOutcome
) -> None:
    assert _relay_deliver.outcome(kind, status, text).outcome is expected


def test_an_unreadable_row_is_rejected_not_fatal() -> None:
    deliverer = _relay_deliver.HttpDeliverer(refusing.url(), event_key="k")
    try:
        assert deliverer.deliver("event", "{not json").outcome is DeliveryOutcome.REJECTED
        assert deliverer.deliver("other", json.dumps({})).outcome is DeliveryOutcome.REJECTED
        # nothing listens there: the engine is unavailable, not the row at fault
        event = {"events": [{"name": ORDER_PLACED}], "seed": "1,AAAAAAAAAAAAAA=="}
        assert deliverer.deliver("event", json.dumps(event)).outcome is DeliveryOutcome.UNAVAILABLE
    finally:
        deliverer.close()


@pytest.mark.parametrize(
    ("url", "dialect"),
    [
        ("/tmp/app.db", "sqlite"),
        ("sqlite:///app.db", "sqlite"),
        ("postgresql+psycopg://u@h/db", "postgresql"),
        ("postgres://u@h/db", "postgresql"),
        ("mariadb://root@h/db", "mysql"),
        ("mysql+pymysql://root@h/db", "mysql"),
    ],
)
def test_the_dialect_of_a_url(url: str, dialect: str) -> None:
    assert _relay_db.dialect_of_url(url) == dialect


SIGNING_KEY = "signkey-prod-" + "a1" * 32
EVENT_KEY = "relay-event-key-" + "b2" * 16
RUN_ID = "01JZZZZZZZZZZZZZZZZZZZZZZZ"
SEED = "1800000000000,AAECAwQFBgcICQ=="


def test_a_production_engine_takes_rows_with_the_relays_keys_and_refuses_them_without(
    tmp_path: Path,
) -> None:
    from starlette.testclient import TestClient

    from stepline._protocol import signing
    from stepline.engine import Engine, EngineSettings
    from stepline.engine._http.api import build_app

    from .relay_support import registration

    settings = EngineSettings(
        mode="start",
        database_url=str(tmp_path / "engine.db"),
        signing_keys=(SIGNING_KEY,),
        event_keys=(EVENT_KEY,),
    )
    app = build_app(Engine(settings))
    with TestClient(app, base_url="http://127.0.0.1") as http:
        bearer = {"Authorization": signing.bearer_token(SIGNING_KEY)}
        reply = http.post("/fn/register", json=registration(), headers=bearer)
        assert reply.status_code == 200, reply.text
        start = json.dumps({"function_id": "shop-process-order", "data": {}, "run_id": RUN_ID})
        event = json.dumps({"events": [{"name": ORDER_PLACED, "data": {}}], "seed": SEED})

        def deliverer(**keys: str) -> _relay_deliver.HttpDeliverer:
            return _relay_deliver.HttpDeliverer("http://127.0.0.1", http=http, **keys)

        # without the keys the relay is at fault, not the row: it backs off, nothing skipped
        keyless = deliverer(event_key="wrong")
        assert keyless.deliver("start", start).outcome is DeliveryOutcome.UNAVAILABLE
        assert keyless.deliver("event", event).outcome is DeliveryOutcome.UNAVAILABLE
        rows = [_relay_db.Pending(1, "start", start, 0), _relay_db.Pending(2, "event", event, 0)]
        assert [a.outcome for a in keyless.deliver_batch(rows)] == [DeliveryOutcome.UNAVAILABLE]
        keyed = deliverer(event_key=EVENT_KEY, signing_key=SIGNING_KEY)
        assert (
            keyed.deliver_batch(rows) == [_relay_deliver.Delivered(DeliveryOutcome.DELIVERED)] * 2
        )
        assert keyed.deliver("start", start) == _relay_deliver.Delivered(DeliveryOutcome.DELIVERED)
        assert keyed.deliver("event", event) == _relay_deliver.Delivered(DeliveryOutcome.DELIVERED)
        runs = http.get("/v1/runs", headers=bearer).json()["data"]
        assert RUN_ID in {run["run_id"] for run in runs}
        assert len(runs) == 2  # the started run, and the event's


@pytest.mark.postgres
def test_a_relay_whose_connection_is_cut_reconnects_and_goes_on(tmp_path: Path, shop: Shop) -> None:
    import threading

    import psycopg

    with fresh("postgresql", tmp_path) as db:
        db.create_table()
        url = db.url
        outbox = _relay_db.open_url(url)
        deliverer = _relay_deliver.HttpDeliverer("http://127.0.0.1", event_key="k", http=shop.http)
        settings = _relay.RelaySettings(poll_interval=0.05, backoff=0.01)
        relay = _relay.Relay(outbox, deliverer.deliver, settings)
        thread = threading.Thread(target=relay.run)
        thread.start()
        try:
            write(db, shop, "process-order")
            wait_until(lambda: relay.stats.delivered == 1)
            cut = outbox.connection
            with psycopg.connect(url, autocommit=True) as admin:  # a server restart, for it
                admin.execute("SELECT pg_terminate_backend(%s)", (cut.info.backend_pid,))
            write(db, shop, "process-order")
            wait_until(lambda: relay.stats.delivered == 2, message="delivery after the cut")
            assert outbox.connection is not cut
        finally:
            relay.stop()
            thread.join(10)
            relay.close()
        assert all(row["delivered_at"] is not None for row in db.rows())


def pending_rows(db: Database) -> list[_relay_db.Pending]:
    return [
        _relay_db.Pending(r["id"], r["kind"], r["body"], r["attempts"])
        for r in db.rows()
        if r["delivered_at"] is None
    ]


@pytest.mark.parametrize("route", ["batch", "no batch route (an older engine)"])
def test_rows_go_in_batches_and_without_the_route_one_by_one(
    route: str, tmp_path: Path, shop: Shop
) -> None:
    from stepline.engine._relay import http as relay_http

    with fresh("sqlite", tmp_path) as db:
        db.create_table()
        [_, good] = write(db, shop, "no-such-function", "process-order")
        with contextlib.closing(db.connect()) as connection:
            event = stepline.Event(name=ORDER_PLACED, data={"order_id": 3})
            [event_id] = stepline.outbox.send(connection, shop.client, event)
            connection.commit()
        http = shop.http
        if route != "batch":
            api = shop.engine.wsgi_app()  # the same engine, minus the batch route
            running = shop.engine._running
            assert running is not None
            app = running.api
            app.router.routes = [r for r in app.router.routes if r.path != relay_http.PATH]
            http = httpx.Client(transport=httpx.WSGITransport(app=api), base_url="http://127.0.0.1")
        deliverer = _relay_deliver.HttpDeliverer("http://127.0.0.1", event_key="k", http=http)
        answers = deliverer.deliver_batch(pending_rows(db))
        assert [a.outcome for a in answers] == [
            DeliveryOutcome.REJECTED,
            DeliveryOutcome.DELIVERED,
            DeliveryOutcome.DELIVERED,
        ]
        assert "not registered" in (answers[0].note or "")
        assert deliverer.batches is (route == "batch")
        assert good in {run.run_id for run in shop.runs()}
        # delivered again (a relay killed before marking): the same, nothing twice
        again = deliverer.deliver_batch(pending_rows(db)[1:])
        assert [a.outcome for a in again] == [DeliveryOutcome.DELIVERED, DeliveryOutcome.DELIVERED]
        wait_until(lambda: len(shop.runs()) == 2)
        runs = shop.runs()
        assert sorted(len(r.event_ids) for r in runs) == [1, 1]
        assert any(r.event_ids == (event_id,) for r in runs)


def test_the_batch_route_refuses_what_is_not_a_batch(shop: Shop) -> None:
    from stepline.engine._relay import http as relay_http

    for body in ({}, {"rows": []}, {"rows": "x"}, {"rows": [{}] * (relay_http.MAX_ROWS + 1)}):
        reply = shop.http.post(relay_http.PATH, json=body)
        assert reply.status_code == 400, reply.text
    reply = shop.http.post(relay_http.PATH, json={"rows": [{"kind": "x", "body": "{"}, 7]})
    assert reply.status_code == 200
    assert [a["outcome"] for a in reply.json()["data"]] == ["rejected", "rejected"]
