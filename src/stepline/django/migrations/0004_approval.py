"""The Django admin's approvals inbox: ``Approval``, unmanaged with no table.

Only its content type and permissions (``view_approval``, ``decide_approval``) land in
the database.
"""

from __future__ import annotations

from typing import ClassVar

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies: ClassVar[list[tuple[str, str]]] = [("stepline", "0003_signal_run")]

    operations: ClassVar[list[migrations.operations.base.Operation]] = [
        migrations.CreateModel(
            name="Approval",
            fields=[
                (
                    "id",
                    models.CharField(max_length=200, primary_key=True, serialize=False),
                )
            ],
            options={
                "db_table": "stepline_admin_approval",
                "managed": False,
                "default_permissions": ("view",),
                "permissions": (("decide_approval", "Can approve and reject tool calls"),),
            },
        ),
    ]
