"""``SteplineBackend``'s pure parts: its ``OPTIONS``, error class paths, a run read as a
``TaskResult`` in every state, and the public names of ``stepline.django.tasks``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

import stepline.django.tasks
from stepline._api.catalog import RunDetail
from stepline._api.run_info import RunInfo, StepInfo
from stepline._status import RunStatus
from stepline.django.tasks import _options, _results
from stepline.django.tasks._calls import RUN_AFTER_STEP, TaskCall
from tests.django_tasks_backend.project import import_tasks

tasks = import_tasks()

AT = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
CALL = TaskCall.of(
    {
        "task": "tests.django_tasks_backend.taskapp.tasks.add",
        "args": [1, 2],
        "kwargs": {},
        "backend": "default",
        "queue": "default",
        "priority": 0,
        "enqueued_at": AT.isoformat(),
        "run_after": None,
    }
)


def test_the_public_names_are_pinned() -> None:
    assert stepline.django.tasks.__all__ == [
        "SteplineBackend",
        "SteplineTaskContext",
        "async_context",
        "sync_context",
    ]
    assert stepline.django.tasks.SteplineBackend.__module__ == "stepline.django.tasks._backend"


def test_options_are_checked_once() -> None:
    options = _options.from_params(
        "default",
        {
            "RETRIES": 2,
            "TASK_RETRIES": {"shop.tasks.sync": 10},
            "QUEUE_CONCURRENCY": {"emails": 5, "reports": 1, "imports": 5},
            "MODULES": ["shop.jobs"],
        },
        {"default", "emails", "reports", "imports"},
    )
    assert options.retries_of("shop.tasks.sync") == 10
    assert options.retries_of("shop.tasks.other") == 2
    assert options.limit_groups() == [(1, ("reports",)), (5, ("emails", "imports"))]
    assert options.modules == ("shop.jobs",)
    assert _options.from_params("default", {}, set()) == _options.BackendOptions()


def test_backoff_options_time_retries_per_backend_and_per_task() -> None:
    options = _options.from_params(
        "default",
        {
            "BACKOFF": {"BASE": 10, "FACTOR": 3, "MAX": 100},
            "TASK_BACKOFF": {"shop.tasks.sync": [60, 300], "shop.tasks.mail": None},
        },
        set(),
    )
    backoff = options.backoff_of("shop.tasks.other")
    assert backoff is not None
    assert [backoff.delay(n) for n in range(4)] == [10, 30, 90, 100]
    assert backoff.delay(10_000) == 100  # no overflow
    sync = options.backoff_of("shop.tasks.sync")
    assert sync is not None
    assert [sync.delay(n) for n in range(3)] == [60, 300, 300]
    assert options.backoff_of("shop.tasks.mail") is None  # the engine's
    default = _options.from_params("default", {"BACKOFF": {"BASE": 2}}, set()).backoff
    assert default is not None
    assert [default.delay(n) for n in range(3)] == [2, 4, 8]
    assert default.delay(100) == _options.MAX_DELAY
    assert _options.BackendOptions().backoff_of("shop.tasks.sync") is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"BACKOFF": 10}, "list of seconds"),
        ({"BACKOFF": []}, "list of seconds"),
        ({"BACKOFF": [0.5]}, "seconds from 1 to 86400"),
        ({"BACKOFF": [10, float("nan")]}, "seconds from 1 to 86400"),
        ({"BACKOFF": {"FACTOR": 2}}, "needs BASE"),
        ({"BACKOFF": {"BASE": 5, "STEP": 2}}, "unknown keys \\['STEP'\\]"),
        ({"BACKOFF": {"BASE": 5, "FACTOR": 0.5}}, "from 1 to 100"),
        ({"BACKOFF": {"BASE": 50, "MAX": 10}}, "at least BASE"),
        ({"TASK_BACKOFF": {"a.b": [100_000]}}, "seconds from 1 to 86400"),
        ({"TASK_BACKOFF": [1]}, "must be a dict"),
        ({"RETRY": 2}, "unknown keys \\['RETRY'\\]"),
        ({"RETRIES": 21}, "from 0 to 20"),
        ({"RETRIES": True}, "from 0 to 20"),
        ({"TASK_RETRIES": {"a.b": -1}}, "from 0 to 20"),
        ({"QUEUE_CONCURRENCY": {"default": 0}}, "at least 1"),
        ({"QUEUE_CONCURRENCY": {"nowhere": 1}}, "no queue 'nowhere'"),
        ({"QUEUE_CONCURRENCY": {"a": 1, "b": 2, "c": 3}}, "at most two different limits"),
        ({"MODULES": "shop.jobs"}, "list of module paths"),
        ({"AUTODISCOVER": "no"}, "True or False"),
        ({"DATABASE": ""}, "database alias"),
        ([], "must be a dict"),
    ],
)
def test_bad_options_stop_django_at_startup(options: Any, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        _options.from_params("default", options, {"default", "a", "b", "c"})


@pytest.mark.parametrize(
    ("name", "stack", "path"),
    [
        ("PaymentDeclined", "Traceback ...\nshop.errors.PaymentDeclined: no funds\n", None),
        ("ValueError", "Traceback ...\nValueError: bad\n", "builtins.ValueError"),
        ("KeyError", "", "builtins.KeyError"),
        ("Odd", "no traceback", "Odd"),
        ("Outer.Inner", "x\nshop.Outer.Inner: y", "shop.Outer.Inner"),
    ],
)
def test_an_error_class_path_comes_from_its_traceback(
    name: str, stack: str, path: str | None
) -> None:
    assert _results.class_path(name, stack) == (path or "shop.errors.PaymentDeclined")


def step(name: str, status: str, attempts: int, error: dict[str, str] | None = None) -> StepInfo:
    return StepInfo(
        id=name, name=name, op="", status=status, attempts=attempts, error=error, started_at=AT
    )


def detail(status: RunStatus, *steps: StepInfo, **info: Any) -> RunDetail:
    run = RunInfo(run_id="01RUN", function_id="tasks-add", status=status, created_at=AT, **info)
    return RunDetail(info=run, steps=steps)


def read(run: RunDetail) -> Any:
    return _results.from_run(tasks.add, run, CALL)


def test_a_run_is_read_as_a_task_result_in_every_state() -> None:
    queued = read(detail(RunStatus.QUEUED))
    assert (queued.status, queued.attempts, queued.started_at) == ("READY", 0, None)
    sleeping = read(detail(RunStatus.RUNNING, step(RUN_AFTER_STEP, "Sleeping", 0)))
    assert (sleeping.status, sleeping.attempts) == ("READY", 0)
    running = read(detail(RunStatus.RUNNING, step("add", "Calling", 1)))
    assert (running.status, running.attempts) == ("RUNNING", 1)
    boom = {"name": "ConnectionError", "message": "down", "stack": "ConnectionError: down\n"}
    retrying = read(detail(RunStatus.RUNNING, step("add", "Planned", 2, boom)))
    assert (retrying.status, retrying.attempts) == ("READY", 2)
    assert retrying.errors[0].exception_class_path == "builtins.ConnectionError"
    done = read(detail(RunStatus.COMPLETED, step("add", "Completed", 3), output=3, ended_at=AT))
    assert (done.status, done.return_value, done.attempts, done.errors) == ("SUCCESSFUL", 3, 3, [])
    assert done.finished_at == AT
    cancelled = read(detail(RunStatus.CANCELLED, cancel_reason="by an operator"))
    assert cancelled.status == "FAILED"
    assert cancelled.errors[0].exception_class_path == "stepline.RunCancelledError"
    assert "by an operator" in cancelled.errors[0].traceback
    assert cancelled.args == [1, 2]


def test_a_system_check_asks_for_stepline_django() -> None:
    from stepline.django.tasks import SteplineBackend

    # the tests' Django configuration installs no app
    [error] = SteplineBackend("default", {"BACKEND": "x"}).check()
    assert error.id == "stepline.E002"
    assert "'stepline.django' is not in INSTALLED_APPS" in error.msg
