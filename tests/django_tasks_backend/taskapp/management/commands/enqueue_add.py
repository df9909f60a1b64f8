"""``manage.py enqueue_add A B``: enqueue ``add`` and print the result's id."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from tests.django_tasks_backend.taskapp.tasks import add


class Command(BaseCommand):
    help = "Enqueue add(a, b) and print the task result's id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("a", type=int)
        parser.add_argument("b", type=int)

    def handle(self, *args: Any, **options: Any) -> None:
        result = add.enqueue(options["a"], options["b"])
        self.stdout.write(result.id)
