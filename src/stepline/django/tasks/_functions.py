"""One Stepline function per Django task: its id, options, run data and handler.

A task at ``shop.tasks.send_welcome`` becomes the function ``send_welcome`` (its name in
the dashboard and the admin) with the id ``shop.tasks.send_welcome`` and the trigger event
``django.task/shop.tasks.send_welcome``. A run's data is the call: ``args``, ``kwargs`` and
what the enqueue chose (``queue``, ``priority``, ``run_after``). The handler first sleeps
until ``run_after`` (a step, so the wait is durable), then calls the task: a task that
does not take a context runs as one step named after the task (its attempts and error are
the step's); one that does gets a ``SteplineTaskContext`` and its body runs as the
function's body, between its own steps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import json
from collections.abc import Awaitable, Callable, Iterator
from inspect import iscoroutinefunction
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from stepline._definition import function as _function
from stepline._definition.function import Function
from stepline._definition.options import Concurrency, Priority
from stepline._definition.triggers import TriggerEvent
from stepline._errors import RetryAfterFailure, SteplineError
from stepline._execution.context import Context, SyncContext
from stepline.django.tasks import _compat, _results
from stepline.django.tasks._calls import EVENT_PREFIX, RUN_AFTER_STEP, TaskCall, function_id
from stepline.django.tasks._options import BackendOptions, Backoff

__all__ = ["PRIORITY", "C", "SteplineTaskContext", "async_context", "build", "sync_context"]

#: Django's priority (-100..100) as the engine's boost (0..600 s ahead in the queue); every
#: boost is positive, so no priority delays a task's start.
PRIORITY = "(event.data.priority + 100) * 3"

if TYPE_CHECKING:
    _ContextBase = _compat.TaskContext[Any, Any]
else:
    _ContextBase = _compat.TaskContext

#: the run's context: blocking steps for a ``def`` task, awaited ones for ``async def``
C = TypeVar("C", SyncContext, Context)


# frozen as Django's own TaskContext is (the stubs declare it without ``frozen``)
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SteplineTaskContext(_ContextBase, Generic[C]):  # type: ignore[misc]
    """The context a ``takes_context=True`` task gets from ``SteplineBackend``.

    Django's ``TaskContext`` (``task_result``, ``attempt``) with the run's Stepline context,
    for steps inside the task::

        @task(takes_context=True)
        def import_feed(context, url: str) -> int:
            rows = context.stepline.step.run("fetch", fetch, url)
            return context.stepline.step.run("store", store, rows)

    django-stubs types ``@task``'s ``context`` as Django's ``TaskContext``: with it,
    ``sync_context(context)`` (``async_context`` in an ``async def`` task) is
    ``context.stepline``, typed.

    Attributes:
        stepline: the run's context: a ``stepline.SyncContext`` for a ``def`` task, a
            ``stepline.Context`` (whose steps are awaited) for an ``async def`` task.
    """

    stepline: C


def build(
    app_id: str, task: _compat.Task[Any, Any], alias: str, options: BackendOptions
) -> Function:
    """The Stepline function that runs ``task``, with its backend's options."""
    path = task.module_path
    extra: dict[str, Any] = {}
    retries = options.retries_of(path)
    if retries is not None:
        extra["retries"] = retries
    limits = [
        Concurrency(limit=limit, scope="env", key=_queue_key(alias, queues))
        for limit, queues in options.limit_groups()
    ]
    if limits:
        extra["concurrency"] = limits
    declare = _function.declare(
        app_id,
        id=function_id(path),
        trigger=TriggerEvent(event=EVENT_PREFIX + path),
        name=task.name,
        description=f"Django task {path} (backend {alias!r})",
        priority=Priority(run=PRIORITY),
        **extra,
    )
    backoff = options.backoff_of(path)
    handler: Callable[..., Any]
    if iscoroutinefunction(task.func):
        handler = _async_handler(task, backoff)
    else:
        handler = _sync_handler(task, backoff)
    return declare(handler)


def _queue_key(alias: str, queues: tuple[str, ...]) -> str:
    """A concurrency key shared by every task of ``queues`` (one per queue), unique per
    run elsewhere, so runs of other queues are never held back."""
    names = ", ".join(json.dumps(queue) for queue in queues)
    prefix = json.dumps(f"django.tasks/{alias}/")
    return f'event.data.queue in [{names}] ? {prefix} + event.data.queue : "run/" + event.id'


def _sync_handler(
    task: _compat.Task[Any, Any], backoff: Backoff | None
) -> Callable[[SyncContext], Any]:
    def run_task(ctx: SyncContext) -> Any:
        call = TaskCall.of(ctx.event.data)
        if call.run_after is not None:
            ctx.step.sleep_until(RUN_AFTER_STEP, call.run_after)
        if task.takes_context:
            context = _context(task, call, ctx)
            with _backing_off(backoff, ctx.attempt):
                return _compat.normalize_json(task.func(context, *call.args, **call.kwargs))
        body = functools.partial(task.func, *call.args, **call.kwargs)

        def step() -> Any:
            with _backing_off(backoff, ctx.attempt):
                return _compat.normalize_json(body())

        return ctx.step.run(task.name, step)

    return run_task


def _async_handler(
    task: _compat.Task[Any, Any], backoff: Backoff | None
) -> Callable[[Context], Awaitable[Any]]:
    async def run_task(ctx: Context) -> Any:
        call = TaskCall.of(ctx.event.data)
        if call.run_after is not None:
            await ctx.step.sleep_until(RUN_AFTER_STEP, call.run_after)
        if task.takes_context:
            context = _context(task, call, ctx)
            with _backing_off(backoff, ctx.attempt):
                return _compat.normalize_json(await task.func(context, *call.args, **call.kwargs))

        async def body() -> Any:
            with _backing_off(backoff, ctx.attempt):
                return _compat.normalize_json(await task.func(*call.args, **call.kwargs))

        return await ctx.step.run(task.name, body)

    return run_task


@contextlib.contextmanager
def _backing_off(backoff: Backoff | None, attempt: int) -> Iterator[None]:
    """An exception of the task's code, retried after ``backoff``'s wait for ``attempt``
    (0-based) rather than the engine's; Stepline's own errors (``NonRetriableError``,
    ``RetryAfterError``, a step's ``StepError``...) and interrupts pass as they are."""
    if backoff is None:
        yield
        return
    try:
        yield
    except SteplineError:
        raise
    except Exception as exc:
        wait = dt.timedelta(seconds=backoff.delay(attempt))
        raise RetryAfterFailure(exc, wait) from exc


def sync_context(context: _compat.TaskContext[Any, Any]) -> SyncContext:
    """The run's context of a ``def`` task's ``context``, typed (django-stubs' ``@task``
    types a task's first parameter as Django's ``TaskContext``).

    Raises:
        TypeError: the task is not run by ``SteplineBackend``, or is ``async def``.
    """
    run = getattr(context, "stepline", None)
    if not isinstance(run, SyncContext):
        raise TypeError("sync_context() needs the context SteplineBackend gives a def task")
    return run


def async_context(context: _compat.TaskContext[Any, Any]) -> Context:
    """The run's context of an ``async def`` task's ``context`` (see ``sync_context``).

    Raises:
        TypeError: the task is not run by ``SteplineBackend``, or is a plain ``def``.
    """
    run = getattr(context, "stepline", None)
    if not isinstance(run, Context):
        raise TypeError("async_context() needs the context SteplineBackend gives an async def task")
    return run


def _context(task: _compat.Task[Any, Any], call: TaskCall, ctx: C) -> SteplineTaskContext[C]:
    result = _results.running(task, ctx.run_id, call, attempt=ctx.attempt)
    return SteplineTaskContext(task_result=result, stepline=ctx)
