"""Connect sockets nobody has authenticated cost a ``stepline start`` engine little.

Attacks on a real engine process over raw sockets: each socket upgrades (the X-Forwarded-
For of each its own address, which the engine trusts from loopback, so no per-address cap
is what stops them) and sends one frame declaring 16 MiB, streamed from a shared buffer
under a zero mask so the attacker holds nothing. The engine closes each from the frame's
header (1009) and its peak resident memory (``VmHWM``) barely moves, where it held every
frame whole before. Sockets being set up are capped per address, and each gets its
handshake's time (``Timing.handshake``, shortened here to ``HANDSHAKE``) to authenticate,
then is closed.
"""

from __future__ import annotations

import base64
import concurrent.futures
import os
import socket
import struct
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from stepline.engine._connect import limits
from tests._support import memory
from tests._support.polling import wait_until
from tests._support.processes import clean_env, engine_command, free_port, spawned

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]
KEY = "signkey-prod-" + "5a" * 32
ATTACKERS = 50
FRAME = 16 * 1024 * 1024
CHUNK = b"\0" * (1024 * 1024)  # masked with a zero key: sent as is
#: The handshake's time the engine gives when a test waits it out (``Timing.handshake``
#: is 10 s): still far more than the test takes to open its sockets.
HANDSHAKE = 3.0
#: ``python -c SHORT_HANDSHAKE SECONDS ARGS...``: ``python -m stepline.engine ARGS`` whose
#: Connect sockets get SECONDS to send ``WORKER_CONNECT`` (the rest of ``Timing`` as is).
SHORT_HANDSHAKE = """
import dataclasses, sys
from stepline.engine._cli.commands import main
from stepline.engine._connect import hub
seconds, of = float(sys.argv.pop(1)), hub.Timing.of
hub.Timing.of = lambda settings: dataclasses.replace(of(settings), handshake=seconds)
sys.exit(main())
"""


@contextmanager
def engine(tmp_path: Path, handshake: float | None = None) -> Iterator[tuple[int, int]]:
    """A ``stepline start`` process (``handshake``: the seconds a socket gets to
    authenticate, else ``Timing.handshake``): (its port, its pid)."""
    port = free_port()
    env = clean_env(STEPLINE_SIGNING_KEY=KEY, STEPLINE_EVENT_KEY="preauth-event-key")
    args = ("start", "--port", str(port), "--db", str(tmp_path / "e.db"))
    command = engine_command(*args)
    if handshake is not None:
        command = [sys.executable, "-c", SHORT_HANDSHAKE, f"{handshake:g}", *args]
    base = f"http://127.0.0.1:{port}"
    with spawned(command, log=tmp_path / "engine.log", env=env, up=f"{base}/health") as proc:
        yield port, proc.pid


def upgrade(port: int, address: str) -> tuple[socket.socket, bytes]:
    """A socket upgraded to the gateway's protocol from ``address``: (it, the answer head)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /v0/connect/gateway HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: v0.connect.inngest.com\r\n"
        f"X-Forwarded-For: {address}\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        got = sock.recv(4096)
        if not got:
            break
        head += got
    return sock, head


def closed_by_server(sock: socket.socket) -> int:
    """Read the server's frames until its close frame: that frame's code."""
    buffer = b""

    def take(n: int) -> bytes:
        nonlocal buffer
        while len(buffer) < n:
            got = sock.recv(65536)
            if not got:
                raise AssertionError("the socket ended without a close frame")
            buffer += got
        taken, buffer = buffer[:n], buffer[n:]
        return taken

    while True:
        opcode, length = take(2)
        size = {126: 2, 127: 8}.get(length & 0x7F, 0)
        length = int.from_bytes(take(size), "big") if size else length & 0x7F
        payload = take(length)
        if opcode & 0x0F == 0x8:
            return int.from_bytes(payload[:2], "big")


def send_big_frame(port: int, n: int) -> str:
    """Upgrade, then stream one binary frame declaring ``FRAME`` bytes: how it ended."""
    sock, head = upgrade(port, f"10.9.{n // 200}.{n % 200 + 1}")
    with sock:
        if not head.startswith(b"HTTP/1.1 101"):
            return "refused"
        sock.sendall(b"\x82\xff" + struct.pack("!Q", FRAME) + b"\0\0\0\0")
        try:
            for _ in range(FRAME // len(CHUNK)):
                sock.sendall(CHUNK)
        except OSError:
            return "closed while sending"
        sock.settimeout(30)
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass
        return "sent whole"


def test_unauthenticated_sockets_sending_16_mib_frames_barely_grow_the_engine(
    tmp_path: Path,
) -> None:
    with engine(tmp_path) as (port, pid):
        warm, _ = upgrade(port, "10.8.0.1")  # one socket's worth of code paths in memory
        warm.close()
        time.sleep(0.5)  # the warm-up's memory settles: another process, nothing to wait on
        before = memory.peak(pid)
        with concurrent.futures.ThreadPoolExecutor(ATTACKERS) as pool:
            ends = list(pool.map(lambda n: send_big_frame(port, n), range(ATTACKERS)))
        grown = memory.peak(pid) - before
        print(
            f"{ATTACKERS} unauthenticated sockets x {FRAME // memory.MIB} MiB frames: peak RSS "
            f"{before / memory.MIB:.0f} -> {(before + grown) / memory.MIB:.0f} MiB, now "
            f"{memory.rss(pid) / memory.MIB:.0f} MiB; {sorted(set(ends))}"
        )
        assert grown < 100 * memory.MIB, f"the engine grew {grown / memory.MIB:.0f} MiB"
        assert ends.count("closed while sending") == ATTACKERS, ends


def test_sockets_being_set_up_are_capped_per_address_and_timed(tmp_path: Path) -> None:
    with engine(tmp_path, HANDSHAKE) as (port, _pid):
        opened = time.monotonic()
        held = [upgrade(port, "10.7.0.1") for _ in range(limits.HANDSHAKES_PER_CLIENT)]
        assert all(head.startswith(b"HTTP/1.1 101") for _, head in held)
        extra, head = upgrade(port, "10.7.0.1")
        assert head.startswith(b"HTTP/1.1 403"), head  # refused before it is accepted
        extra.close()
        other, head = upgrade(port, "10.7.0.2")  # another address is not held up
        assert head.startswith(b"HTTP/1.1 101"), head
        other.close()
        for sock, _ in held:  # no WORKER_CONNECT: closed once the handshake's time is up
            sock.settimeout(HANDSHAKE + 10)
            with sock:
                assert closed_by_server(sock) == 1008
        assert HANDSHAKE <= time.monotonic() - opened < HANDSHAKE + 5

        # the engine ends each session as its close frame goes out: the address's
        # handshakes are free again soon after (a refused try holds none)
        def accepted() -> socket.socket | None:
            again, head = upgrade(port, "10.7.0.1")
            if head.startswith(b"HTTP/1.1 101"):
                return again
            again.close()
            return None

        wait_until(accepted, timeout=10, interval=0.1, message="a handshake taken again").close()
