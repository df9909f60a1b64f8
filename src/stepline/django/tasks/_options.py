"""A ``SteplineBackend``'s ``OPTIONS``, checked and frozen once.

Example::

    TASKS = {
        "default": {
            "BACKEND": "stepline.django.tasks.SteplineBackend",
            "QUEUES": ["default", "emails"],
            "OPTIONS": {
                "RETRIES": 3,                                # every task (engine default: 4)
                "TASK_RETRIES": {"shop.tasks.sync_crm": 10},  # one task, by module path
                "QUEUE_CONCURRENCY": {"emails": 5},          # at most 5 at once in "emails"
                "MODULES": ["shop.jobs"],                    # besides each app's tasks.py
            },
        }
    }
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS

__all__ = ["MAX_RETRIES", "BackendOptions", "from_params"]

#: The engine's ceiling for retries after the first attempt.
MAX_RETRIES = 20

_KNOWN = frozenset(
    ("RETRIES", "TASK_RETRIES", "QUEUE_CONCURRENCY", "MODULES", "AUTODISCOVER", "DATABASE")
)


@dataclasses.dataclass(frozen=True, slots=True)
class BackendOptions:
    """``TASKS[alias]["OPTIONS"]``, checked.

    Attributes:
        retries: retries after a failed attempt for every task (None: the engine's default).
        task_retries: the same per task, by the task's module path (``shop.tasks.send``).
        queue_concurrency: the most tasks of a queue that run at once, by queue name.
        modules: modules to import for their tasks, besides each app's ``tasks`` module.
        autodiscover: import each installed app's ``tasks`` module.
        database: the alias whose open transaction makes ``enqueue`` go through the outbox.
    """

    retries: int | None = None
    task_retries: Mapping[str, int] = dataclasses.field(default_factory=dict)
    queue_concurrency: Mapping[str, int] = dataclasses.field(default_factory=dict)
    modules: tuple[str, ...] = ()
    autodiscover: bool = True
    database: str = DEFAULT_DB_ALIAS

    def retries_of(self, module_path: str) -> int | None:
        """The retries of the task at ``module_path``."""
        return self.task_retries.get(module_path, self.retries)

    def limit_groups(self) -> list[tuple[int, tuple[str, ...]]]:
        """The limited queues grouped by limit, smallest limit first."""
        groups: dict[int, list[str]] = {}
        for queue, limit in sorted(self.queue_concurrency.items()):
            groups.setdefault(limit, []).append(queue)
        return [(limit, tuple(queues)) for limit, queues in sorted(groups.items())]


def from_params(alias: str, options: object, queues: set[str]) -> BackendOptions:
    """Check a backend's ``OPTIONS``.

    Args:
        alias: the backend's alias in ``TASKS`` (for messages).
        options: the ``OPTIONS`` value.
        queues: the backend's ``QUEUES`` (empty: any queue name).

    Raises:
        ImproperlyConfigured: an unknown key, a value of the wrong type or out of range,
            a limit for a queue the backend does not have, or more than two different
            queue limits (a function carries at most two concurrency limits).
    """
    where = f"TASKS[{alias!r}]['OPTIONS']"
    if not isinstance(options, Mapping):
        raise ImproperlyConfigured(f"{where} must be a dict")
    unknown = sorted(str(key) for key in options if key not in _KNOWN)
    if unknown:
        raise ImproperlyConfigured(f"{where} has unknown keys {unknown}; known: {sorted(_KNOWN)}")
    retries = options.get("RETRIES")
    if retries is not None:
        retries = _retries(f"{where}['RETRIES']", retries)
    task_retries = {
        str(path): _retries(f"{where}['TASK_RETRIES'][{path!r}]", value)
        for path, value in _mapping(f"{where}['TASK_RETRIES']", options.get("TASK_RETRIES"))
    }
    limits: dict[str, int] = {}
    for queue, limit in _mapping(f"{where}['QUEUE_CONCURRENCY']", options.get("QUEUE_CONCURRENCY")):
        name = f"{where}['QUEUE_CONCURRENCY'][{queue!r}]"
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ImproperlyConfigured(f"{name} must be a whole number of at least 1")
        if queues and queue not in queues:
            raise ImproperlyConfigured(f"{name}: the backend has no queue {queue!r} in QUEUES")
        limits[str(queue)] = limit
    distinct = sorted(set(limits.values()))
    if len(distinct) > 2:
        raise ImproperlyConfigured(
            f"{where}['QUEUE_CONCURRENCY'] may use at most two different limits "
            f"(each is a concurrency limit of every task's function), got {distinct}"
        )
    modules = options.get("MODULES") or ()
    if isinstance(modules, str) or not isinstance(modules, Sequence):
        raise ImproperlyConfigured(f"{where}['MODULES'] must be a list of module paths")
    if not all(isinstance(m, str) and m for m in modules):
        raise ImproperlyConfigured(f"{where}['MODULES'] must be a list of module paths")
    autodiscover = options.get("AUTODISCOVER", True)
    if not isinstance(autodiscover, bool):
        raise ImproperlyConfigured(f"{where}['AUTODISCOVER'] must be True or False")
    database = options.get("DATABASE", DEFAULT_DB_ALIAS)
    if not isinstance(database, str) or not database:
        raise ImproperlyConfigured(f"{where}['DATABASE'] must be a database alias")
    return BackendOptions(
        retries=retries,
        task_retries=task_retries,
        queue_concurrency=limits,
        modules=tuple(modules),
        autodiscover=autodiscover,
        database=database,
    )


def _retries(where: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RETRIES:
        raise ImproperlyConfigured(f"{where} must be a whole number from 0 to {MAX_RETRIES}")
    return value


def _mapping(where: str, value: object) -> list[tuple[Any, Any]]:
    if value is None:
        return []
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured(f"{where} must be a dict")
    return list(value.items())
