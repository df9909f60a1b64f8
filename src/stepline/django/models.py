"""The outbox table as a Django model (app label ``stepline``): ``manage.py migrate`` creates it.

Add ``"stepline.django"`` to ``INSTALLED_APPS``; ``stepline.django.send_on_commit`` and
``start_in_transaction`` write rows of it inside your transaction, the relay delivers them.

``Run``, ``Event``, ``Function`` and ``Approval`` are unmanaged and have no table: they
exist for the Django admin (its sections, content types and permissions); the admin reads
runs, events, functions and approvals from the engine through the project's client
(``stepline.django.admin``).
"""

from __future__ import annotations

from django.db import models

__all__ = ["Approval", "Event", "Function", "OutboxMessage", "Run"]


class OutboxMessage(models.Model):
    """One row of ``stepline_outbox``: events to send or a run to start, once committed."""

    id: models.BigAutoField[int, int] = models.BigAutoField(primary_key=True)
    created_at: models.FloatField[float, float] = models.FloatField()
    kind: models.CharField[str, str] = models.CharField(max_length=16)
    body: models.TextField[str, str] = models.TextField()
    delivered_at: models.FloatField[float | None, float | None] = models.FloatField(null=True)
    attempts: models.IntegerField[int, int] = models.IntegerField(default=0, db_default=0)
    last_error: models.TextField[str | None, str | None] = models.TextField(null=True)

    class Meta:
        app_label = "stepline"
        db_table = "stepline_outbox"
        indexes = (models.Index(fields=["delivered_at", "id"], name="stepline_outbox_pending"),)

    def __str__(self) -> str:
        state = "delivered" if self.delivered_at is not None else "pending"
        return f"outbox {self.id} ({self.kind}, {state})"


class Run(models.Model):
    """A run in the Django admin: permissions ``view_run``, ``cancel_run``, ``rerun_run``
    and ``signal_run``.

    No table: the admin reads runs from the engine. ``rerun_run`` allows rerun and replay;
    ``signal_run`` sending a signal to a run that waits for it.
    """

    id: models.CharField[str, str] = models.CharField(primary_key=True, max_length=64)

    class Meta:
        app_label = "stepline"
        managed = False
        db_table = "stepline_admin_run"
        default_permissions = ("view",)
        permissions = (
            ("cancel_run", "Can cancel runs"),
            ("rerun_run", "Can rerun and replay runs"),
            ("signal_run", "Can send signals to runs"),
        )

    def __str__(self) -> str:
        return f"run {self.id}"


class Event(models.Model):
    """An event in the Django admin: permission ``view_event``. No table (read from the engine)."""

    id: models.CharField[str, str] = models.CharField(primary_key=True, max_length=64)

    class Meta:
        app_label = "stepline"
        managed = False
        db_table = "stepline_admin_event"
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"event {self.id}"


class Function(models.Model):
    """A function in the Django admin: permissions ``view_function`` and ``pause_function``.

    No table (read from the engine); ``pause_function`` allows pause and resume.
    """

    id: models.CharField[str, str] = models.CharField(primary_key=True, max_length=255)

    class Meta:
        app_label = "stepline"
        managed = False
        db_table = "stepline_admin_function"
        default_permissions = ("view",)
        permissions = (("pause_function", "Can pause and resume functions"),)

    def __str__(self) -> str:
        return f"function {self.id}"


class Approval(models.Model):
    """A durable agent's tool call waiting for a person, in the Django admin: permissions
    ``view_approval`` (the inbox) and ``decide_approval`` (approve or reject).

    No table (read from the engine, ``client.approvals``); the id is the approval's.
    """

    id: models.CharField[str, str] = models.CharField(primary_key=True, max_length=200)

    class Meta:
        app_label = "stepline"
        managed = False
        db_table = "stepline_admin_approval"
        default_permissions = ("view",)
        permissions = (("decide_approval", "Can approve and reject tool calls"),)

    def __str__(self) -> str:
        return f"approval {self.id}"
