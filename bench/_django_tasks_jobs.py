"""The tasks ``django_tasks_bench.py`` enqueues: the same trivial work on both backends."""

from __future__ import annotations

try:  # Django 6.0+
    from django.tasks import task
except ImportError:  # Django 5.2: the backport
    from django_tasks import task  # type: ignore[no-redef]


@task()
def add(a: int, b: int) -> int:
    """Two numbers added: the task's own work is nothing next to the backend's."""
    return a + b


@task()
def measure(payload: str) -> int:
    """The length of a 1 KB argument: what the backend costs when the payload is not tiny."""
    return len(payload)
