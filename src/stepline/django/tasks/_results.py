"""Django ``TaskResult``s from what the engine says of a task's run (pure: no I/O).

| the run | ``status`` |
|---|---|
| queued, or sleeping in its ``run-after`` step, or waiting to retry the task's step | ``READY`` |
| running | ``RUNNING`` |
| completed | ``SUCCESSFUL`` (``return_value``: the output) |
| failed or cancelled | ``FAILED`` (``errors``: the error, with its class path and traceback) |

``attempts`` (``worker_ids``, one entry per attempt) are the task step's attempts for a
task without context, and the most attempts any of its steps took for one with context
(at least 1 once it started): the engine counts attempts per step.
"""

from __future__ import annotations

import builtins
import datetime as dt
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from stepline._api.catalog import RunDetail
from stepline._api.run_info import StepInfo
from stepline._status import RunStatus
from stepline.django.tasks import _compat
from stepline.django.tasks._calls import RUN_AFTER_STEP, TaskCall

__all__ = ["WORKER_ID", "class_path", "enqueued", "from_run", "running"]

#: What ``worker_ids`` holds for each attempt (the engine does not say which process ran it).
WORKER_ID = "stepline"

if TYPE_CHECKING:
    _Result = _compat.TaskResult[Any, Any]
# by value: the stubs type the members as their declarations (``...``)
_READY = _compat.TaskResultStatus("READY")
_RUNNING = _compat.TaskResultStatus("RUNNING")
_FAILED = _compat.TaskResultStatus("FAILED")
_SUCCESSFUL = _compat.TaskResultStatus("SUCCESSFUL")
_RETRYING = frozenset(("Planned",))


def enqueued(task: _compat.Task[Any, Any], run_id: str, call: TaskCall, *, alias: str) -> _Result:
    """The result ``enqueue`` returns: ``READY``, enqueued now."""
    return _result(task, run_id, call, alias, _READY, enqueued_at=call.enqueued_at)


def running(task: _compat.Task[Any, Any], run_id: str, call: TaskCall, *, attempt: int) -> _Result:
    """The result a task with context sees while it runs (``attempt``: 0-based)."""
    now = dt.datetime.now(dt.timezone.utc)
    return _result(
        task,
        run_id,
        call,
        call.backend,
        _RUNNING,
        enqueued_at=call.enqueued_at,
        started_at=now,
        last_attempted_at=now,
        attempts=attempt + 1,
    )


def from_run(task: _compat.Task[Any, Any], detail: RunDetail, call: TaskCall) -> _Result:
    """The result for a task's run as the engine describes it."""
    info = detail.info
    steps = [s for s in detail.steps if s.name != RUN_AFTER_STEP]
    waiting = any(s.name == RUN_AFTER_STEP and s.status != "Completed" for s in detail.steps)
    body = None if task.takes_context else next((s for s in steps if s.name == task.name), None)
    if body is not None:
        attempts = body.attempts
    else:
        attempts = max((s.attempts for s in steps), default=0)
        started = info.status is not RunStatus.QUEUED and not waiting
        attempts = max(attempts, 1 if started else 0)
    if info.status is RunStatus.COMPLETED:
        status = _SUCCESSFUL
    elif info.status.terminal:
        status = _FAILED
    elif info.status is RunStatus.QUEUED or waiting:
        status = _READY
    elif body is not None and body.status in _RETRYING and body.attempts:
        status = _READY  # its last attempt failed: ready to be run again
    else:
        status = _RUNNING
    errors = _errors(info.status, info.error, info.cancel_reason, body)
    started_at = _started(info.started_at, steps, detail.steps, waiting, status)
    finished_at = info.ended_at if info.status.terminal else None
    result = _result(
        task,
        info.run_id,
        call,
        call.backend,
        status,
        enqueued_at=info.created_at or call.enqueued_at,
        started_at=started_at,
        finished_at=finished_at,
        last_attempted_at=finished_at or (body.ended_at if body else None) or started_at,
        attempts=attempts,
        errors=errors,
    )
    if status is _SUCCESSFUL:
        object.__setattr__(result, "_return_value", info.output)
    return result


def class_path(name: str, stack: str) -> str:
    """An exception's class path from its name and traceback.

    The last line naming the class in a traceback qualifies it with its module
    (``shop.errors.PaymentDeclined: ...``), except for built-in exceptions.
    """
    pattern = re.compile(rf"^((?:[\w]+\.)*{re.escape(name)})(?::|$)")
    for line in reversed(stack.splitlines()):
        found = pattern.match(line)
        if found and "." in found.group(1):
            return found.group(1)
    if isinstance(getattr(builtins, name, None), type):
        return f"builtins.{name}"
    return name


def _errors(
    status: RunStatus,
    error: Mapping[str, Any] | None,
    cancel_reason: str | None,
    body: StepInfo | None,
) -> list[_compat.TaskError]:
    if status is RunStatus.CANCELLED:
        reason = cancel_reason or "cancelled"
        return [
            _compat.TaskError(
                exception_class_path="stepline.RunCancelledError",
                traceback=f"stepline.RunCancelledError: {reason}\n",
            )
        ]
    if status is RunStatus.FAILED and error is not None:
        return [_error(error)]
    if body is not None and body.error is not None and status is not RunStatus.COMPLETED:
        return [_error(body.error)]  # the last failed attempt, while it is retried
    return []


def _error(error: Mapping[str, Any]) -> _compat.TaskError:
    name = str(error.get("name") or "Error")
    message = str(error.get("message") or "")
    stack = str(error.get("stack") or f"{name}: {message}\n")
    return _compat.TaskError(exception_class_path=class_path(name, stack), traceback=stack)


def _started(
    run_started: dt.datetime | None,
    steps: list[StepInfo],
    every_step: tuple[StepInfo, ...],
    waiting: bool,
    status: _compat.TaskResultStatus,
) -> dt.datetime | None:
    if waiting or (status is _READY and not steps):
        return None
    first = next((s.started_at for s in steps if s.started_at is not None), None)
    slept = next((s.ended_at for s in every_step if s.name == RUN_AFTER_STEP), None)
    return first or slept or run_started


def _result(
    task: _compat.Task[Any, Any],
    run_id: str,
    call: TaskCall,
    alias: str,
    status: _compat.TaskResultStatus,
    *,
    enqueued_at: dt.datetime | None,
    started_at: dt.datetime | None = None,
    finished_at: dt.datetime | None = None,
    last_attempted_at: dt.datetime | None = None,
    attempts: int = 0,
    errors: list[_compat.TaskError] | None = None,
) -> _Result:
    return _compat.TaskResult(
        task=task,
        id=run_id,
        status=status,
        enqueued_at=enqueued_at,
        started_at=started_at,
        finished_at=finished_at,
        last_attempted_at=last_attempted_at,
        args=call.args,
        kwargs=call.kwargs,
        backend=alias,
        errors=errors or [],
        worker_ids=[WORKER_ID] * attempts,
    )
