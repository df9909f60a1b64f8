"""A child process's memory, as Linux reports it in ``/proc/<pid>/status``."""

from __future__ import annotations

from pathlib import Path

MIB = 1024 * 1024


def status_bytes(pid: int, field: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` in bytes: ``VmRSS`` (resident now) or
    ``VmHWM`` (the most it was resident)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0]) * 1024
    raise LookupError(f"no {field} in /proc/{pid}/status")


def rss(pid: int) -> int:
    """Bytes resident now."""
    return status_bytes(pid, "VmRSS")


def peak(pid: int) -> int:
    """The most bytes ever resident (the high-water mark)."""
    return status_bytes(pid, "VmHWM")
