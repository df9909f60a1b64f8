"""The CLI says what to do when it cannot start: a port in use gets
the ``--port`` fix; ``stepline --version`` answers. Real processes, as a user runs them."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from stepline._identity import VERSION
from stepline.engine._cli import ports
from tests._support.processes import clean_env

pytestmark = [pytest.mark.process]


def stepline(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stepline.engine", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(PYTHONIOENCODING="utf-8"),
    )


def test_version_flag() -> None:
    done = stepline("--version")
    assert (done.returncode, done.stdout.strip()) == (0, f"stepline {VERSION}")


def test_port_in_use_says_to_pick_another_with_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert ports.in_use("127.0.0.1", port)
        done = stepline("dev", "--port", str(port), "--db", str(tmp_path / "engine.db"))
    assert done.returncode != 0
    assert f"port {port} is already in use" in done.stderr
    # not port + 1: that is where the engine on ``port`` listens for Connect workers
    assert f"--port {port + 2}" in done.stderr
    assert "--connect-gateway-port" in done.stderr
    assert "STEPLINE_PORT" in done.stderr


def test_a_free_port_is_not_reported() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert not ports.in_use("127.0.0.1", port)
