"""Django's Tasks framework: ``django.tasks`` (Django 6.0+), else the ``django_tasks`` backport.

Both have the same API; the types are read from ``django.tasks`` (django-stubs), and at
runtime the first of the two that imports is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stepline._extras import MissingExtraError

__all__ = [
    "BaseTaskBackend",
    "InvalidTask",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "normalize_json",
    "task_backends",
    "task_enqueued",
]

if TYPE_CHECKING:
    from django.tasks import Task, TaskContext, TaskResult, TaskResultStatus, task_backends
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import TaskError
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued

    def normalize_json(obj: Any) -> Any:
        """The value as JSON types (tuples become lists); TypeError for anything else."""
else:
    try:
        from django.tasks import Task, TaskContext, TaskResult, TaskResultStatus, task_backends
        from django.tasks.backends.base import BaseTaskBackend
        from django.tasks.base import TaskError
        from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
        from django.tasks.signals import task_enqueued
        from django.utils.json import normalize_json
    except ImportError:
        try:
            from django_tasks import TaskContext, TaskResult, TaskResultStatus, task_backends
            from django_tasks.backends.base import BaseTaskBackend
            from django_tasks.base import Task, TaskError
            from django_tasks.exceptions import InvalidTaskError as InvalidTask
            from django_tasks.exceptions import TaskResultDoesNotExist
            from django_tasks.signals import task_enqueued  # also forgets backends on TASKS changes
            from django_tasks.utils import normalize_json
        except ImportError as exc:
            raise MissingExtraError(
                "stepline.django.tasks needs Django 6.0+ (django.tasks) or the django-tasks "
                "backport: pip install 'stepline[django-tasks]'"
            ) from exc
