"""A task run's data: what one enqueue asked for, written as the run's ``event.data``.

``{"task": "shop.tasks.send_welcome", "args": [...], "kwargs": {...}, "backend":
"default", "queue": "emails", "priority": 0, "enqueued_at": "...", "run_after": null}``:
JSON, as Django requires of a task's arguments, and readable in the dashboard.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from stepline.django.tasks import _compat

__all__ = ["EVENT_PREFIX", "RUN_AFTER_STEP", "TaskCall", "function_id", "run_data"]

#: The trigger event of a task's function is this prefix and the task's module path.
EVENT_PREFIX = "django.task/"
#: The step that waits until ``run_after``.
RUN_AFTER_STEP = "run-after"


def function_id(module_path: str) -> str:
    """The function id (within the app) of the task at ``module_path``."""
    return module_path


def run_data(
    task: _compat.Task[Any, Any],
    args: Any,
    kwargs: Any,
    *,
    alias: str,
    enqueued_at: dt.datetime,
) -> dict[str, Any]:
    """A run's data for one enqueue of ``task``.

    Raises:
        TypeError: an argument that is not JSON (as Django's own backends require).
        ValueError: NaN or an infinity among the arguments.
    """
    data = {
        "task": task.module_path,
        "args": _compat.normalize_json(list(args)),
        "kwargs": _compat.normalize_json(dict(kwargs)),
        "backend": alias,
        "queue": task.queue_name,
        "priority": task.priority,
        "enqueued_at": enqueued_at.isoformat(),
        "run_after": None if task.run_after is None else task.run_after.isoformat(),
    }
    json.dumps(data, allow_nan=False)
    return data


@dataclasses.dataclass(frozen=True, slots=True)
class TaskCall:
    """A run's data, read back: the call to make and when it may start."""

    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    backend: str
    queue: str
    priority: int
    enqueued_at: dt.datetime | None
    run_after: dt.datetime | None

    @classmethod
    def of(cls, data: object) -> TaskCall:
        """Read the data ``run_data`` wrote (KeyError, TypeError or ValueError if it is not)."""
        if not isinstance(data, Mapping):
            raise TypeError("a task run's data must be an object")
        args, kwargs = data["args"], data["kwargs"]
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise TypeError("a task run's args must be a list and its kwargs an object")
        return cls(
            task=str(data["task"]),
            args=args,
            kwargs=kwargs,
            backend=str(data.get("backend") or "default"),
            queue=str(data.get("queue") or "default"),
            priority=int(data.get("priority") or 0),
            enqueued_at=_time(data.get("enqueued_at")),
            run_after=_time(data.get("run_after")),
        )


def _time(value: object) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return dt.datetime.fromisoformat(value)
