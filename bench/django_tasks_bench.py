"""Tasks/s through a Django Tasks backend: django-tasks-db and its worker against Stepline.

The same Django project (``_django_tasks_site.py``), the same tasks
(``_django_tasks_jobs.py``) and the same SQLite settings (WAL, ``synchronous=NORMAL``)
for both sides, in the same run, on the same machine:

* ``db``: django-tasks-db's ``DatabaseBackend``: ``task.enqueue()`` inserts a row,
  ``manage.py db_worker`` processes (``--workers`` of them, ``--interval`` between polls
  of an empty queue) claim rows and run them;
* ``stepline``: ``stepline.django.tasks.SteplineBackend`` with ``"ENGINE": "embedded"``:
  ``task.enqueue()`` starts a durable run, and the engine, on threads of the enqueuing
  process (as in a web process), calls the task as the run's one step.

Each measurement is a fresh child process on a fresh database (migrated, workers up and
idle and one task run before the clock starts). Two variants: ``add`` (two numbers) and
``payload`` (a 1 KB string argument, its length returned). Two phases:

* **live**: ``--tasks`` tasks enqueued one after the other from one thread, as a view
  would, while the workers run them. **enqueue/s**: tasks divided by the time the
  ``enqueue()`` calls took; **completed/s**: tasks divided by the time from the first
  ``enqueue()`` to the last task's ``finished_at`` (queueing, running and recording
  every result);
* **backlog**: as many tasks enqueued while nothing runs them (no ``db_worker``; the
  Stepline function paused, so its runs wait), then released (the workers started; the
  function resumed). **drained/s**: tasks divided by the time from the first task's
  ``started_at`` to the last one's ``finished_at``: how fast the backend works through
  a queue, with no enqueuing beside it.

Every result is read back through the backend's ``get_result()``: each must be
``SUCCESSFUL`` with the right ``return_value``, else the child fails. The figures are
the best of ``--rounds`` interleaved rounds; the ratio is Stepline's over
django-tasks-db's (higher: Stepline faster). A side whose backend cannot be imported is
reported as skipped with the reason.

Run: ``.venv/bin/python bench/django_tasks_bench.py [--tasks 500] [--rounds 2]
[--workers 1] [--quick] [--json]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
SIDES = ("db", "stepline")
VARIANTS = ("add", "payload")
PAYLOAD = "x" * 1024
#: how often the child looks whether every task has finished
POLL_S = 0.02


# -- the parent: rounds of children, one table ----------------------------------------------------


def missing(side: str) -> str | None:
    """Why a side cannot run in this environment, or None."""
    needs = ["django_tasks_db"] if side == "db" else []
    if importlib.util.find_spec("django.tasks") is None:  # Django < 6.0: the backport
        needs.append("django_tasks")
    for module in needs:
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[bench]')"
    if side == "stepline" and importlib.util.find_spec("stepline.django.tasks") is None:
        return "stepline.django.tasks (SteplineBackend) is not in this checkout yet"
    return None


def measure_child(
    side: str, variant: str, tasks: int, workers: int, interval: float, folder: Path
) -> dict[str, Any]:
    """One measurement in a fresh child process on a fresh database; its JSON."""
    database = folder / f"{side}-{variant}-{time.monotonic_ns()}.db"
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        side,
        "--variant",
        variant,
        "--tasks",
        str(tasks),
        "--workers",
        str(workers),
        "--interval",
        str(interval),
        "--database",
        str(database),
    ]
    done = subprocess.run(
        argv, capture_output=True, text=True, cwd=folder, timeout=600, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{side}/{variant} failed (exit {done.returncode}):\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def bench(
    tasks: int, rounds: int, workers: int, interval: float, only: tuple[str, ...] = SIDES
) -> dict[str, Any]:
    skipped = {side: why for side in only if (why := missing(side)) is not None}
    sides = [side for side in only if side not in skipped]
    measured: dict[str, dict[str, list[dict[str, Any]]]] = {
        side: {variant: [] for variant in VARIANTS} for side in sides
    }
    with tempfile.TemporaryDirectory(prefix="django-tasks-bench-") as tmp:
        for number in range(rounds):
            for variant in VARIANTS:
                for side in sides if number % 2 == 0 else reversed(sides):
                    one = measure_child(side, variant, tasks, workers, interval, Path(tmp))
                    measured[side][variant].append(one)
                    print(
                        f"  round {number + 1} {side:8} {variant:7} "
                        f"enqueue {one['enqueue_per_s']:7,.0f}/s  "
                        f"completed {one['completed_per_s']:7,.0f}/s  "
                        f"drained {one['drained_per_s']:7,.0f}/s",
                        file=sys.stderr,
                        flush=True,
                    )
    best = {
        side: {
            variant: {
                "enqueue_per_s": max(r["enqueue_per_s"] for r in runs),
                "completed_per_s": max(r["completed_per_s"] for r in runs),
                "drained_per_s": max(r["drained_per_s"] for r in runs),
                "rounds": runs,
            }
            for variant, runs in by_variant.items()
        }
        for side, by_variant in measured.items()
    }
    ratios: dict[str, dict[str, float]] = {}
    if len(sides) == 2:
        for variant in VARIANTS:
            ratios[variant] = {
                key: best["stepline"][variant][key] / best["db"][variant][key]
                for key in ("enqueue_per_s", "completed_per_s", "drained_per_s")
            }
    return {
        "tasks": tasks,
        "rounds": rounds,
        "workers": workers,
        "interval_s": interval,
        "payload_bytes": len(PAYLOAD),
        "sides": best,
        "skipped": skipped,
        "ratios": ratios,
        "versions": versions(),
    }


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("django", "django-tasks", "django-tasks-db", "stepline"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "missing"
    return found


def report(data: dict[str, Any]) -> str:
    v = data["versions"]
    lines = [
        f"load average {' '.join(map(str, data.get('loadavg_start', [])))} at start; "
        f"{data['tasks']} tasks a measurement, best of {data['rounds']} rounds; "
        f"django {v['django']}, django-tasks {v['django-tasks']}, "
        f"django-tasks-db {v['django-tasks-db']} ({data['workers']} db_worker, "
        f"--interval {data['interval_s']:g}); SQLite WAL + synchronous=NORMAL for both",
        f"{'variant':9} {'side':10} {'enqueue/s':>10} {'completed/s':>12} {'drained/s':>10}",
    ]
    for side, by_variant in data["sides"].items():
        for variant, best in by_variant.items():
            lines.append(
                f"{variant:9} {side:10} {best['enqueue_per_s']:>10,.0f} "
                f"{best['completed_per_s']:>12,.0f} {best['drained_per_s']:>10,.0f}"
            )
    for variant, ratio in data["ratios"].items():
        lines.append(
            f"{variant:9} {'ratio':10} {ratio['enqueue_per_s']:>9.2f}x "
            f"{ratio['completed_per_s']:>11.2f}x {ratio['drained_per_s']:>9.2f}x  "
            "(stepline / django-tasks-db)"
        )
    for side, why in data["skipped"].items():
        lines.append(f"{side}: skipped: {why}")
    return "\n".join(lines)


# -- the child: one side, one variant, on a fresh database ----------------------------------------


def setup_django(side: str, database: Path) -> None:
    os.environ["BENCH_TASKS_BACKEND"] = side
    os.environ["BENCH_TASKS_DB"] = str(database)
    os.environ["DJANGO_SETTINGS_MODULE"] = "_django_tasks_site"
    sys.path.insert(0, str(BENCH))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


@contextmanager
def db_workers(count: int, interval: float, database: Path) -> Iterator[None]:
    """``count`` ``db_worker`` processes, each idle and polling before this yields."""
    env = {
        **os.environ,
        "BENCH_TASKS_BACKEND": "db",
        "BENCH_TASKS_DB": str(database),
        "DJANGO_SETTINGS_MODULE": "_django_tasks_site",
        "PYTHONPATH": os.pathsep.join([str(BENCH), os.environ.get("PYTHONPATH", "")]),
    }
    argv = [
        sys.executable,
        "-m",
        "django",
        "db_worker",
        "--no-startup-delay",
        "--no-reload",
        f"--interval={interval}",
        "--verbosity=1",
    ]
    logs = [database.with_name(f"{database.stem}-worker{n}.log") for n in range(count)]
    procs = []
    for log in logs:
        with log.open("w") as out:  # a file, not a pipe: the worker logs every task
            procs.append(subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT))
    try:
        deadline = time.monotonic() + 60
        for proc, log in zip(procs, logs, strict=True):
            while "Starting worker" not in log.read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"db_worker did not start:\n{log.read_text()}")
                time.sleep(0.05)
        yield
    finally:
        for proc in procs:
            proc.terminate()  # the worker ends its current task, then exits
        for proc in procs:
            proc.wait(timeout=30)


@contextmanager
def stepline_workers(count: int, interval: float, database: Path) -> Iterator[None]:
    """Stepline's engine, embedded in this process: started (leasing work) before this yields."""
    del count, interval, database  # the engine runs every task; nothing polls
    import stepline.embedded

    stepline.embedded.start_all()
    yield


def child(
    side: str, variant: str, tasks: int, workers: int, interval: float, database: Path
) -> dict[str, Any]:
    setup_django(side, database)
    import _django_tasks_jobs as jobs

    job: Any = jobs.add if variant == "add" else jobs.measure
    calls: list[tuple[Any, ...]] = (
        [(i, i) for i in range(tasks)] if variant == "add" else [(PAYLOAD,)] * tasks
    )
    expected = [2 * i for i in range(tasks)] if variant == "add" else [len(PAYLOAD)] * tasks
    if side == "db":
        with db_workers(workers, interval, database):
            enqueue_s, began_at, results = live(job, calls)
        backlog = [job.enqueue(*args).id for args in calls]  # no worker running
        with db_workers(workers, interval, database):
            drained = wait_done(job, backlog)
    else:
        with stepline_workers(workers, interval, database):
            enqueue_s, began_at, results = live(job, calls)
            with paused(job):  # its runs are created and wait, as in a queue with no worker
                backlog = [job.enqueue(*args).id for args in calls]
            drained = wait_done(job, backlog)
    check(results, expected)
    check(drained, expected)
    finished = max(r.finished_at for r in results)
    end_to_end_s = (finished - began_at).total_seconds()
    drain_s = (
        max(r.finished_at for r in drained) - min(r.started_at for r in drained)
    ).total_seconds()
    return {
        "side": side,
        "variant": variant,
        "tasks": tasks,
        "enqueue_s": enqueue_s,
        "end_to_end_s": end_to_end_s,
        "drain_s": drain_s,
        "enqueue_per_s": tasks / enqueue_s,
        "completed_per_s": tasks / end_to_end_s,
        "drained_per_s": tasks / drain_s,
    }


def live(job: Any, calls: list[tuple[Any, ...]]) -> tuple[float, dt.datetime, list[Any]]:
    """Enqueues while the workers run: the enqueue time, when it began, every result."""
    warm_up = job.enqueue(*calls[0])  # imports, connections and caches, then the clock
    wait_done(job, [warm_up.id])
    began_at = dt.datetime.now(dt.timezone.utc)
    began = time.perf_counter()
    ids = [job.enqueue(*args).id for args in calls]
    enqueue_s = time.perf_counter() - began
    return enqueue_s, began_at, wait_done(job, ids)


@contextmanager
def paused(job: Any) -> Iterator[None]:
    """The task's Stepline function paused (runs are created, none runs), then resumed."""
    import stepline.django

    [function] = [f for f in stepline.django.get_functions() if f.id == job.module_path]
    handle = stepline.django.get_client().get_function_sync(function)
    handle.pause(reason="django_tasks_bench: a backlog")
    try:
        yield
    finally:
        handle.resume()


def check(results: list[Any], expected: list[Any]) -> None:
    """Every task ``SUCCESSFUL`` with the value it should have returned, with its times."""
    wrong = [
        (r.id, r.status.value, r.return_value if r.status.value == "SUCCESSFUL" else None)
        for r, want in zip(results, expected, strict=True)
        if r.status.value != "SUCCESSFUL"
        or r.return_value != want
        or r.started_at is None
        or r.finished_at is None
    ]
    if wrong:
        raise SystemExit(f"{len(wrong)} tasks did not succeed as expected, e.g. {wrong[:3]}")


def wait_done(job: Any, ids: list[Any], timeout: float = 300) -> list[Any]:
    """Every task's result once it has finished, read through the backend's own API.

    Only the last task is asked about until it has finished (one cheap read a poll, so
    the waiting costs the backend little), then each in turn, waiting for any still going.
    """
    done = ("SUCCESSFUL", "FAILED")
    deadline = time.monotonic() + timeout
    results = []
    for task_id in [ids[-1], *ids]:
        while (result := job.get_result(task_id)).status.value not in done:
            if time.monotonic() > deadline:
                raise SystemExit(f"task {task_id} unfinished after {timeout} s: {result.status}")
            time.sleep(POLL_S)
        results.append(result)
    return results[1:]


# -- the command ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=500, help="tasks a measurement")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    parser.add_argument("--workers", type=int, default=1, help="db_worker processes")
    parser.add_argument(
        "--interval", type=float, default=0.01, help="db_worker's poll of an empty queue, s"
    )
    parser.add_argument(
        "--only", action="append", choices=SIDES, help="measure this side only (repeatable)"
    )
    parser.add_argument("--quick", action="store_true", help="20 tasks, 1 round (a smoke run)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--database", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        one = child(
            args.child, args.variant, args.tasks, args.workers, args.interval, args.database
        )
        print(json.dumps(one))
        return 0
    if args.quick:
        args.tasks, args.rounds = 20, 1
    only = tuple(side for side in SIDES if side in (args.only or SIDES))
    load = os.getloadavg()
    data = bench(args.tasks, args.rounds, args.workers, args.interval, only)
    data["loadavg_start"] = [round(x, 2) for x in load]
    data["python"] = platform.python_version()
    data["cpus"] = os.cpu_count()
    print(json.dumps(data, indent=2) if args.json else report(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
