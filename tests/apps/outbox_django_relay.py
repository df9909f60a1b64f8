"""``manage.py stepline relay`` in a child process: Django writes, then relays its outbox.

``python tests/apps/outbox_django_relay.py <dialect> <url> <engine-url> <output.json>``:
migrates the ``stepline`` app, commits an order with ``send_on_commit`` and
``start_in_transaction``, writes the ids it got to the output file, then runs
``call_command("stepline", "relay")`` on Django's default connection until SIGTERM.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import django
from django.conf import settings

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests._support.outbox_db import Database

dialect, url, engine_url, output = sys.argv[1:5]
settings.configure(
    DATABASES={"default": Database(dialect, url).django()},
    INSTALLED_APPS=["stepline.django"],
    STEPLINE={"APP_ID": "shop", "DEV": True, "BASE_URL": engine_url},
    USE_TZ=True,
    SECRET_KEY="stepline-tests-not-secret",
)
django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402

import stepline  # noqa: E402
import stepline.django  # noqa: E402

call_command("migrate", "stepline", verbosity=0)
client = stepline.django.get_client()
with transaction.atomic():
    sent = stepline.django.send_on_commit(
        client, stepline.Event(name="shop/order.placed", data={"order_id": 7})
    )
    started = stepline.django.start_in_transaction(client, "process-order", {"order_id": 8})
Path(output).write_text(json.dumps({"events": sent, "run_id": started.run_id}))
call_command("stepline", "relay", "--poll-interval", "0.05")
