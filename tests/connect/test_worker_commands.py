"""Stepline's Connect worker from a shell: ``python -m stepline.connect``, ``stepline
connect`` and Django's ``manage.py stepline_connect``, each a real process against a real
engine; SIGTERM drains it and it exits 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests._support import refusing
from tests._support.polling import wait_until
from tests._support.processes import log_tail

from .harness import ROOT, Node, node

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]


def _serve(command: list[str], env: dict[str, str], tmp: Path, cwd: Path) -> Any:
    out = open(tmp / "worker.out", "wb")  # noqa: SIM115 - the child writes it
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=out)
    out.close()
    return proc


def _run(engine: Node, name: str, data: dict[str, Any]) -> dict[str, Any]:
    answer = engine.http.post("/e/k", json={"name": name, "data": data})
    assert answer.status_code == 200, answer.text
    return engine.finished(engine.run_of(answer.json()["ids"][0]))


def _connected(engine: Node, app_id: str, proc: Any, tmp: Path) -> None:
    def ready() -> bool:
        assert proc.poll() is None, log_tail(tmp / "worker.out")
        return any(c.ready for c in engine.engine.connect.workers(app_id))

    wait_until(ready, timeout=30, message=lambda: log_tail(tmp / "worker.out"))


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "stepline.connect", "tests.apps.connect_cli:client"],
        [str(Path(sys.executable).parent / "stepline"), "connect", "tests.apps.connect_cli"],
    ],
    ids=["python-m", "stepline-connect"],
)
def test_the_command_line_serves_a_modules_functions(tmp_path: Path, command: list[str]) -> None:
    with node(str(tmp_path / "e.db")) as engine:
        env = {**os.environ, "CLI_ENGINE_URL": engine.url, "PYTHONPATH": str(ROOT)}
        proc = _serve([*command, "--instance-id", "cli-1"], env, tmp_path, ROOT)
        try:
            _connected(engine, "cli-app", proc, tmp_path)
            [conn] = engine.engine.connect.workers("cli-app")
            assert conn.instance_id == "cli-1"
            assert _run(engine, "cli/add", {"a": 2, "b": 3})["output"] == 5
            assert _run(engine, "cli/upper", {"text": "hi"})["output"] == "HI"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0, log_tail(tmp_path / "worker.out")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


def test_the_command_line_names_what_is_wrong(tmp_path: Path) -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "stepline.connect", "tests.connect.nowhere:client"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert "cannot import 'tests.connect.nowhere'" in bad.stderr


def test_the_django_command_serves_the_projects_functions(tmp_path: Path) -> None:
    with node(str(tmp_path / "e.db")) as engine:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "tests.apps.django_site_settings",
            "SITE_ENGINE_URL": engine.url,
            "SITE_ORIGIN": refusing.url(),  # no web server: nothing listens
            "SITE_DATABASE": str(tmp_path / "unused.db"),
        }
        command = [sys.executable, "-m", "django", "stepline_connect", "--instance-id", "dj"]
        proc = _serve(command, env, tmp_path, ROOT)
        try:
            _connected(engine, "site", proc, tmp_path)
            [app] = [a for a in engine.get("/v1/apps")["data"] if a["app_id"] == "site"]
            assert app["url"] == "connect://site/v0/connect"
            run = _run(engine, "site/welcome", {"name": "Ada"})
            assert (run["status"], run["output"]) == ("Completed", {"text": "Welcome, Ada!"})
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0, log_tail(tmp_path / "worker.out")
            assert "drained and stopped" in log_tail(tmp_path / "worker.out")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
