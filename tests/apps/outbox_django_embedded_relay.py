"""Django with the embedded engine relaying the project's own database (``relay_outbox``).

``python tests/apps/outbox_django_embedded_relay.py <dialect> <url> <engine-db> <output.json>``:
``ENGINE_OPTIONS = {"relay_outbox": "django"}``; commits an order with
``start_in_transaction`` and ``send_on_commit``, then waits for both runs' results
through the handles the writers returned, and writes them to the output file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import django
from django.conf import settings

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests._support.outbox_db import Database

dialect, url, engine_db, output = sys.argv[1:5]
settings.configure(
    DATABASES={"default": Database(dialect, url).django()},
    INSTALLED_APPS=["stepline.django"],
    STEPLINE={
        "APP_ID": "shop",
        "DEV": True,
        "ENGINE": "embedded",
        "DATABASE": engine_db,
        "FUNCTIONS": "tests.apps.outbox_django_shop.functions",
        "ENGINE_OPTIONS": {"relay_outbox": "django", "poll_interval": 0.05},
    },
    USE_TZ=True,
    SECRET_KEY="stepline-tests-not-secret",
)
django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402

import stepline  # noqa: E402
import stepline.django  # noqa: E402
from tests._support.polling import wait_until  # noqa: E402

call_command("migrate", "stepline", verbosity=0)
client = stepline.django.get_client()
with transaction.atomic():
    [event_id] = stepline.django.send_on_commit(
        client, stepline.Event(name="shop/order.placed", data={"order_id": 7})
    )
    started = stepline.django.start_in_transaction(client, "process-order", {"order_id": 8})


def relayed() -> bool:  # the run exists once the engine has relayed the row
    try:
        client.get_run_sync(started.run_id).describe()
    except stepline.RunNotFoundError:
        return False
    return True


wait_until(relayed, timeout=30, message="the embedded engine to relay the start")
result = started.handle_sync().result(timeout=30)
runs, _ = client.list_runs_sync(limit=10)
by_event = [r.run_id for r in runs if tuple(r.event_ids) == (event_id,)]
Path(output).write_text(
    json.dumps(
        {
            "started": result,
            "by_event": [client.get_run_sync(r).result(timeout=30) for r in by_event],
            "runs": len(runs),
        }
    )
)
stepline.django.get_engine().stop()
