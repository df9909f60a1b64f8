"""What the engine reads per run while a caller waits for its result (a budget).

``handle.result()`` long-polls ``GET /v1/runs/{id}?wait=``: the route reads the run once,
after its waiter is registered, and the run's end is handed to the waiter by the commit
that ends it; no second read checks whether it had ended meanwhile (1.0 reads per run,
against 1.65 with that second read). The start's commit names the runs it ended (``Tx.ended_runs``:
none, or those a singleton start cancelled), so a caller already waiting when it is
announced costs no batched read (the embedded client's blocking start announces it just
after its own commit: 1.76 reads per run without). Reads are counted at the SQLite
store's reader.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

import stepline
from stepline.embedded import EmbeddedEngine
from stepline.engine._store import sqlite as _sqlite

RUNS = 20


class Reads:
    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def note(self) -> None:
        with self._lock:
            self.count += 1


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Reads:
    seen = Reads()
    read = _sqlite.SqliteStore._read_sync

    def counted(self: _sqlite.SqliteStore, work: Any) -> Any:
        seen.note()
        return read(self, work)

    monkeypatch.setattr(_sqlite.SqliteStore, "_read_sync", counted)
    return seen


@pytest.mark.parametrize(
    "checkpointing",
    [True, stepline.Checkpointing(buffered_steps=1), False],
    ids=["checkpointed", "per-step checkpoints", "step-by-step"],
)
def test_waiting_for_a_runs_result_reads_it_once(
    tmp_path: Path, reads: Reads, checkpointing: bool | stepline.Checkpointing
) -> None:
    client = stepline.Client("budget", is_production=False, environ={}, checkpointing=checkpointing)

    @client.function(id="three", trigger=stepline.TriggerEvent(event="budget/three"))
    def three(ctx: stepline.SyncContext) -> object:
        for i in range(3):
            ctx.step.run(f"s{i}", lambda i=i: i)
        return ctx.event.data["k"]

    engine = EmbeddedEngine(
        client, [three], database=str(tmp_path / "reads.db"), checkpointing=bool(checkpointing)
    )
    engine.start()
    try:
        client.start_sync(three, {"k": -1}).result(timeout=30)  # warm
        reads.count = 0
        outputs = [client.start_sync(three, {"k": k}).result(timeout=30) for k in range(RUNS)]
        per_run = reads.count / RUNS
    finally:
        engine.stop()
        client.close()
    assert outputs == list(range(RUNS))
    # 1 read per run: the long poll's own; the waiters' 0.25 s recheck may add a few
    assert per_run <= 1.2, f"{per_run:.2f} reads per run"
