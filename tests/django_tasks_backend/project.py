"""A Django project with ``SteplineBackend`` inside the tests' one Django configuration.

Django is configured once per process (``tests/adapters/harness_django``: no database, no
apps). ``tasks_project`` adds, for the length of a ``with``: ``stepline.django`` and the
test app ``taskapp`` (its ``tasks`` module discovered), ``TASKS`` naming the backend with
``options``, a ``STEPLINE`` setting without an engine (the test's ``TestEnv`` is it), and
a migrated SQLite database of its own (the outbox's table).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from django.core.checks.registry import registry
from django.core.management import call_command
from django.test import override_settings

from tests.web.django_admin_setup import database
from tests.web.django_setup import harness

APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "stepline.django",
    "tests.django_tasks_backend.taskapp",
]
BACKEND = "stepline.django.tasks.SteplineBackend"
QUEUES = ["default", "serial"]
STEPLINE = {"APP_ID": "tasks", "DEV": True}


def tasks_setting(**options: Any) -> dict[str, Any]:
    """``TASKS``: the ``default`` backend is Stepline's, its ``OPTIONS`` being ``options``."""
    return {"default": {"BACKEND": BACKEND, "QUEUES": QUEUES, "OPTIONS": options}}


def import_tasks() -> ModuleType:
    """The test app's tasks module, imported (once) with the backend in ``TASKS``: each
    ``@task`` asks the backend to check it."""
    harness().configure()
    with override_settings(TASKS=tasks_setting()):
        return importlib.import_module("tests.django_tasks_backend.taskapp.tasks")


@contextlib.contextmanager
def tasks_project(file: Path, **options: Any) -> Iterator[None]:
    """The project above, its ``default`` backend's ``OPTIONS`` being ``options``."""
    harness().configure()
    tasks = tasks_setting(**options)
    # auth's system checks, registered when it is ready, would fail other tests' checks
    checks = set(registry.registered_checks), set(registry.deployment_checks)
    try:
        with (
            database(file),
            override_settings(TASKS=tasks, STEPLINE=STEPLINE),
            override_settings(INSTALLED_APPS=APPS),
        ):
            call_command("migrate", verbosity=0, interactive=False)
            yield
    finally:
        registry.registered_checks, registry.deployment_checks = checks
