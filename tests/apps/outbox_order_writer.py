"""An app process that commits an order with an outbox send and start, then dies (SIGKILL).

``python -m tests.apps.outbox_order_writer DIALECT URL OUT``: writes one ``shop/order.placed``
event and one start of ``shop-process-order`` in one transaction with an order row,
commits, writes the ids it was given to ``OUT`` (JSON), and SIGKILLs itself before any
relay has run: the rows must still be delivered, once.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import stepline
import stepline.outbox
from tests._support.outbox_db import Database
from tests._support.outbox_shop import ORDER_PLACED


def main() -> None:
    dialect, url, out = sys.argv[1:4]
    client = stepline.Client(app_id="shop", is_production=False)
    connection = Database(dialect, url).connect()
    cursor = connection.cursor()
    cursor.execute("INSERT INTO orders (id, total) VALUES (1, 250)")
    sent = stepline.outbox.send(
        connection, client, stepline.Event(name=ORDER_PLACED, data={"order_id": 1})
    )
    started = stepline.outbox.start(connection, client, "process-order", {"order_id": 1})
    connection.commit()
    Path(out).write_text(json.dumps({"events": sent, "run_id": started.run_id}))
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main()
