"""``Run``, ``Event`` and ``Function`` for the Django admin: unmanaged, no table.

Only their content types and permissions (``view_run``, ``cancel_run``, ``rerun_run``,
``view_event``, ``view_function``, ``pause_function``) land in the database.
"""

from __future__ import annotations

from typing import ClassVar

from django.db import migrations, models


def _unmanaged(name: str, max_length: int, **options: object) -> migrations.CreateModel:
    return migrations.CreateModel(
        name=name,
        fields=[("id", models.CharField(max_length=max_length, primary_key=True, serialize=False))],
        options={
            "db_table": f"stepline_admin_{name.lower()}",
            "managed": False,
            "default_permissions": ("view",),
            **options,
        },
    )


class Migration(migrations.Migration):
    dependencies: ClassVar[list[tuple[str, str]]] = [("stepline", "0001_outbox")]

    operations: ClassVar[list[migrations.operations.base.Operation]] = [
        _unmanaged("Event", 64),
        _unmanaged(
            "Function",
            255,
            permissions=(("pause_function", "Can pause and resume functions"),),
        ),
        _unmanaged(
            "Run",
            64,
            permissions=(
                ("cancel_run", "Can cancel runs"),
                ("rerun_run", "Can rerun and replay runs"),
            ),
        ),
    ]
