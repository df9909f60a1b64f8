"""Connect without the WebSocket package (the base install): one line naming the extra.

The base install serves apps over HTTP and leaves ``websockets`` out; Connect needs it on
both sides, and ``stepline[connect]`` brings it. A ``stepline dev`` without it opens no
gateway port and its banner says what to install; a worker started against that engine,
or without the package itself, stops with that line first, never a traceback. The
package is hidden from a child process by a ``sitecustomize`` that marks it not importable.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests._support.polling import wait_until
from tests._support.processes import clean_env, engine_command, free_port, spawned

pytestmark = [pytest.mark.process, pytest.mark.timeout(60)]
ROOT = Path(__file__).resolve().parents[2]
INSTALL = "pip install 'stepline[connect]'"
HIDE = 'import sys\nsys.modules["websockets"] = None\nsys.modules["wsproto"] = None\n'


def _hidden(tmp_path: Path) -> str:
    """A ``PYTHONPATH`` entry whose ``sitecustomize`` hides both WebSocket packages."""
    folder = tmp_path / "no_websockets"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(HIDE)
    return str(folder)


def _worker(engine_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stepline.connect", "tests.apps.connect_cli:client"],
        cwd=ROOT,
        env=clean_env(CLI_ENGINE_URL=engine_url, **env),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_an_engine_without_websockets_opens_no_gateway_port_and_says_what_to_install(
    tmp_path: Path,
) -> None:
    port = free_port()  # P + 1 free too: where the gateway would listen
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "dev.log"
    env = clean_env(PYTHONPATH=_hidden(tmp_path))
    command = engine_command("dev", "--port", str(port), "--db", str(tmp_path / "e.db"))
    with spawned(command, log=log, env=env, up=f"{base}/health"):
        text = wait_until(
            lambda: log.read_text() if "  Database " in log.read_text() else None,
            message=lambda: f"the banner in:\n{log.read_text()}",
        )
        with pytest.raises(ConnectionRefusedError):  # the gateway's own port stays closed
            socket.create_connection(("127.0.0.1", port + 1), timeout=5).close()
        # a worker that has the package: its first line says what the engine lacks
        worker = _worker(base)
    needs = f"Connect needs a WebSocket server for uvicorn (the websockets package): {INSTALL}"
    assert f"  Connect    off: {needs}\n" in text
    assert "  Gateway " not in text
    assert "Traceback" not in text
    assert worker.returncode == 2
    first = worker.stderr.splitlines()[0]
    assert first == (
        f"python -m stepline.connect: the engine at {base} cannot serve Connect: Connect "
        f"needs a WebSocket server for uvicorn (the websockets package): {INSTALL} (on the "
        "engine's side)"
    ), worker.stderr
    assert "Traceback" not in worker.stderr


def test_a_worker_without_websockets_says_what_to_install_first(tmp_path: Path) -> None:
    worker = _worker("http://127.0.0.1:9", PYTHONPATH=_hidden(tmp_path))
    assert worker.returncode == 2
    assert worker.stderr.splitlines()[0] == (
        f"python -m stepline.connect: stepline.connect needs the websockets package: {INSTALL}"
    ), worker.stderr
    assert "Traceback" not in worker.stderr
