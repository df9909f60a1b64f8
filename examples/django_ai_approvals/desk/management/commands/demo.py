"""``manage.py demo [addrport] [--noreload]``: the databases, a staff user, then runserver.

The staff user (``reviewer``, password ``DESK_PASSWORD`` or ``reviewer``) is not a
superuser: it has the permissions the approvals inbox needs (``stepline.view_approval``,
``stepline.decide_approval``) and those to look at runs, events and functions.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

USERNAME = "reviewer"
PERMISSIONS = ("view_approval", "decide_approval", "view_run", "view_event", "view_function")


class Command(BaseCommand):
    help = "Migrate, create the staff user who decides approvals, and run the server."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")
        parser.add_argument("--noreload", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("demo makes a user with a known password: DEBUG only")
        call_command("migrate", verbosity=0, interactive=False)
        password = os.environ.get("DESK_PASSWORD", USERNAME)
        user, made = User.objects.get_or_create(username=USERNAME, defaults={"is_staff": True})
        if made:
            user.set_password(password)
            user.save()
            user.user_permissions.set(
                Permission.objects.filter(
                    content_type__app_label="stepline", codename__in=PERMISSIONS
                )
            )
        addrport = str(options["addrport"])
        host = addrport if ":" in addrport else f"127.0.0.1:{addrport}"
        self.stdout.write(
            f"The approvals inbox: http://{host}/admin/stepline/approval/ "
            f"(log in as {USERNAME}, password {password if made else '(as set before)'})"
        )
        call_command("runserver", addrport, use_reloader=not options["noreload"])
