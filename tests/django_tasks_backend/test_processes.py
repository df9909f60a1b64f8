"""``SteplineBackend`` across processes: a SIGKILL mid-task, results and the admin elsewhere.

``tests/apps/django_tasks_site`` is the project (the embedded engine on an SQLite file
with a 2 s lease). One process enqueues ``survive`` and is killed while it runs; a second
one's engine takes the task over once the lease lapses and finishes it; a third reads the
result with ``get_result`` and lists runs in the Django admin.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests._support.polling import wait_until
from tests._support.processes import clean_env, spawn, stop

pytestmark = [pytest.mark.process]

ROOT = Path(__file__).resolve().parents[2]
SITE = "tests.apps.django_tasks_site"


@pytest.mark.timeout(150)  # three Django processes, under whatever load the machine has
def test_a_task_killed_mid_run_completes_once_after_a_restart(tmp_path: Path) -> None:
    marks, log = tmp_path / "marks", tmp_path / "site.log"
    command = [sys.executable, "-m", SITE, str(tmp_path), "work"]
    first = spawn(command, log=log, env=clean_env(ENQUEUE="1"), cwd=ROOT)
    try:
        wait_until(
            lambda: marks.exists() and "begin" in marks.read_text(),
            timeout=30,
            message=lambda: f"the task to begin: {log.read_text()[-2000:]}",
        )
        first.kill()  # SIGKILL while the task runs
        first.wait(10)
    finally:
        stop(first)
    result_id = (tmp_path / "id").read_text()
    assert marks.read_text().split() == ["begin"]

    second = spawn(command, log=log, env=clean_env(), cwd=ROOT, append=True)
    try:
        inspected = subprocess.run(
            [sys.executable, "-m", SITE, str(tmp_path), "inspect", result_id],
            cwd=ROOT,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=100,
            check=False,
        )
    finally:
        stop(second)
    assert inspected.returncode == 0, inspected.stderr[-3000:] + log.read_text()[-2000:]
    report = json.loads(inspected.stdout.strip().splitlines()[-1])
    assert report["status"] == "SUCCESSFUL", report
    assert report["attempts"] == 1  # a lapsed lease spends no attempt
    assert report["return_value"] == 2  # the second execution finished it
    assert report["runs"] == [result_id]  # one run, completed once
    assert report["admin_lists_it"], report
    assert marks.read_text().split() == ["begin", "begin", "end"]
