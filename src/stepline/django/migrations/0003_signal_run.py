"""The permission to send a signal to a run from the Django admin: ``stepline.signal_run``.

``Run`` is still unmanaged with no table: only its options change, so only the new
permission lands in the database (``migrate`` creates it with the others).
"""

from __future__ import annotations

from typing import ClassVar

from django.db import migrations


class Migration(migrations.Migration):
    dependencies: ClassVar[list[tuple[str, str]]] = [("stepline", "0002_admin")]

    operations: ClassVar[list[migrations.operations.base.Operation]] = [
        migrations.AlterModelOptions(
            name="run",
            options={
                "default_permissions": ("view",),
                "managed": False,
                "permissions": (
                    ("cancel_run", "Can cancel runs"),
                    ("rerun_run", "Can rerun and replay runs"),
                    ("signal_run", "Can send signals to runs"),
                ),
            },
        ),
    ]
