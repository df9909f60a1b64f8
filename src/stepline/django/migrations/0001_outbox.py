"""The outbox table, ``stepline_outbox`` (the same table as ``stepline.outbox.ddl``'s)."""

from __future__ import annotations

from typing import ClassVar

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies: ClassVar[list[tuple[str, str]]] = []

    operations: ClassVar[list[migrations.operations.base.Operation]] = [
        migrations.CreateModel(
            name="OutboxMessage",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("created_at", models.FloatField()),
                ("kind", models.CharField(max_length=16)),
                ("body", models.TextField()),
                ("delivered_at", models.FloatField(null=True)),
                ("attempts", models.IntegerField(default=0, db_default=0)),
                ("last_error", models.TextField(null=True)),
            ],
            options={
                "db_table": "stepline_outbox",
                "indexes": [
                    models.Index(fields=["delivered_at", "id"], name="stepline_outbox_pending")
                ],
            },
        ),
    ]
