"""A Django ``TestCase`` using ``SteplineTestMixin``, run by ``test_django.py`` in a child process.

Django is configured once per process, so this runs apart from the rest of the suite.
Usage: ``python django_case.py <sqlite file>``.
"""

from __future__ import annotations

import datetime as dt
import sys
import unittest

import django
from django.conf import settings

settings.configure(
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": sys.argv[1]}},
    INSTALLED_APPS=[],
    USE_TZ=True,
    SECRET_KEY="stepline-tests-not-secret",
)
django.setup()

import django.db  # noqa: E402
import django.test  # noqa: E402

import stepline  # noqa: E402
from stepline.testing import SteplineTestMixin  # noqa: E402

client = stepline.Client(app_id="django-shop", is_production=False)


def order_total(order_id: int) -> int | None:
    with django.db.connection.cursor() as cursor:
        cursor.execute("SELECT total FROM orders WHERE id = %s", [order_id])
        row = cursor.fetchone()
    return None if row is None else int(row[0])


@client.function(id="invoice", trigger=stepline.TriggerEvent(event="shop/order.placed"))
def invoice(ctx: stepline.SyncContext) -> dict[str, object]:
    order_id = int(ctx.event.data["order_id"])
    total = ctx.step.run("load-order", order_total, order_id)
    ctx.step.sleep("grace-period", dt.timedelta(days=14))
    return {"order": order_id, "total": total}


class InvoiceTests(SteplineTestMixin, django.test.TestCase):
    stepline_client = client
    stepline_functions = (invoice,)

    @classmethod
    def setUpClass(cls) -> None:
        with django.db.connection.cursor() as cursor:
            cursor.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, total INT)")
        super().setUpClass()

    def test_the_function_sees_rows_of_the_open_transaction(self) -> None:
        with django.db.connection.cursor() as cursor:
            cursor.execute("INSERT INTO orders (id, total) VALUES (1, 250)")
        run = self.stepline.start_sync(invoice, {"order_id": 1})
        assert run.result_sync() == {"order": 1, "total": 250}
        assert self.stepline.step_calls(invoice, "load-order")[0].output == 250

    def test_the_rows_were_rolled_back_and_each_test_has_its_own_env(self) -> None:
        assert order_total(1) is None
        assert self.stepline.runs_sync(invoice) == []

    def test_an_event_sent_by_the_app_is_seen_too(self) -> None:
        with django.db.connection.cursor() as cursor:
            cursor.execute("INSERT INTO orders (id, total) VALUES (2, 99)")
        client.send_sync(stepline.Event(name="shop/order.placed", data={"order_id": 2}))
        (run,) = self.stepline.runs_sync(invoice)
        assert run.result_sync() == {"order": 2, "total": 99}


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
