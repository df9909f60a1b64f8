"""Django's ``task`` and ``TaskContext``: ``django.tasks``, else the ``django_tasks`` backport."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.tasks import TaskContext, task
else:
    try:
        from django.tasks import TaskContext, task
    except ImportError:
        from django_tasks import TaskContext, task

__all__ = ["TaskContext", "task"]
