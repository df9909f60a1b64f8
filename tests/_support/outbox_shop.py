"""The outbox tests' shop: an app with one function (``shop-process-order``, triggered by
``shop/order.placed``) on a real embedded engine, and delivery of an outbox's rows to it.

``Shop.deliver`` moves committed rows to the engine as the relay does (the event API with the
row's seed, the start route with its run id) and marks them delivered; ``Shop.relay`` runs
the real relay in process.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import httpx

import stepline
from stepline.embedded import EmbeddedEngine
from tests._support.outbox_db import Database
from tests._support.polling import wait_until

ORDER_PLACED = "shop/order.placed"


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
    """The shop's one function, ``process-order``, declared on ``client``."""

    @client.function(id="process-order", trigger=stepline.TriggerEvent(event=ORDER_PLACED))
    def process_order(ctx: stepline.SyncContext) -> dict[str, Any]:
        return {"order": ctx.event.data.get("order_id")}

    return [process_order]
