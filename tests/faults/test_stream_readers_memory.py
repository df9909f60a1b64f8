"""Many readers of one run's stream of large messages cost the engine a bounded memory.

A real engine process on SQLite; a run's stream holds 120 messages of 256 KiB (30 MiB).
Ten readers open its SSE form on raw sockets and read nothing: each one's stream reads a
page and waits to send it. A page holds at most ``PAGE_BYTES`` (1 MiB) of message data,
so the engine's resident memory grows by a few MiB a reader, not by the 100 messages
(25 MiB, held two or three times over as rows and encodings) a page of count alone
held. The figures measured are printed (``pytest -s``) and quoted in SECURITY.md.
"""

from __future__ import annotations

import signal
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests._support.processes import clean_env, free_port, spawn, wait_until_up

from .test_stream_kill import ENGINE, RUN, seed
from .test_stream_memory import rss_kib

COUNT = 120
SIZE = 256 * 1024
BATCH = 10
READERS = 10
#: the most the ten stalled readers may add to the engine's resident memory
BOUND_KIB = 64 * 1024


def publish(base: str, first: int) -> None:
    pad = "x" * (SIZE - 20)
    messages = [
        {"topic": "big", "data": {"n": n, "pad": pad}, "id": None}
        for n in range(first, first + BATCH)
    ]
    answer = httpx.post(f"{base}/v1/runs/{RUN}/stream", json={"messages": messages}, timeout=30)
    assert answer.status_code == 200, answer.text


def settled_rss(pid: int, *, seconds: float = 3.0) -> int:
    """The engine's resident memory once it has stopped growing (or after ``seconds``)."""
    deadline = time.monotonic() + seconds
    last = rss_kib(pid)
    while time.monotonic() < deadline:
        time.sleep(0.25)  # sampling the growth of another process: nothing to wait on
        now = rss_kib(pid)
        if now == last:
            return now
        last = now
    return last


@pytest.mark.timeout(240)
def test_ten_stalled_readers_of_large_messages_cost_the_engine_a_page_each(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "e.db")
    seed(db)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "engine.log"
    proc = spawn([sys.executable, str(ENGINE), str(port), db], log=log, env=clean_env())
    readers: list[socket.socket] = []
    try:
        wait_until_up(f"{base}/health", proc, log=log)
        for first in range(0, COUNT, BATCH):
            publish(base, first)
        # warm up: the routes, the store and the allocator have served a reader once
        page = httpx.get(f"{base}/v1/runs/{RUN}/stream", params={"limit": 1000}, timeout=30)
        assert page.status_code == 200
        assert len(page.content) < 2 * 1024 * 1024, len(page.content)  # a MiB, not 1,000
        before = settled_rss(proc.pid)
        request = (
            f"GET /v1/runs/{RUN}/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()
        for _ in range(READERS):
            reader = socket.socket()
            reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
            reader.connect(("127.0.0.1", port))
            reader.sendall(request)
            head = reader.recv(1024)  # the headers; then the reader reads nothing
            assert head.startswith(b"HTTP/1.1 200"), head
            readers.append(reader)
        after = settled_rss(proc.pid)
        grown = after - before
        print(
            f"\nengine RSS: {before // 1024} MiB before, {after // 1024} MiB with {READERS} "
            f"stalled SSE readers of {COUNT} x {SIZE // 1024} KiB messages "
            f"(+{grown // 1024} MiB, {grown // READERS} KiB a reader)"
        )
        assert grown < BOUND_KIB, (
            f"the engine grew by {grown} KiB with {READERS} readers that read nothing"
        )
    finally:
        for reader in readers:
            reader.close()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
