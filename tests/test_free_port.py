"""``free_port``: ports for child processes, out of the system's range and reserved."""

from __future__ import annotations

import fcntl
import os
import socket

from tests._support import processes


def test_ports_come_from_outside_the_ephemeral_range_and_are_each_handed_out_once() -> None:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as ranges:
        low, high = (int(part) for part in ranges.read().split())
    given = [processes.free_port() for _ in range(20)]
    assert len(set(given)) == len(given)
    for port in given:
        assert port in processes.PORTS
        assert not low <= port <= high
        assert not low <= port + 1 <= high
        assert port + 1 not in given  # P + 1 is kept for a dev engine's gateway
        for reserved in (port, port + 1):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", reserved))  # free: nobody took it since


def test_a_port_handed_out_stays_locked_against_other_test_processes() -> None:
    port = processes.free_port()
    for reserved in (port, port + 1):
        # a second open of the lock file is what another process would get: refused
        fd = os.open(processes.PORT_LOCKS / str(reserved), os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            raise AssertionError(f"port {reserved}'s lock was free")
        finally:
            os.close(fd)
