"""A reader that stops reading its stream does not make the engine buffer without bound.

A real engine process on SQLite; a reader opens the SSE form of a run's stream on a raw
socket and then reads nothing while 10,000 messages of 8 KiB (80 MiB) are published.
The engine reads the stream a page at a time and writes the next page only once the
server could send the last, so its resident memory stays far below what it would take
to hold the messages; then the reader reads on and gets every one of them, in order.
"""

from __future__ import annotations

import re
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest

from tests._support.processes import clean_env, free_port, spawn, wait_until_up

from .test_stream_kill import ENGINE, RUN, seed

pytestmark = [pytest.mark.process]

COUNT = 10_000
SIZE = 8 * 1024
BATCH = 100


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match is not None, status
    return int(match.group(1))


def publish_batch(base: str, first: int) -> None:
    pad = "x" * (SIZE - 20)
    messages = [
        {"topic": "bulk", "data": {"n": n, "pad": pad}, "id": None}
        for n in range(first, first + BATCH)
    ]
    answer = httpx.post(f"{base}/v1/runs/{RUN}/stream", json={"messages": messages}, timeout=30)
    assert answer.status_code == 200, answer.text


@pytest.mark.timeout(240)
def test_a_reader_that_does_not_read_costs_the_engine_a_page(tmp_path: Path) -> None:
    db = str(tmp_path / "e.db")
    seed(db)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "engine.log"
    proc = spawn([sys.executable, str(ENGINE), str(port), db], log=log, env=clean_env())
    reader = socket.socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # a small window
    try:
        wait_until_up(f"{base}/health", proc, log=log)
        reader.connect(("127.0.0.1", port))
        # warm up: the routes, the store and the allocator have done this once
        publish_batch(base, -BATCH)
        httpx.get(f"{base}/v1/runs/{RUN}/stream", params={"limit": 1000}, timeout=10)
        request = (
            f"GET /v1/runs/{RUN}/stream?after={BATCH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        )
        reader.sendall(request.encode())
        head = reader.recv(4096)  # the headers and the first comment; then nothing
        assert head.startswith(b"HTTP/1.1 200"), head
        before = rss_kib(proc.pid)
        for first in range(0, COUNT, BATCH):
            publish_batch(base, first)
        grown = rss_kib(proc.pid) - before
        assert grown < 24 * 1024, (
            f"the engine grew by {grown} KiB while a reader read nothing of "
            f"{COUNT * SIZE // 1024} KiB published"
        )
        # the reader reads on: everything is there, in order
        reader.settimeout(30)
        received = bytearray()
        last = f"id: {COUNT + BATCH}\n".encode()
        while last not in received[-(len(last) + (1 << 20)) :]:  # the newest bytes
            chunk = reader.recv(1 << 20)
            assert chunk, "the engine closed the stream"
            received += chunk
        ids = [int(x) for x in re.findall(rb"^id: (\d+)$", bytes(received), re.MULTILINE)]
        assert ids == list(range(BATCH + 1, COUNT + BATCH + 1))
    finally:
        reader.close()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
