"""``SteplineBackend`` on a ``TestEnv``: Django's task API over real Stepline runs.

Each test gets the project of ``project.tasks_project`` (the test app's tasks discovered,
a migrated SQLite database for the outbox) and a ``TestEnv`` as its engine, relaying the
outbox of Django's ``default`` database. Time is virtual: ``env.get_run(id).result_sync()``
skips to the next timer (a ``run_after``, a retry's backoff).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
from collections.abc import Iterator
from io import StringIO
from typing import TYPE_CHECKING, Any

import pytest
from django.core.management import call_command
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.test import Client as DjangoClient
from django.urls import path

import stepline
import stepline.django
from stepline._api import catalog as _catalog
from stepline.django.tasks import SteplineBackend
from stepline.django.tasks._compat import (
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_backends,
)
from stepline.testing import TestEnv
from tests._support.polling import wait_until
from tests.django_tasks_backend.project import import_tasks, tasks_project
from tests.web.django_setup import mount

tasks = import_tasks()
TASKS = "tests.django_tasks_backend.taskapp.tasks"

if TYPE_CHECKING:
    Result = TaskResult[Any, Any]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The project, migrated once for the module: each test's env relays its outbox."""
    folder = tmp_path_factory.mktemp("tasks")
    with tasks_project(
        folder / "django.db",
        RETRIES=3,
        BACKOFF={"BASE": 5, "FACTOR": 3, "MAX": 100},  # 5 s, 15 s, 45 s
        TASK_BACKOFF={f"{TASKS}.flaky": None, f"{TASKS}.flaky_later": [60, 600]},
        QUEUE_CONCURRENCY={"serial": 1},
    ):
        yield


@pytest.fixture
def env(project: None) -> Iterator[TestEnv]:
    tasks.reset()
    with TestEnv(
        stepline.django.get_client(),
        stepline.django.get_functions(),
        relay_outbox="django",
        retry_jitter=0,
    ) as test_env:
        yield test_env
    mount()


def finish(env: TestEnv, result: Result) -> Result:
    """Wait for the task's run to end (skipping virtual time), then refresh the result."""
    run = env.get_run(result.id)
    with contextlib.suppress(stepline.RunFailedError):
        run.result_sync()
    result.refresh()
    return result


def test_the_backend_says_what_it_supports() -> None:
    assert SteplineBackend.supports_defer
    assert SteplineBackend.supports_async_task
    assert SteplineBackend.supports_get_result
    assert SteplineBackend.supports_priority


def test_each_task_is_a_function_named_after_it(env: TestEnv) -> None:
    functions = {f.id: f for f in stepline.django.get_functions()}
    add = functions["tests.django_tasks_backend.taskapp.tasks.add"]
    assert add.name == "add"
    assert isinstance(task_backends["default"], SteplineBackend)
    # the engine's functions, which its dashboard lists runs under
    connection = stepline.django.get_client().connection
    registered = connection.run_sync(_catalog.functions_flow(connection.settings))
    names = {f.function_id.removeprefix("tasks-"): f.name for f in registered}
    assert names["tests.django_tasks_backend.taskapp.tasks.add"] == "add"
    assert names["tests.django_tasks_backend.taskapp.tasks.with_steps"] == "with_steps"


def test_a_task_enqueued_returns_its_run_and_get_result_reads_it(env: TestEnv) -> None:
    result = tasks.add.enqueue(2, 3)
    assert type(result) is TaskResult  # Django's own
    assert result.status == TaskResultStatus.READY
    assert result.args == [2, 3]
    assert result.kwargs == {}
    assert result.backend == "default"
    assert env.get_run(result.id).result_sync() == 5
    got = tasks.add.get_result(result.id)
    assert got.status == TaskResultStatus.SUCCESSFUL
    assert got.return_value == 5
    assert got.attempts == 1
    assert got.errors == []
    assert got.enqueued_at is not None
    assert got.started_at is not None
    assert got.finished_at is not None
    assert got.enqueued_at <= got.finished_at
    assert got.args == [2, 3]
    assert finish(env, result).return_value == 5


def test_a_failing_task_reports_its_error(env: TestEnv) -> None:
    result = finish(env, tasks.explode.enqueue("no stock"))
    assert result.status == TaskResultStatus.FAILED
    assert result.attempts == 4  # RETRIES=3
    [error] = result.errors
    assert error.exception_class_path == "tests.django_tasks_backend.taskapp.tasks.TaskAppError"
    assert error.exception_class is tasks.TaskAppError
    assert "no stock" in error.traceback
    assert "Traceback" in error.traceback
    with pytest.raises(ValueError, match="failed"):
        result.return_value  # noqa: B018


def test_a_flaky_task_is_retried_until_it_succeeds(env: TestEnv) -> None:
    result = finish(env, tasks.flaky.enqueue("crm", failures=2))
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == {"key": "crm", "attempts": 3}
    assert result.attempts == 3
    assert tasks.attempts["crm"] == 3


def attempts_over(env: TestEnv, result: Result, waits: list[float]) -> list[int]:
    """The task's attempts so far after each of ``waits`` seconds of virtual time."""
    seen = []
    for wait in waits:
        env.advance_sync(dt.timedelta(seconds=wait))
        env.settle_sync()
        result.refresh()
        seen.append(result.attempts)
    return seen


def test_a_task_retries_on_its_own_backoff(env: TestEnv) -> None:
    result = tasks.flaky_later.enqueue("crm", failures=2)  # TASK_BACKOFF: 60 s, then 600 s
    env.settle_sync()
    result.refresh()
    assert (result.status, result.attempts) == (TaskResultStatus.READY, 1)
    [error] = result.errors  # the attempt's own error, not the retry's
    assert error.exception_class_path == "builtins.ConnectionError"
    assert "attempt 1 of crm failed" in error.traceback
    assert attempts_over(env, result, [58, 4, 590, 12]) == [1, 2, 2, 3]
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == {"key": "crm", "attempts": 3}


def test_the_backends_backoff_times_every_tasks_retries(env: TestEnv) -> None:
    result = tasks.explode.enqueue("later")  # BACKOFF: 5 s, 15 s, 45 s
    env.settle_sync()
    assert attempts_over(env, result, [4, 2, 13, 2, 43, 2]) == [1, 2, 2, 3, 3, 4]
    assert result.status == TaskResultStatus.FAILED  # RETRIES=3 spent
    assert result.errors[0].exception_class is tasks.TaskAppError
    asynchronous = tasks.flaky_async.enqueue("async", failures=1)
    env.settle_sync()
    assert attempts_over(env, asynchronous, [4, 2]) == [1, 2]
    assert asynchronous.return_value == 2


def test_a_task_with_context_retries_its_body_on_the_backoff(env: TestEnv) -> None:
    result = tasks.flaky_with_steps.enqueue("feed", failures=1)
    env.settle_sync()
    assert tasks.attempts["feed"] == 1
    env.advance_sync(dt.timedelta(seconds=4))
    env.settle_sync()
    assert tasks.attempts["feed"] == 1  # BACKOFF: not before 5 s
    env.advance_sync(dt.timedelta(seconds=2))
    env.settle_sync()
    assert tasks.attempts["feed"] == 2
    result.refresh()
    assert result.return_value == "FEED"
    assert tasks.calls == ["feed"]  # its step ran once
    assert result.attempts == 1  # its step's: a failure outside a step is not counted


def test_an_unknown_result_does_not_exist(env: TestEnv) -> None:
    with pytest.raises(TaskResultDoesNotExist):
        tasks.add.get_result("01J00000000000000000000000")


def enqueue_view(request: HttpRequest) -> JsonResponse:
    result = tasks.add.enqueue(int(request.GET["a"]), int(request.GET["b"]))
    return JsonResponse({"id": result.id, "status": result.status})


def test_a_view_enqueues_a_task(env: TestEnv) -> None:
    mount(path("add", enqueue_view))
    answer = DjangoClient().get("/add", {"a": 20, "b": 22})
    assert answer.status_code == 200
    body = json.loads(answer.content)
    assert body["status"] == "READY"
    assert env.get_run(body["id"]).result_sync() == 42
    assert tasks.add.get_result(body["id"]).return_value == 42


def test_a_management_command_enqueues_a_task(env: TestEnv) -> None:
    out = StringIO()
    call_command("enqueue_add", "4", "5", stdout=out)
    result_id = out.getvalue().strip()
    assert env.get_run(result_id).result_sync() == 9
    result = tasks.add.get_result(result_id)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 9


def test_run_after_holds_the_task_until_then_on_the_virtual_clock(env: TestEnv) -> None:
    when = env.now + dt.timedelta(hours=2)
    result = tasks.record.using(run_after=when).enqueue("later")
    env.settle_sync()
    result.refresh()
    assert result.status == TaskResultStatus.READY
    assert result.started_at is None
    assert result.attempts == 0
    assert tasks.calls == []
    env.advance_sync(dt.timedelta(hours=1))
    assert tasks.calls == []
    done = finish(env, tasks.record.get_result(result.id))
    assert done.status == TaskResultStatus.SUCCESSFUL
    assert tasks.calls == ["later"]
    assert done.started_at is not None
    assert done.started_at >= when
    assert done.enqueued_at is not None
    assert done.enqueued_at < when


def test_priority_orders_the_tasks_of_a_queue_limited_to_one(env: TestEnv) -> None:
    holding = tasks.hold.enqueue()
    assert tasks.held.wait(10), "hold did not start"
    waiting = [
        tasks.record_serially.using(priority=priority).enqueue(label)
        for label, priority in (("low", -50), ("normal", 0), ("urgent", 90), ("high", 40))
    ]
    for result in waiting:  # each waits for the queue's one slot
        wait_until(functools.partial(parked, env, result), timeout=10, message="a wait")
        result.refresh()
        assert result.status == TaskResultStatus.READY
    assert tasks.calls == []
    tasks.release.set()
    assert finish(env, holding).return_value == "released"
    for result in waiting:
        finish(env, result)
    assert tasks.calls == ["urgent", "high", "normal", "low"]


def parked(env: TestEnv, result: Result) -> bool:
    waiting = env.get_run(result.id).describe_sync().waiting or {}
    return waiting.get("reason") == "concurrency"


def test_tasks_of_other_queues_do_not_wait_for_a_limited_one(env: TestEnv) -> None:
    holding = tasks.hold.enqueue()
    assert tasks.held.wait(10), "hold did not start"
    other = tasks.record.enqueue("free")
    assert finish(env, other).return_value == "free"
    tasks.release.set()
    assert finish(env, holding).status == TaskResultStatus.SUCCESSFUL


def test_a_task_enqueued_in_a_rolled_back_transaction_never_runs(env: TestEnv) -> None:
    rolled_back: list[Result] = []

    def fail_after_enqueue() -> None:
        with transaction.atomic():
            rolled_back.append(tasks.record.enqueue("rolled back"))
            raise RuntimeError("the view failed")

    with pytest.raises(RuntimeError):
        fail_after_enqueue()
    with transaction.atomic():
        committed = tasks.record.enqueue("committed")
        # in the outbox, seen by this transaction: ready, the run not started yet
        assert tasks.record.get_result(committed.id).status == TaskResultStatus.READY
    assert finish(env, wait_for(env, committed)).return_value == "committed"
    env.settle_sync()
    assert tasks.calls == ["committed"]
    with pytest.raises(TaskResultDoesNotExist):
        tasks.record.get_result(rolled_back[0].id)


def wait_for(env: TestEnv, result: Result) -> Result:
    """The result once the relay has delivered its outbox row (real time)."""

    def delivered() -> bool:
        try:
            env.get_run(result.id).describe_sync()
        except stepline.RunNotFoundError:
            return False
        return True

    wait_until(delivered, timeout=10, message="the relay to deliver the task")
    return result


def test_a_task_in_the_outbox_is_ready_until_the_relay_delivers_it(project: None) -> None:
    from stepline.django.models import OutboxMessage

    with TestEnv(stepline.django.get_client(), stepline.django.get_functions()):  # no relay
        with transaction.atomic():
            result = tasks.add.enqueue(1, 1)
        result.refresh()
        assert result.status == TaskResultStatus.READY
        assert result.args == [1, 1]
        assert result.enqueued_at is not None
        with pytest.raises(TaskResultDoesNotExist):
            tasks.add.get_result("01J" + "0" * 23)
    OutboxMessage.objects.all().delete()  # not for the next test's relay


def test_a_task_with_context_runs_steps(env: TestEnv) -> None:
    result = finish(env, tasks.with_steps.enqueue("ada"))
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == {
        "shout": "HELLO, ADA",
        "result_id": result.id,
        "attempt": 1,
        "run_id": result.id,
        "same": True,
    }
    steps = env.get_run(result.id).steps_sync()
    assert [s.name for s in steps] == ["greet", "shout"]
    assert result.attempts == 1


def test_an_async_task_runs_on_the_engine(env: TestEnv) -> None:
    result = finish(env, tasks.double.enqueue(21))
    assert result.return_value == 42
    in_steps = finish(env, tasks.double_in_steps.enqueue(5))
    assert in_steps.return_value == 10


@pytest.mark.anyio
async def test_aenqueue_and_aget_result(env: TestEnv) -> None:
    result = await tasks.add.aenqueue(1, 2)
    assert type(result) is TaskResult
    assert result.status == TaskResultStatus.READY
    assert await env.get_run(result.id).result() == 3
    got = await tasks.add.aget_result(result.id)
    assert type(got) is TaskResult
    assert got.return_value == 3
    assert got.attempts == 1
    failed = await tasks.give_up.aenqueue("declined")
    with pytest.raises(stepline.RunFailedError):
        await env.get_run(failed.id).result()
    read = await tasks.give_up.aget_result(failed.id)
    assert read.status == TaskResultStatus.FAILED
    assert read.errors[0].exception_class is stepline.NonRetriableError
    await result.arefresh()
    assert result.status == TaskResultStatus.SUCCESSFUL


def test_a_task_enqueues_tasks(env: TestEnv) -> None:
    ids = finish(env, tasks.fan_out.enqueue(["a", "b"])).return_value
    results = [finish(env, tasks.record.get_result(result_id)) for result_id in ids]
    assert [r.return_value for r in results] == ["a", "b"]
    assert sorted(tasks.calls) == ["a", "b"]


def test_the_backend_passes_its_system_check(env: TestEnv) -> None:
    assert task_backends["default"].check() == []


def test_a_non_retriable_error_fails_the_task_at_once(env: TestEnv) -> None:
    result = finish(env, tasks.give_up.enqueue("the card was declined"))
    assert result.status == TaskResultStatus.FAILED
    assert result.attempts == 1
    [error] = result.errors
    assert error.exception_class is stepline.NonRetriableError
    assert "the card was declined" in error.traceback
