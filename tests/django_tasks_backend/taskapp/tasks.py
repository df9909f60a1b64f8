"""The test app's Django tasks: plain, failing, flaky, with steps, async, and a gate.

Module-level state (``calls``, ``attempts``, the gate's events) lets a test see what ran;
``reset()`` clears it between tests.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import stepline
from stepline.django.tasks import async_context, sync_context
from tests.django_tasks_backend.taskapp import _tasks_api

task = _tasks_api.task
TaskContext = _tasks_api.TaskContext

#: labels ``record`` ran with, in order
calls: list[str] = []
#: attempts per key of ``flaky``
attempts: Counter[str] = Counter()
#: ``hold`` sets ``held`` once it runs, then waits for ``release``
held = threading.Event()
release = threading.Event()


class TaskAppError(Exception):
    """What ``explode`` raises."""


def reset() -> None:
    calls.clear()
    attempts.clear()
    held.clear()
    release.clear()


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def record(label: str) -> str:
    calls.append(label)
    return label


@task(queue_name="serial")
def record_serially(label: str) -> str:
    calls.append(label)
    return label


@task(queue_name="serial")
def hold() -> str:
    held.set()
    release.wait(20)
    return "released"


@task
def explode(why: str) -> None:
    raise TaskAppError(why)


@task
def flaky(key: str, failures: int) -> dict[str, Any]:
    attempts[key] += 1
    if attempts[key] <= failures:
        raise ConnectionError(f"attempt {attempts[key]} of {key} failed")
    return {"key": key, "attempts": attempts[key]}


@task
def flaky_later(key: str, failures: int) -> dict[str, Any]:
    """``flaky`` with a backoff of its own (``TASK_BACKOFF``: 60 s, then 600 s)."""
    attempts[key] += 1
    if attempts[key] <= failures:
        raise ConnectionError(f"attempt {attempts[key]} of {key} failed")
    return {"key": key, "attempts": attempts[key]}


@task
async def flaky_async(key: str, failures: int) -> int:
    """An ``async def`` ``flaky`` on the backend's backoff."""
    attempts[key] += 1
    if attempts[key] <= failures:
        raise ConnectionError(f"attempt {attempts[key]} of {key} failed")
    return attempts[key]


@task(takes_context=True)
def flaky_with_steps(context: TaskContext[Any, Any], key: str, failures: int) -> str:
    """Fails in its body, outside a step, ``failures`` times (retried on the backend's
    backoff), then runs its step."""
    run = sync_context(context)
    attempts[key] += 1
    if attempts[key] <= failures:
        raise ConnectionError(f"attempt {attempts[key]} of {key} failed")

    def fetch() -> str:
        calls.append(key)
        return key.upper()

    return run.step.run("fetch", fetch)


@task(takes_context=True)
def with_steps(context: TaskContext[Any, Any], name: str) -> dict[str, Any]:
    run = sync_context(context)
    greeting = run.step.run("greet", lambda: f"Hello, {name}")
    shout = run.step.run("shout", str.upper, greeting)
    return {
        "shout": shout,
        "result_id": context.task_result.id,
        "attempt": context.attempt,
        "run_id": run.run_id,
        "same": run is context.stepline,  # type: ignore[attr-defined]
    }


@task
async def double(value: int) -> int:
    return value * 2


@task(takes_context=True)
async def double_in_steps(context: TaskContext[Any, Any], value: int) -> int:
    async def twice() -> int:
        return value * 2

    doubled = await async_context(context).step.run("twice", twice)
    return doubled + context.attempt - 1


@task
def survive(marks: str) -> int:
    """Blocks on its first execution (the test kills the process then); returns how many
    executions began."""
    log = Path(marks)
    with log.open("a") as out:
        out.write("begin\n")
    began = log.read_text().split().count("begin")
    if began == 1:
        time.sleep(120)
    with log.open("a") as out:
        out.write("end\n")
    return began


@task
def fan_out(labels: list[str]) -> list[str]:
    """Enqueues ``record`` once per label, from inside a task; returns the results' ids."""
    return [record.enqueue(label).id for label in labels]


@task
def give_up(why: str) -> None:
    """Fails for good at once: no retry."""
    raise stepline.NonRetriableError(why)
