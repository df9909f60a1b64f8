"""``SteplineBackend``: Django's Tasks framework on the Stepline engine.

``enqueue`` starts a run of the task's function (``_functions``) through the project's
client (``stepline.django.get_client()``): at once, or, inside ``transaction.atomic()``,
through the transactional outbox, so a rollback starts nothing. ``get_result`` reads the
run back from the engine (``_results``), or finds it still in the outbox (``READY``).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.apps import apps
from django.core import checks
from django.db import DatabaseError, connections
from django.utils.module_loading import import_string

from stepline._api import catalog as _catalog
from stepline._api.runs import RunNotFoundError
from stepline.django import _outbox, _runtime
from stepline.django.tasks import _compat, _options, _results
from stepline.django.tasks._calls import TaskCall, function_id, run_data

__all__ = ["SteplineBackend"]

if TYPE_CHECKING:
    _Result = _compat.TaskResult[Any, Any]


class SteplineBackend(_compat.BaseTaskBackend):
    """Every task enqueued through Django's API becomes a durable Stepline run.

    ``TASKS = {"default": {"BACKEND": "stepline.django.tasks.SteplineBackend"}}`` next to
    ``"stepline.django"`` in ``INSTALLED_APPS`` and a ``STEPLINE`` setting. The result's id
    is the run's id; runs are retried, shown in the dashboard and the Django admin under
    the task's name. ``OPTIONS``: see ``stepline.django.tasks._options``.
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.stepline_options = _options.from_params(
            alias, params.get("OPTIONS") or {}, self.queues
        )

    def check(self, **kwargs: Any) -> list[Any]:
        """Django's system checks: ``stepline.django`` must be installed (it serves the
        tasks' functions and owns the outbox's table)."""
        if apps.is_installed("stepline.django"):
            return []
        return [
            checks.Error(
                f"TASKS[{self.alias!r}] uses SteplineBackend, but 'stepline.django' is not "
                "in INSTALLED_APPS",
                hint="Add 'stepline.django' to INSTALLED_APPS and a STEPLINE setting "
                "(docs/django-tasks.md).",
                id="stepline.E002",
            )
        ]

    def enqueue(
        self, task: _compat.Task[Any, Any], args: Any, kwargs: Any
    ) -> _compat.TaskResult[Any, Any]:
        """Start a run of ``task`` (through the outbox inside ``transaction.atomic()``)."""
        self.validate_task(task)
        function, call, data = self._prepare(task, args, kwargs)
        client = _runtime.get_client()
        database = self.stepline_options.database
        if connections[database].in_atomic_block:
            run_id = _outbox.start_in_transaction(client, function, data, using=database).run_id
        else:
            run_id = client.start_sync(function, data).run_id
        return self._enqueued(task, run_id, call)

    async def aenqueue(
        self, task: _compat.Task[Any, Any], args: Any, kwargs: Any
    ) -> _compat.TaskResult[Any, Any]:
        """``enqueue`` from async code."""
        if connections[self.stepline_options.database].in_atomic_block:
            return await sync_to_async(self.enqueue)(task, args, kwargs)
        self.validate_task(task)
        function, call, data = self._prepare(task, args, kwargs)
        handle = await _runtime.get_client().start(function, data)
        return self._enqueued(task, handle.run_id, call)

    def get_result(self, result_id: str) -> _compat.TaskResult[Any, Any]:
        """The task's result as the engine knows its run.

        Raises:
            TaskResultDoesNotExist: no run has this id, or it is not a task's run.
        """
        connection = _runtime.get_client().connection
        try:
            detail = connection.run_sync(_catalog.run_flow(connection.settings, result_id))
        except RunNotFoundError:
            return self._pending(result_id)
        return self._read(result_id, detail)

    async def aget_result(self, result_id: str) -> _compat.TaskResult[Any, Any]:
        """``get_result`` from async code."""
        connection = _runtime.get_client().connection
        try:
            detail = await connection.run_async(_catalog.run_flow(connection.settings, result_id))
        except RunNotFoundError:
            return await sync_to_async(self._pending)(result_id)
        return self._read(result_id, detail)

    def _prepare(
        self, task: _compat.Task[Any, Any], args: Any, kwargs: Any
    ) -> tuple[str, TaskCall, dict[str, Any]]:
        path = task.module_path
        known = {f.id for f in _runtime.get_functions()}
        if function_id(path) not in known:
            raise _compat.InvalidTask(
                f"task {path} is not one of the Stepline functions: define it in an installed "
                f"app's tasks module, or list its module in TASKS[{self.alias!r}]['OPTIONS']"
                "['MODULES']"
            )
        now = dt.datetime.now(dt.timezone.utc)
        data = run_data(task, args, kwargs, alias=self.alias, enqueued_at=now)
        return function_id(path), TaskCall.of(data), data

    def _enqueued(self, task: _compat.Task[Any, Any], run_id: str, call: TaskCall) -> _Result:
        result = _results.enqueued(task, run_id, call, alias=self.alias)
        _compat.task_enqueued.send(type(self), task_result=result)
        return result

    def _pending(self, result_id: str) -> _Result:
        """A task enqueued in a committed transaction whose outbox row the relay has not
        delivered yet: ``READY``."""
        from stepline.django.models import OutboxMessage

        try:
            rows = list(
                OutboxMessage.objects.using(self.stepline_options.database).filter(
                    kind="start", delivered_at__isnull=True, body__contains=result_id
                )[:2]
            )
        except DatabaseError:  # no outbox table: nothing was enqueued in a transaction
            rows = []
        for row in rows:
            body = json.loads(row.body)
            if body.get("run_id") == result_id:
                call, task = self._task_of(result_id, body.get("data"))
                return _results.enqueued(task, result_id, call, alias=self.alias)
        raise _compat.TaskResultDoesNotExist(result_id)

    def _task_of(self, result_id: str, data: object) -> tuple[TaskCall, _compat.Task[Any, Any]]:
        try:
            call = TaskCall.of(data)
            task = import_string(call.task)
        except (ImportError, KeyError, TypeError, ValueError):
            raise _compat.TaskResultDoesNotExist(result_id) from None
        if not isinstance(task, _compat.Task) or call.backend != self.alias:
            raise _compat.TaskResultDoesNotExist(result_id)
        return call, _as_enqueued(task, call)

    def _read(self, result_id: str, detail: _catalog.RunDetail) -> _Result:
        event = detail.events[0] if detail.events else {}
        call, task = self._task_of(result_id, event.get("data"))
        return _results.from_run(task, detail, call)


def _as_enqueued(task: _compat.Task[Any, Any], call: TaskCall) -> _compat.Task[Any, Any]:
    """The task as it was enqueued (its queue and priority), if that is still valid."""
    try:
        return task.using(queue_name=call.queue, priority=call.priority)
    except _compat.InvalidTask:
        return task
