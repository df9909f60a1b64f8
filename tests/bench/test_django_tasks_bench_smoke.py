"""Smoke test of ``bench/django_tasks_bench.py``: both Django Tasks backends, tiny.

No figure is judged: each side must run its tasks in a child process of its own (the
django-tasks-db side with its ``db_worker`` processes, Stepline's with the embedded
engine), every task, enqueued while the workers run and then as a backlog, must come back
``SUCCESSFUL`` with the right value through the backend's ``get_result()`` (the script
exits otherwise), and ``all.py`` must turn the JSON into its rows.
"""

from __future__ import annotations

import pytest

from tests.bench.test_bench_smoke import rows, run_json

pytestmark = [pytest.mark.process]

pytest.importorskip("django_tasks_db", reason="pip install -e '.[bench]'")


@pytest.mark.timeout(120)
def test_both_backends_run_every_task() -> None:
    data = run_json("django_tasks_bench.py", "--tasks", "8", "--rounds", "1", timeout=110)
    assert data["skipped"] == {}
    assert data["tasks"] == 8
    for side in ("db", "stepline"):
        for variant in ("add", "payload"):
            [measured] = data["sides"][side][variant]["rounds"]
            assert measured["tasks"] == 8
            assert measured["end_to_end_s"] > 0
            assert measured["drain_s"] > 0
            assert measured["enqueue_per_s"] == pytest.approx(8 / measured["enqueue_s"])
    assert set(data["ratios"]) == {"add", "payload"}
    table = rows("django-tasks", data)
    assert table[0][0] == "django tasks/s enqueued, add two numbers, 8 tasks"
    assert table[0][2].endswith("django-tasks-db")
    assert table[2][0] == "django tasks/s drained from a backlog, add two numbers, 8 tasks"
    assert len(table) == 6
