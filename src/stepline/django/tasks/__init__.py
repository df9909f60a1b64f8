"""Django's Tasks framework (``django.tasks``, or the ``django_tasks`` backport) on Stepline.

::

    TASKS = {
        "default": {
            "BACKEND": "stepline.django.tasks.SteplineBackend",
            "QUEUES": ["default", "emails"],
            "OPTIONS": {"RETRIES": 3, "QUEUE_CONCURRENCY": {"emails": 5}},
        }
    }

Every task of an installed app's ``tasks`` module becomes a Stepline function (named
after the task); ``task.enqueue(...)`` starts a run of it, durable and retried, and
``get_result`` reads the run back. A ``takes_context=True`` task gets a
``SteplineTaskContext``, whose ``stepline`` is the run's context for steps inside the task
(``sync_context(context)`` / ``async_context(context)`` return it typed).
See docs/django-tasks.md.
"""

from __future__ import annotations

from stepline.django.tasks._backend import SteplineBackend as SteplineBackend
from stepline.django.tasks._functions import SteplineTaskContext as SteplineTaskContext
from stepline.django.tasks._functions import async_context as async_context
from stepline.django.tasks._functions import sync_context as sync_context

__all__ = ["SteplineBackend", "SteplineTaskContext", "async_context", "sync_context"]
