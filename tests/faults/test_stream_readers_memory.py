"""Many readers of one run's stream of large messages cost the engine a bounded memory.

A real engine process on SQLite; a run's stream holds 120 messages of 256 KiB (30 MiB).
Ten readers open its SSE form on raw sockets and read nothing: each one's stream reads a
page and waits to send it. A page holds at most ``PAGE_BYTES`` (1 MiB) of message data,
so the engine's resident memory grows by a few MiB a reader, not by the 100 messages
(25 MiB, held two or three times over as rows and encodings) a page of count alone
held. The same ten readers on the web kit's events route of an app process (bare ASGI
under uvicorn, talking to the engine) grow the app by a few MiB too: the run's feed holds
one page, and a reader behind it reads a page at a time. The figures measured are
printed (``pytest -s``) and quoted in SECURITY.md.
"""

from __future__ import annotations

import signal
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests._support.polling import wait_until
from tests._support.processes import clean_env, free_port, spawn, wait_until_up

from .test_stream_kill import ENGINE, RUN, seed
from .test_stream_memory import rss_kib

pytestmark = [pytest.mark.process]

COUNT = 120
SIZE = 256 * 1024
BATCH = 10
READERS = 10
#: the most the ten stalled readers may add to the engine's (or the app's) resident memory
BOUND_KIB = 64 * 1024
#: an app process serving the web kit's routes for the seeded run's function (``app-fn``)
APP = """
import sys

import uvicorn

import stepline
import stepline.asgi
import stepline.web

port, engine = int(sys.argv[1]), sys.argv[2]
client = stepline.Client(
    "app", is_production=False, api_base_url=engine, event_api_base_url=engine, environ={}
)


@client.function(id="fn", trigger=stepline.TriggerEvent(event="e"))
async def fn(ctx: stepline.Context) -> None:
    return None


app = stepline.asgi.runs_app(client, [fn], authorize=stepline.web.allow_all)
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
"""


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


def stalled_readers(port: int, path: str) -> list[socket.socket]:
    """``READERS`` SSE readers of ``path`` that read the headers and then nothing."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    readers = []
    for _ in range(READERS):
        reader = socket.socket()
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        reader.connect(("127.0.0.1", port))
        reader.sendall(request)
        head = reader.recv(1024)
        assert head.startswith(b"HTTP/1.1 200"), head
        readers.append(reader)
    return readers


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
        readers += stalled_readers(port, f"/v1/runs/{RUN}/stream")
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


@pytest.mark.timeout(240)
def test_ten_stalled_kit_readers_of_large_messages_cost_the_app_a_page_each(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "e.db")
    seed(db)
    port, app_port = free_port(), free_port()
    base, app_base = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{app_port}"
    log, app_log = tmp_path / "engine.log", tmp_path / "app.log"
    script = tmp_path / "kit_app.py"
    script.write_text(APP)
    proc = spawn([sys.executable, str(ENGINE), str(port), db], log=log, env=clean_env())
    app = spawn([sys.executable, str(script), str(app_port), base], log=app_log, env=clean_env())
    readers: list[socket.socket] = []
    try:
        wait_until_up(f"{base}/health", proc, log=log)
        wait_until(lambda: _up(app_base), timeout=30, message="the app to serve")
        for first in range(0, COUNT, BATCH):
            publish(base, first)
        # warm up: one reader of the whole stream, to its end (the run stays live)
        with httpx.stream("GET", f"{app_base}/runs/{RUN}/events", timeout=60) as stream:
            seen = b""
            for chunk in stream.iter_bytes():
                seen += chunk
                if f"id: {COUNT}\n".encode() in seen[-SIZE * 2 :]:
                    break
        before = settled_rss(app.pid)
        readers += stalled_readers(app_port, f"/runs/{RUN}/events")
        after = settled_rss(app.pid)
        grown = after - before
        print(
            f"\napp RSS: {before // 1024} MiB before, {after // 1024} MiB with {READERS} "
            f"stalled kit readers of {COUNT} x {SIZE // 1024} KiB messages "
            f"(+{grown // 1024} MiB, {grown // READERS} KiB a reader)"
        )
        assert grown < BOUND_KIB, (
            f"the app grew by {grown} KiB with {READERS} kit readers that read nothing"
        )
    finally:
        for reader in readers:
            reader.close()
        for process in (app, proc):
            process.send_signal(signal.SIGKILL)
            process.wait(10)


def _up(base: str) -> bool:
    try:
        httpx.get(f"{base}/runs/{RUN}", timeout=2)
    except httpx.HTTPError:
        return False
    return True
