"""SIGKILL the engine while a run publishes and a reader follows its stream over SSE.

The engine is a real process (``tests/apps/engine_server.py``) on SQLite or Postgres.
A publisher sends durable messages one by one (each with its own durable id, retried
until answered, as the SDK's durable publish is); a reader follows
``GET /v1/runs/{id}/stream`` as Server-Sent Events and, when the connection drops,
reconnects with ``Last-Event-ID`` as a browser does. The engine is killed mid-stream
and restarted on the same port. The reader must see every message exactly once, in
order, then the stream's end.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from stepline._status import RunStatus
from stepline.engine._store import Store
from tests._support.polling import wait_until
from tests._support.processes import APPS, clean_env, free_port, spawn, wait_until_up
from tests.engine.test_store_contract import run_record, with_store

pytestmark = [pytest.mark.process]

ENGINE = APPS / "engine_server.py"
RUN = "01RUNKILLSTREAM00000000001"
TOTAL = 80
CSRF = {"x-stepline-csrf": "1"}
#: between attempts while the engine is down (a retry's pause, not synchronisation)
BACKOFF = 0.05


class Reader(threading.Thread):
    """Follows the run's stream over SSE, reconnecting after ``Last-Event-ID``."""

    def __init__(self, base: str) -> None:
        super().__init__(name="sse-reader", daemon=True)
        self.base = base
        self.messages: list[dict[str, Any]] = []
        self.end: dict[str, Any] | None = None
        self.reconnects = 0
        self.progress = threading.Condition()

    def run(self) -> None:
        while self.end is None:
            headers = {"accept": "text/event-stream"}
            if self.messages:
                headers["last-event-id"] = str(self.messages[-1]["seq"])
            try:
                with httpx.stream(
                    "GET", f"{self.base}/v1/runs/{RUN}/stream", headers=headers, timeout=30
                ) as answer:
                    if answer.status_code != 200:
                        raise httpx.TransportError(f"answered {answer.status_code}")
                    self._follow(answer)
            except httpx.HTTPError:
                self.reconnects += 1
                time.sleep(BACKOFF)

    def _follow(self, answer: httpx.Response) -> None:
        event = ""
        for line in answer.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "message":
                with self.progress:
                    self.messages.append(json.loads(line[6:]))
                    self.progress.notify_all()
            elif line.startswith("data: ") and event == "end":
                self.end = json.loads(line[6:])
                return


def publish(base: str, n: int) -> int:
    """Publish durable message ``n`` until the engine answers; returns its seq."""
    body = {"messages": [{"topic": "work", "data": {"n": n}, "id": f"step-{n}"}]}

    def answered() -> int | None:
        try:
            answer = httpx.post(f"{base}/v1/runs/{RUN}/stream", json=body, timeout=10)
        except httpx.HTTPError:
            return None
        assert answer.status_code == 200, answer.text
        seq: int = answer.json()["data"]["seqs"][0]
        return seq

    return wait_until(
        answered, timeout=60, interval=BACKOFF, message=f"message {n} to be published"
    )


def seed(db: str) -> None:
    async def body(store: Store) -> None:
        record = run_record(RUN, status=RunStatus.RUNNING, created_at=time.time())
        await store.atomic(lambda tx: tx.insert_run(record))

    with_store(db, body)


@pytest.mark.timeout(180)
def test_sse_reader_gets_every_durable_message_once_across_a_sigkill(
    db: str, tmp_path: Path
) -> None:
    seed(db)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "engine.log"
    env = clean_env()

    def start() -> subprocess.Popen[bytes]:
        proc = spawn([sys.executable, str(ENGINE), str(port), db], log=log, env=env, append=True)
        wait_until_up(f"{base}/health", proc, log=log)
        return proc

    proc = start()
    reader = Reader(base)
    reader.start()
    seqs: list[int] = []
    try:
        for n in range(TOTAL):
            seqs.append(publish(base, n))
            if n == TOTAL // 3:
                # mid-stream: the reader holds an open stream and part of the messages
                wait_until(lambda: len(reader.messages) >= 10, message="the reader to read")
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                proc = start()
            if n == 2 * TOTAL // 3:  # and once more, wherever the reader is
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                proc = start()
        # the same durable ids again: answered with their first seqs, stored once
        assert [publish(base, n) for n in range(0, TOTAL, 7)] == seqs[::7]
        cancel = httpx.post(f"{base}/v1/runs/{RUN}/cancel", headers=CSRF, timeout=10)
        assert cancel.status_code == 200, cancel.text
        wait_until(lambda: reader.end is not None, timeout=60, message="the stream's end")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    reader.join(10)
    assert seqs == list(range(1, TOTAL + 1))
    assert [m["data"]["n"] for m in reader.messages] == list(range(TOTAL))
    assert [m["seq"] for m in reader.messages] == list(range(1, TOTAL + 1))
    assert reader.end == {"status": "Cancelled"}
    assert reader.reconnects >= 2, "the kills cut the reader's stream"
