"""``stepline.django``'s outbox on real SQLite, Postgres and MariaDB (Django in a child process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import stepline.django
from stepline._protocol import event_ids
from tests._support.outbox_db import Database, fresh
from tests._support.outbox_shop import Shop
from tests._support.processes import APPS

from .test_sqlalchemy_outbox import shape

pytestmark = [pytest.mark.process]

CASE = APPS / "outbox_django_writer.py"
ROOT = Path(__file__).resolve().parents[2]


def run_case(database: Database, tmp_path: Path) -> dict[str, Any]:
    output = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, str(CASE), database.dialect, database.url, str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(output.read_text())
    return result


def test_django_writes_commit_and_roll_back_with_the_transaction_on_the_migrated_table(
    database: Database, shop: Shop, tmp_path: Path
) -> None:
    result = run_case(database, tmp_path)
    sent, run_id = result["committed"]["sent"], result["committed"]["run_id"]
    # the rolled-back transaction wrote nothing: still the two committed rows
    assert result["rows_after_commit"] == result["rows_after_rollback"] == 2

    rows = database.rows()
    assert [r["kind"] for r in rows] == ["event", "start", "start", "event", "start", "event"]
    bodies = [json.loads(r["body"]) for r in rows]
    assert event_ids.seeded(bodies[0]["seed"], 1) == sent
    assert bodies[0]["events"][0]["data"] == {"order_id": 7}
    assert bodies[1] == {
        "function_id": "shop-process-order",
        "data": {"order_id": 8},
        "run_id": run_id,
        "idempotency_key": None,
        "started_by": "user-1",
    }
    # several writes in one transaction: in the order they were made
    first, pair, third = result["several"]
    assert [bodies[2]["run_id"], bodies[4]["run_id"]] == [first, third]
    assert event_ids.seeded(bodies[3]["seed"], 2) == pair
    # outside atomic(): committed at once
    assert result["autocommit_in_atomic_block"] is False
    assert event_ids.seeded(bodies[5]["seed"], 1) == result["autocommit_sent"]
    assert all(r["attempts"] == 0 and r["delivered_at"] is None for r in rows)
    # the migration made the same table as the plain DDL
    with fresh(database.dialect, tmp_path / "plain") as plain:
        plain.create_table()
        assert shape(database.sqlalchemy_url()) == shape(plain.sqlalchemy_url())

    # delivered by the real relay: the engine keeps the ids the view got
    assert shop.relay(database) == 6
    assert all(row["delivered_at"] is not None for row in database.rows())
    assert shop.client.get_run_sync(run_id).result(timeout=20) == {"order": 8}
    [by_event] = [r for r in shop.runs() if r.event_ids == tuple(sent)]
    assert shop.client.get_run_sync(by_event.run_id).result(timeout=20) == {"order": 7}


def test_the_writers_are_exported() -> None:
    assert stepline.django.send_on_commit.__module__ == "stepline.django._outbox"
    assert stepline.django.start_in_transaction.__module__ == "stepline.django._outbox"
