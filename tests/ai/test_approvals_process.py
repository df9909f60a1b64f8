"""An approval answered after the process that asked was killed and started again.

``approval_agent`` runs a durable agent on the embedded engine in a process of its own.
The first life starts the run, which waits for a person's approval (no worker held), and
is SIGKILLed; the second starts on the same database, answers the approval through the
client, and the run resumes and finishes: the model's first request and the question
are never made again, the tool runs once, with the edited arguments.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests._support.databases import STORES, database
from tests._support.polling import wait_until
from tests._support.processes import clean_env, log_tail, spawn, stop

pytestmark = [pytest.mark.process]

ROOT = Path(__file__).resolve().parents[2]
WAIT = 60.0


def _life(workdir: Path, db: str, face: str, part: str) -> None:
    command = [sys.executable, "-m", "tests.ai.approval_agent", db, str(workdir), face, part]
    out = workdir / "app.out"
    proc = spawn(command, log=out, env=clean_env(), cwd=ROOT, append=True)
    try:
        if part == "answer":
            assert proc.wait(WAIT) == 0, log_tail(out)
            return

        def asked() -> bool:
            assert proc.poll() is None, log_tail(out)
            return (workdir / "approval").exists()

        wait_until(asked, timeout=WAIT, message=lambda: log_tail(out))
        proc.kill()  # SIGKILL: the run waits in the database, no process holds it
        proc.wait(WAIT)
    finally:
        stop(proc)


@pytest.mark.parametrize("face", ["async", "sync"])
@pytest.mark.parametrize("store", STORES)
def test_an_approval_answered_after_a_restart_resumes_the_run(
    tmp_path: Path, store: str, face: str
) -> None:
    with database(store, tmp_path) as db:
        _life(tmp_path, db, face, "ask")
        _life(tmp_path, db, face, "answer")
    result = json.loads((tmp_path / "result.json").read_text())
    run_id, approval_id = (tmp_path / "approval").read_text().split()
    assert approval_id.startswith(f"{run_id}-")
    assert result["pending"] == approval_id
    assert result["output"] == "tool said: refunded 300"
    assert result["steps"] == [
        "refunds:model-request-1",
        "refunds:model-request-1:done",
        "refunds:approval:refund:c1",
        "refunds:tool:refund:c1:approved",
        "refunds:model-request-2",
        "refunds:model-request-2:done",
    ]
    decision = result["approval"]
    assert (decision["decision"], decision["args"], decision["by"]) == (
        "approve",
        {"cents": 300},
        "ops:ann",
    )
    lines = [line.split() for line in (tmp_path / "log").read_text().splitlines()]
    lives = list(dict.fromkeys(line[-1] for line in lines))
    assert [(line[0], line[1], lives.index(line[-1])) for line in lines] == [
        ("model", "1", 0),
        ("tool", "300", 1),
        ("model", "2", 1),
    ]
