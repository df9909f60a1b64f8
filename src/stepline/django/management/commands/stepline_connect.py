"""``manage.py stepline_connect``: serve the project's functions over Connect.

The worker takes ``settings.STEPLINE`` as the web app does (``APP_ID``, ``FUNCTIONS``,
``BASE_URL``, the keys), calls the engine at ``BASE_URL`` and runs the calls the engine
sends over one WebSocket: nothing listens. SIGTERM or Ctrl-C drains it (the calls in
flight finish, no new one comes) and the command returns. See docs/connect.md.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from stepline import _errors
from stepline.connect import Worker
from stepline.django import _runtime

__all__ = ["Command"]


class Command(BaseCommand):
    help = (
        "Serve this project's functions (settings.STEPLINE) over Connect: one outbound "
        "WebSocket to the engine at BASE_URL; SIGTERM drains, then the command returns."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--instance-id", help="this process's name (default: host-pid)")
        parser.add_argument("--max-concurrency", type=int, help="most calls at once")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            runtime = _runtime.current()
            if runtime.config.embedded:
                raise _errors.ConfigError(
                    "settings.STEPLINE['ENGINE'] is 'embedded': Connect workers need the "
                    "engine as its own process (stepline start), at BASE_URL"
                )
            functions = runtime.functions()
            if not functions:
                raise _errors.ConfigError(
                    "no functions to serve: set settings.STEPLINE['FUNCTIONS']"
                )
            worker = Worker(
                runtime.client(),
                functions,
                instance_id=options["instance_id"],
                max_concurrency=options["max_concurrency"],
            )
            self.stdout.write(f"stepline_connect: serving {len(functions)} function(s)")
            worker.run()
        except _errors.ConfigError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write("stepline_connect: drained and stopped")
