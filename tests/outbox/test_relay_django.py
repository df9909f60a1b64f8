"""``manage.py stepline relay`` on Django's own connection (SQLite, Postgres, MariaDB).

The child process commits through ``stepline.django``'s writers and then relays with the
management command to a real engine process (``BASE_URL``): one event and one run each,
the rows marked delivered, and SIGTERM stops it cleanly.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests._support import processes
from tests._support.outbox_db import Database
from tests._support.polling import wait_until
from tests._support.processes import APPS

from .relay_support import engine_process, pending

pytestmark = [pytest.mark.process]

CASE = APPS / "outbox_django_relay.py"
ROOT = Path(__file__).resolve().parents[2]


def test_manage_py_stepline_relay_delivers_the_projects_outbox(
    database: Database, tmp_path: Path
) -> None:
    out, log = tmp_path / "promised.json", tmp_path / "django.log"
    with engine_process(tmp_path) as engine:
        command = [sys.executable, str(CASE), database.dialect, database.url, engine.url]
        proc = processes.spawn([*command, str(out)], log=log, cwd=ROOT)
        try:
            wait_until(
                lambda: out.exists() and not pending(database) and len(engine.runs()) == 2,
                timeout=30,
                message=lambda: f"the relay's delivery:\n{processes.log_tail(log)}",
            )
            assert proc.poll() is None, processes.log_tail(log)
        finally:
            processes.stop(proc)
        assert proc.returncode == 0, processes.log_tail(log)  # SIGTERM: a clean stop
        promised = json.loads(out.read_text())
        assert [e["internal_id"] for e in engine.events()] == promised["events"]
        assert promised["run_id"] in {run["run_id"] for run in engine.runs()}
        assert all(row["attempts"] == 1 for row in database.rows())


EMBEDDED_CASE = APPS / "outbox_django_embedded_relay.py"


def test_the_embedded_engine_relays_the_django_projects_own_database(
    database: Database, tmp_path: Path
) -> None:
    out, log = tmp_path / "result.json", tmp_path / "django.log"
    engine_db = str(tmp_path / "engine.db")
    command = [sys.executable, str(EMBEDDED_CASE), database.dialect, database.url, engine_db]
    proc = processes.spawn([*command, str(out)], log=log, cwd=ROOT)
    assert proc.wait(90) == 0, processes.log_tail(log)
    result = json.loads(out.read_text())
    assert result == {"started": {"order": 8}, "by_event": [{"order": 7}], "runs": 2}
    assert not pending(database)
