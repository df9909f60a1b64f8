"""Django writing to the outbox on a real database, run by ``test_django_outbox.py`` in a child.

Django is configured once per process, so each database gets its own process. Usage:
``python tests/apps/outbox_django_writer.py <dialect> <url> <output.json>``. It migrates the
``stepline`` app, then writes: one committed transaction (an order, an event, a start),
one rolled back, several writes in one transaction, and one write outside ``atomic()``;
the ids it got go to the output file for the parent to check against the rows and the
engine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import django
from django.conf import settings

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests._support.outbox_db import Database

dialect, url, output = sys.argv[1:4]
settings.configure(
    DATABASES={"default": Database(dialect, url).django()},
    INSTALLED_APPS=["stepline.django"],
    STEPLINE={"APP_ID": "shop", "DEV": True},
    USE_TZ=True,
    SECRET_KEY="stepline-tests-not-secret",
)
django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402

import stepline  # noqa: E402
import stepline.django  # noqa: E402
from stepline.django.models import OutboxMessage  # noqa: E402

call_command("migrate", "stepline", verbosity=0)
with connection.cursor() as cursor:
    cursor.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER NOT NULL)")

client = stepline.django.get_client()
result: dict[str, Any] = {}

with transaction.atomic():
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO orders (id, total) VALUES (%s, %s)", [7, 250])
    sent = stepline.django.send_on_commit(
        client, stepline.Event(name="shop/order.placed", data={"order_id": 7})
    )
    started = stepline.django.start_in_transaction(
        client, "process-order", {"order_id": 8}, started_by="user-1"
    )
result["committed"] = {"sent": sent, "run_id": started.run_id}
result["rows_after_commit"] = OutboxMessage.objects.count()


class Boom(Exception):
    pass


try:
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO orders (id, total) VALUES (%s, %s)", [9, 1])
        stepline.django.send_on_commit(client, stepline.Event(name="shop/order.placed"))
        stepline.django.start_in_transaction(client, "process-order", {"order_id": 9})
        raise Boom
except Boom:
    pass
result["rows_after_rollback"] = OutboxMessage.objects.count()

with transaction.atomic():
    several = [
        stepline.django.start_in_transaction(client, "process-order", {"n": 1}).run_id,
        stepline.django.send_on_commit(client, [stepline.Event(name="a/b")] * 2),
        stepline.django.start_in_transaction(client, "process-order", {"n": 3}).run_id,
    ]
result["several"] = several

# outside atomic(): autocommit, as transaction.on_commit runs at once there
result["autocommit_in_atomic_block"] = connection.in_atomic_block
result["autocommit_sent"] = stepline.django.send_on_commit(client, stepline.Event(name="a/now"))
with open(output, "w") as file:
    json.dump(result, file)
