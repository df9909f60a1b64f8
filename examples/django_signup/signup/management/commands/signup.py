"""``manage.py signup ada@example.com --name Ada --wait 10``: sign up from the terminal."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from signup import users, workflows


class Command(BaseCommand):
    help = "Sign a user up and start their onboarding; --wait follows it to the end."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email")
        parser.add_argument("--name", default="")
        parser.add_argument("--wait", type=float, default=0.0, help="seconds to wait")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user, handle = workflows.sign_up(options["email"], options["name"])
        except users.EmailTaken as exc:
            raise CommandError(f"{exc} has already signed up") from None
        self.stdout.write(f"user {user.id}: onboarding run {handle.run_id}")
        if options["wait"]:
            result = handle.result(timeout=options["wait"])
            self.stdout.write(self.style.SUCCESS(f"onboarded: {json.dumps(result)}"))
