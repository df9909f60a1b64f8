"""Huge request bodies behind real servers: read in chunks, refused at the limit (413).

Each framework's app (``tests/apps/framework_minimal.py``) runs in its own process; a client
streams a 300 MB body with ``Transfer-Encoding: chunked`` (no ``Content-Length``, so nothing
can be refused up front) and the server's peak resident memory (``VmHWM``) must stay far
below the body: an adapter that buffered the body whole before checking the limit took the
FastAPI and Flask apps past 600 MB. A declared ``Content-Length`` past the limit is refused
before anything is read.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._support import refusing
from tests._support.processes import APPS, answers, free_port, spawned

pytestmark = [pytest.mark.process]

BODY = 300 * 1024 * 1024
#: Peak growth allowed while a 300 MB body is refused: the 16 MiB limit, a chunk or two
#: and the allocator's slack (buffering the body takes 300 MB or more).
MAX_GROWTH = 80 * 1024 * 1024
LIMIT = 16 * 1024 * 1024  # the serve endpoint's (CommHandler's default max_body_bytes)
SERVE = "/api/inngest?fnId=bodies-echo&stepId=step"
#: (framework, path): the serve endpoint everywhere, and the run kit where it is mounted.
TARGETS = [
    ("fastapi", SERVE),
    ("flask", SERVE),
    ("asgi", SERVE),
    ("aiohttp", SERVE),
    ("tornado", SERVE),
    ("fastapi", "/api/runs"),
    ("flask", "/api/runs"),
    ("tornado", "/api/runs"),
]


@contextlib.contextmanager
def server(framework: str, log: Path) -> Iterator[tuple[int, int]]:
    """Run ``framework_minimal.py <framework>``; yields (pid, port) once it answers."""
    port = free_port()
    # PYTHONWARNINGS: werkzeug's dev-server banner
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "BODIES_ENGINE_URL": refusing.url()}
    command = [sys.executable, str(APPS / "framework_minimal.py"), framework, str(port)]
    up = f"http://127.0.0.1:{port}/api/inngest"
    # stopping kills what a graceful shutdown waiting on a refused upload keeps alive
    with spawned(command, log=log, env=env, up=up, ready=answers, what=framework) as proc:
        yield proc.pid, port


def peak_rss(pid: int) -> int:
    """The process's peak resident set size (``VmHWM``), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def post_huge(port: int, path: str, total: int, *, chunked: bool = True) -> tuple[int, bytes, int]:
    """POST ``total`` bytes of JSON-ish filler; stop sending once the server answers.

    Returns the status and the body of the answer (which may come before the upload ends:
    a server refusing a body early closes the connection on the rest), and the bytes of
    body handed to the socket by then.
    """
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{framing}\r\n"
        "Content-Type: application/json\r\nConnection: close\r\n\r\n"
    ).encode()
    piece = b" " * (256 * 1024)
    frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece
    # sent from the end: the last chunk of a chunked body is the empty one
    frames = ([b"0\r\n\r\n"] if chunked else []) + [frame] * (total // len(piece))
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    answer = bytearray()
    try:
        sock.sendall(head)
        sock.setblocking(False)
        pending, sent = memoryview(b""), 0
        deadline = time.monotonic() + 120
        while True:
            assert time.monotonic() < deadline, f"no answer with {len(frames)} frames to send"
            if not pending and frames:
                pending = memoryview(frames.pop())
            readable, writable, _ = select.select([sock], [sock] if pending else [], [], 30)
            assert readable or writable, f"server stalled with {len(frames)} frames to send"
            if readable:
                break
            try:
                count = sock.send(pending)
                pending, sent = pending[count:], sent + count
            except (BrokenPipeError, ConnectionResetError):
                break  # refused mid-upload: the answer may be waiting
        sock.setblocking(True)
        sock.settimeout(30)
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                answer += chunk
                if _complete(answer):
                    break
    finally:
        sock.close()
    assert answer, "the server closed the connection without an answer"
    status = int(answer.split(b" ", 2)[1])
    return status, bytes(answer.partition(b"\r\n\r\n")[2]), sent


def _complete(answer: bytes) -> bool:
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


@pytest.mark.parametrize(("framework", "path"), TARGETS)
def test_a_huge_chunked_body_is_refused_without_being_buffered(
    framework: str, path: str, tmp_path: Path
) -> None:
    with server(framework, tmp_path / "server.log") as (pid, port):
        before = peak_rss(pid)
        status, body, _ = post_huge(port, path, BODY)
        growth = peak_rss(pid) - before
    assert status == 413, body
    assert b"exceeds" in body or b"larger than" in body, body
    assert growth < MAX_GROWTH, f"peak RSS grew {growth / 2**20:.0f} MiB for a {BODY >> 20} MB body"


@pytest.mark.parametrize("framework", ["fastapi", "flask", "asgi", "aiohttp", "tornado"])
def test_a_declared_length_past_the_limit_is_refused_before_reading(
    framework: str, tmp_path: Path
) -> None:
    with server(framework, tmp_path / "server.log") as (pid, port):
        before = peak_rss(pid)
        status, body, sent = post_huge(port, SERVE, BODY, chunked=False)
        growth = peak_rss(pid) - before
    assert status == 413, body
    # answered from the headers: what was sent is what the socket buffers took, not the
    # 16 MiB the server would have read to find the body too large
    assert sent < LIMIT, f"{sent >> 20} MiB sent before the answer"
    assert growth < MAX_GROWTH, f"peak RSS grew {growth / 2**20:.0f} MiB"
