"""The outbox table as a Django model (app label ``stepline``): ``manage.py migrate`` creates it.

Add ``"stepline.django"`` to ``INSTALLED_APPS``; ``stepline.django.send_on_commit`` and
``start_in_transaction`` write rows of it inside your transaction, the relay delivers them.
"""

from __future__ import annotations

from typing import Any

import django
from django.db import models

__all__ = ["OutboxMessage"]

# the contract's DEFAULT 0 in the database itself where Django can say it (5.0+); the
# writers set ``attempts`` explicitly, so older Django loses nothing without it
DB_DEFAULT: dict[str, Any] = {"db_default": 0} if django.VERSION >= (5, 0) else {}


class OutboxMessage(models.Model):
    """One row of ``stepline_outbox``: events to send or a run to start, once committed."""

    id: models.BigAutoField[int, int] = models.BigAutoField(primary_key=True)
    created_at: models.FloatField[float, float] = models.FloatField()
    kind: models.CharField[str, str] = models.CharField(max_length=16)
    body: models.TextField[str, str] = models.TextField()
    delivered_at: models.FloatField[float | None, float | None] = models.FloatField(null=True)
    attempts: models.IntegerField[int, int] = models.IntegerField(default=0, **DB_DEFAULT)
    last_error: models.TextField[str | None, str | None] = models.TextField(null=True)

    class Meta:
        app_label = "stepline"
        db_table = "stepline_outbox"
        indexes = (models.Index(fields=["delivered_at", "id"], name="stepline_outbox_pending"),)

    def __str__(self) -> str:
        state = "delivered" if self.delivered_at is not None else "pending"
        return f"outbox {self.id} ({self.kind}, {state})"
