"""Network namespaces for partition tests: nodes on links of their own that can be cut.

``network(count)`` makes, for one test run, a hub address on a bridge with no ports in this
(the root) namespace and ``count`` namespaces, each joined to it by a veth pair on a /30
of ``10.213.0.0/16`` (``ip netns``; root only), with its default route through the pair:
a process in a namespace reaches the hub's address, and only through its own link.
``Node.cut`` sets the namespace's end of its link down (its packets go nowhere, its
open TCP connections stall, as a pulled cable or a partitioned switch does; nothing
reaches the machine's other networks), ``Node.heal`` sets it up again. Names carry a
random tag, so parallel test workers never collide; everything is deleted after, also
on failure. Without ``ip netns`` (not root, no iproute2, no bridges) the test
skips, or fails under CI (``unavailable``).

``Forwarder`` accepts TCP on an address (the hub's) and forwards each connection to a
target: the Postgres every test shares listens on 127.0.0.1 only, out of a namespace's
reach.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence

from tests._support.ci import unavailable

#: the /16 the links are made in (one /24 per test run, picked free)
PREFIX = "10.213"


def _ip(
    *args: str, netns: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    argv = ["ip", *args] if netns is None else ["ip", "netns", "exec", netns, "ip", *args]
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)


def require() -> None:
    """Skip (fail under CI) unless this process can make namespaces, veths and dummies."""
    if shutil.which("ip") is None:
        unavailable("no `ip` (iproute2) on PATH: the partition test needs `ip netns`")
    if os.geteuid() != 0:
        unavailable("`ip netns` needs root: the partition test makes network namespaces")
    probe = f"slprobe{secrets.token_hex(3)}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        unavailable(f"`ip netns add` failed: {made.stderr.strip()}")
    _ip("netns", "del", probe, check=False)
    dummy = _ip("link", "add", probe, "type", "bridge", check=False)
    if dummy.returncode != 0:
        unavailable(f"`ip link add ... type bridge` failed: {dummy.stderr.strip()}")
    _ip("link", "del", probe, check=False)


@dataclasses.dataclass
class Node:
    """One namespace: its name, its address, and its end of the link."""

    netns: str
    address: str
    inner: str  # the veth in the namespace
    outer: str  # its peer in the root namespace
    gateway: str  # the peer's address: the namespace's default route

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def cut(self) -> float:
        """Set the namespace's end of the link down; the time it was cut."""
        _ip("link", "set", self.inner, "down", netns=self.netns)
        return time.time()

    def heal(self) -> float:
        """Set it up again (and its default route back); the time it was healed."""
        _ip("link", "set", self.inner, "up", netns=self.netns)
        _ip("route", "replace", "default", "via", self.gateway, netns=self.netns)
        return time.time()


@dataclasses.dataclass
class Network:
    """The hub's address and the nodes around it."""

    hub: str
    nodes: list[Node]


def _free_subnet() -> int:
    used = _ip("-4", "-o", "addr", "show").stdout
    for _ in range(100):
        third = secrets.randbelow(254) + 1
        if f" {PREFIX}.{third}." not in used:
            return third
    raise RuntimeError(f"no free /24 in {PREFIX}.0.0/16")


@contextlib.contextmanager
def network(count: int) -> Iterator[Network]:
    """A hub address and ``count`` namespaces linked to it; all deleted after."""
    require()
    tag = secrets.token_hex(3)
    third = _free_subnet()
    hub_link = f"slh{tag}"
    hub = f"{PREFIX}.{third}.254"
    made_links: list[str] = []
    made_netns: list[str] = []
    try:
        _ip("link", "add", hub_link, "type", "bridge")
        made_links.append(hub_link)
        _ip("addr", "add", f"{hub}/32", "dev", hub_link)
        _ip("link", "set", hub_link, "up")
        nodes: list[Node] = []
        for i in range(count):
            netns, outer, inner = f"sln{tag}{i}", f"slo{tag}{i}", f"sli{tag}{i}"
            _ip("netns", "add", netns)
            made_netns.append(netns)
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            made_links.append(outer)
            _ip("link", "set", inner, "netns", netns)
            base = 4 * i
            outer_ip, inner_ip = f"{PREFIX}.{third}.{base + 1}", f"{PREFIX}.{third}.{base + 2}"
            _ip("addr", "add", f"{outer_ip}/30", "dev", outer)
            _ip("link", "set", outer, "up")
            _ip("addr", "add", f"{inner_ip}/30", "dev", inner, netns=netns)
            _ip("link", "set", inner, "up", netns=netns)
            _ip("link", "set", "lo", "up", netns=netns)
            _ip("route", "add", "default", "via", outer_ip, netns=netns)
            nodes.append(Node(netns, inner_ip, inner, outer, outer_ip))
        yield Network(hub, nodes)
    finally:
        for netns in made_netns:  # its end of a veth goes with it, and so the pair
            _ip("netns", "del", netns, check=False)
        for link in made_links:
            _ip("link", "del", link, check=False)


class Forwarder:
    """Forwards TCP connections made to ``(host, port)`` to ``target``, until ``close``."""

    def __init__(self, host: str, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server((host, 0))
        self.host, self.port = host, self._listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._closed:
                    client.close()
                    upstream.close()
                    return
                self._open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sockets, self._open = self._open, set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
