"""A ``SteplineBackend``'s ``OPTIONS``, checked and frozen once.

Example::

    TASKS = {
        "default": {
            "BACKEND": "stepline.django.tasks.SteplineBackend",
            "QUEUES": ["default", "emails"],
            "OPTIONS": {
                "RETRIES": 3,                                # every task (engine default: 4)
                "TASK_RETRIES": {"shop.tasks.sync_crm": 10},  # one task, by module path
                "BACKOFF": {"BASE": 10, "FACTOR": 2, "MAX": 3600},  # 10 s, 20 s, 40 s...
                "TASK_BACKOFF": {"shop.tasks.sync_crm": [60, 300, 900]},  # one task
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

__all__ = ["MAX_DELAY", "MAX_RETRIES", "BackendOptions", "Backoff", "from_params"]

#: The engine's ceiling for retries after the first attempt.
MAX_RETRIES = 20
#: The longest and shortest wait before a retry the engine honours (seconds).
MAX_DELAY = 86_400
MIN_DELAY = 1

_KNOWN = frozenset(
    (
        "RETRIES",
        "TASK_RETRIES",
        "BACKOFF",
        "TASK_BACKOFF",
        "QUEUE_CONCURRENCY",
        "MODULES",
        "AUTODISCOVER",
        "DATABASE",
    )
)
_BACKOFF_KEYS = frozenset(("BASE", "FACTOR", "MAX"))


@dataclasses.dataclass(frozen=True, slots=True)
class Backoff:
    """The waits before a task's retries, in seconds.

    Either ``delays``, one per retry (the last one repeated for the retries after it), or
    exponential: ``base * factor ** n`` before retry ``n + 1``, at most ``maximum``.
    """

    delays: tuple[float, ...] = ()
    base: float = 0.0
    factor: float = 2.0
    maximum: float = MAX_DELAY

    def delay(self, failed_attempt: int) -> float:
        """Seconds to wait after attempt ``failed_attempt`` (0-based) failed."""
        if self.delays:
            return self.delays[min(failed_attempt, len(self.delays) - 1)]
        try:
            wait = self.base * self.factor ** max(failed_attempt, 0)
        except OverflowError:
            wait = self.maximum
        return min(wait, self.maximum)


@dataclasses.dataclass(frozen=True, slots=True)
class BackendOptions:
    """``TASKS[alias]["OPTIONS"]``, checked.

    Attributes:
        retries: retries after a failed attempt for every task (None: the engine's default).
        task_retries: the same per task, by the task's module path (``shop.tasks.send``).
        backoff: the waits before every task's retries (None: the engine's backoff).
        task_backoff: the same per task, by module path (a None value: the engine's).
        queue_concurrency: the most tasks of a queue that run at once, by queue name.
        modules: modules to import for their tasks, besides each app's ``tasks`` module.
        autodiscover: import each installed app's ``tasks`` module.
        database: the alias whose open transaction makes ``enqueue`` go through the outbox.
    """

    retries: int | None = None
    task_retries: Mapping[str, int] = dataclasses.field(default_factory=dict)
    backoff: Backoff | None = None
    task_backoff: Mapping[str, Backoff | None] = dataclasses.field(default_factory=dict)
    queue_concurrency: Mapping[str, int] = dataclasses.field(default_factory=dict)
    modules: tuple[str, ...] = ()
    autodiscover: bool = True
    database: str = DEFAULT_DB_ALIAS

    def retries_of(self, module_path: str) -> int | None:
        """The retries of the task at ``module_path``."""
        return self.task_retries.get(module_path, self.retries)

    def backoff_of(self, module_path: str) -> Backoff | None:
        """The backoff of the task at ``module_path`` (None: the engine's)."""
        return self.task_backoff.get(module_path, self.backoff)

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
    backoff = options.get("BACKOFF")
    if backoff is not None:
        backoff = _backoff(f"{where}['BACKOFF']", backoff)
    task_backoff = {
        str(path): None if value is None else _backoff(f"{where}['TASK_BACKOFF'][{path!r}]", value)
        for path, value in _mapping(f"{where}['TASK_BACKOFF']", options.get("TASK_BACKOFF"))
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
        backoff=backoff,
        task_backoff=task_backoff,
        queue_concurrency=limits,
        modules=tuple(modules),
        autodiscover=autodiscover,
        database=database,
    )


def _retries(where: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RETRIES:
        raise ImproperlyConfigured(f"{where} must be a whole number from 0 to {MAX_RETRIES}")
    return value


def _backoff(where: str, value: object) -> Backoff:
    """``[10, 60, 300]`` (seconds before each retry) or ``{"BASE": 10, "FACTOR": 2, "MAX":
    3600}`` (exponential; ``FACTOR`` 2 and ``MAX`` a day unless given)."""
    if isinstance(value, Mapping):
        unknown = sorted(str(key) for key in value if key not in _BACKOFF_KEYS)
        if unknown:
            raise ImproperlyConfigured(
                f"{where} has unknown keys {unknown}; known: {sorted(_BACKOFF_KEYS)}"
            )
        if "BASE" not in value:
            raise ImproperlyConfigured(f"{where} needs BASE, the seconds before the first retry")
        base = _seconds(f"{where}['BASE']", value["BASE"])
        factor = value.get("FACTOR", 2)
        if (
            isinstance(factor, bool)
            or not isinstance(factor, (int, float))
            or not 1 <= factor <= 100
        ):
            raise ImproperlyConfigured(f"{where}['FACTOR'] must be a number from 1 to 100")
        maximum = _seconds(f"{where}['MAX']", value.get("MAX", MAX_DELAY))
        if maximum < base:
            raise ImproperlyConfigured(f"{where}['MAX'] must be at least BASE")
        return Backoff(base=base, factor=float(factor), maximum=maximum)
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise ImproperlyConfigured(
            f"{where} must be a list of seconds before each retry, or a dict with BASE, "
            "FACTOR and MAX"
        )
    return Backoff(delays=tuple(_seconds(f"{where}[{i}]", v) for i, v in enumerate(value)))


def _seconds(where: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not MIN_DELAY <= value <= MAX_DELAY
    ):
        raise ImproperlyConfigured(f"{where} must be seconds from {MIN_DELAY} to {MAX_DELAY}")
    return float(value)


def _mapping(where: str, value: object) -> list[tuple[Any, Any]]:
    if value is None:
        return []
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured(f"{where} must be a dict")
    return list(value.items())
