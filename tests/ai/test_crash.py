"""SIGKILL a durable agent's process mid-response and mid-tool-call; restarted, it finishes.

``crash_agent`` runs the agent on the embedded engine in a process of its own, with the
client's default checkpointing (steps reported with the call's answer): a model request's
and a tool call's steps are committed as they complete all the same. The first life is
killed while the first model request streams (some of its text already on the run's
stream), the second while the tool runs (the first request recorded), the third finishes
the run. Afterwards the first request ran twice (once per life that reached it
unrecorded) and never after it was recorded, the tool twice, the last request once; the
stream marks the first life's attempt discarded, and its fold is the run's text once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from stepline.ai import fold
from tests._support.databases import STORES, database
from tests._support.polling import wait_until
from tests._support.processes import clean_env, log_tail, spawn, stop

pytestmark = [pytest.mark.process]

ROOT = Path(__file__).resolve().parents[2]
WAIT = 60.0


def _lines(workdir: Path) -> list[list[str]]:
    log = workdir / "log"
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def _life(workdir: Path, db: str, face: str, slow: str, kill_when: str | None) -> None:
    """One life of the app: killed once ``kill_when`` shows in its log, else run to its end."""
    command = [sys.executable, "-m", "tests.ai.crash_agent", db, str(workdir), face]
    out = workdir / "app.out"
    proc = spawn(command, log=out, env=clean_env(SLOW=slow), cwd=ROOT, append=True)
    try:
        if kill_when is None:
            assert proc.wait(WAIT) == 0, log_tail(out)
            return

        def reached() -> bool:
            assert proc.poll() is None, log_tail(out)
            return any(
                " ".join(line[:-1]) == kill_when and line[-1] == str(proc.pid)
                for line in _lines(workdir)
            )

        wait_until(reached, timeout=WAIT, message=lambda: f"{kill_when!r}: {log_tail(out)}")
        proc.kill()  # SIGKILL
        proc.wait(WAIT)
    finally:
        stop(proc)


@pytest.mark.parametrize("face", ["async", "sync"])
@pytest.mark.parametrize("store", STORES)
def test_killed_mid_response_and_mid_tool_the_run_finishes_and_nothing_recorded_runs_again(
    tmp_path: Path, store: str, face: str
) -> None:
    with database(store, tmp_path) as db:
        _life(tmp_path, db, face, "model", kill_when="token 1 4")
        _life(tmp_path, db, face, "tool", kill_when="tool-begin")
        _life(tmp_path, db, face, "", kill_when=None)
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["output"] == "The answer is 42."
    assert result["steps"] == [
        "crashy:model-request-1",
        "crashy:model-request-1:done",
        "crashy:tool:lookup:c1",
        "crashy:model-request-2",
        "crashy:model-request-2:done",
    ]

    lines = _lines(tmp_path)
    lives = list(dict.fromkeys(line[-1] for line in lines))  # the pids, in order
    assert len(lives) == 3
    began = [
        (line[0], line[1] if len(line) > 2 else "", lives.index(line[-1]))
        for line in lines
        if line[0] in ("model-begin", "tool-begin")
    ]
    # request 1: killed in life 0, recorded in life 1, never again; the tool: killed in
    # life 1, run again in life 2 (it was not recorded); request 2 once, in life 2
    assert began == [
        ("model-begin", "1", 0),
        ("model-begin", "1", 1),
        ("tool-begin", "", 1),
        ("tool-begin", "", 2),
        ("model-begin", "2", 2),
    ]

    stream = result["stream"]
    first = [m for m in stream if m["step"] == "crashy:model-request-1"]
    attempts = list(dict.fromkeys(m["attempt"] for m in first if m["type"] == "text"))
    assert len(attempts) == 2, first  # the killed attempt got some text out
    killed, recorded = attempts
    assert {"type": "discarded", "step": "crashy:model-request-1", "attempt": killed} in first
    done = [m for m in first if m["type"] == "done"]
    assert [m["attempt"] for m in done] == [recorded]
    tool_results = [m for m in stream if m["type"] == "tool-result"]
    assert [m["content"] for m in tool_results] == ["42"]
    text = "Let me look that up for you, one moment.\n\nThe answer is 42."
    assert fold(stream) == text
    live = [m for m in stream if m["type"] != "done"]  # a page that missed the markers
    assert fold(live) == text
