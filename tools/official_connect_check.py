"""Run the official ``inngest`` SDK's Connect scenarios against a fresh ``stepline dev``.

Usage::

    .venv/bin/python tools/official_connect_check.py DIR [pytest arguments...]

``DIR`` holds a copy of the scenarios (this script fetches nothing): ``DIR/test_core/``
(the SDK repository's ``pkg/test_core/test_core``) and the scenario packages under
``DIR/tests/`` (``tests/test_inngest/test_connect`` as ``DIR/tests/test_connect``, and
any other suite that reads runs through the dev server). Keep that copy outside this
repository. The script starts ``stepline dev`` on a free port with a temporary SQLite
database, points the scenarios at it the way they expect a dev server (``DEV_SERVER_PORT``,
``DEV_SERVER_ENABLED=0``, ``INNGEST_DEV``; the gateway's URL as ``CONNECT_GATEWAY_URL``:
``ws://0.0.0.0:{port + 1}/v0/connect``, where ``stepline dev`` serves it as Inngest's dev
server does; a hard-coded origin ``http://0.0.0.0:8288`` is rewritten in a temporary
copy), runs them
with pytest and prints a table of scenario and result. Exit status: 0 when every scenario passed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from xml.etree import ElementTree

ROOT = Path(__file__).resolve().parents[1]
HARD_CODED_GATEWAY = 'f"ws://0.0.0.0:{dev_server.server.port + 1}/v0/connect"'
HARD_CODED_ORIGIN = "http://0.0.0.0:8288/"


def free_port() -> int:
    """A port P with P + 1 free too (``stepline dev`` serves the gateway on P + 1)."""
    for _ in range(50):
        with socket.socket() as s, socket.socket() as t:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            assert isinstance(port, int)
            try:
                t.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise SystemExit("no two neighbouring free ports")


def start_engine(port: int, db: Path, log: Path) -> subprocess.Popen[bytes]:
    stepline = Path(sys.executable).with_name("stepline")
    entry = "import sys; from stepline.engine._cli import main; sys.argv[0] = 'stepline'; main()"
    command = [str(stepline)] if stepline.exists() else [sys.executable, "-c", entry]
    command += ["dev", "--port", str(port), "--db", str(db), "--no-poll"]
    engine = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if engine.poll() is not None:
            raise SystemExit(f"stepline dev exited ({engine.returncode}); see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return engine
        except OSError:
            time.sleep(0.2)
    engine.terminate()
    raise SystemExit(f"stepline dev did not answer within 30 s; see {log}")


def prepare(source: Path, target: Path, gateway: str, port: int) -> None:
    """Copy the scenarios, pointing hard-coded dev server URLs at ``stepline dev``."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for path in target.rglob("*.py"):
        text = path.read_text()
        moved = text.replace(HARD_CODED_GATEWAY, repr(gateway))
        moved = moved.replace(HARD_CODED_ORIGIN, f"http://0.0.0.0:{port}/")
        if moved != text:
            path.write_text(moved)


def results(report: Path) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}.{case.get('name')}"
        outcome, why = "pass", ""
        for tag in ("failure", "error", "skipped"):
            found = case.find(tag)
            if found is not None:
                outcome = "skip" if tag == "skipped" else "FAIL"
                why = (
                    (found.get("message") or "").splitlines()[0][:90]
                    if found.get("message")
                    else ""
                )
                break
        rows.append((name, outcome, why))
    return rows


def main(argv: list[str]) -> int:
    if not argv or not Path(argv[0]).is_dir():
        print(__doc__)
        return 2
    source = Path(argv[0]).resolve()
    with tempfile.TemporaryDirectory(prefix="official-connect-") as scratch:
        work = Path(scratch)
        port = free_port()
        gateway = f"ws://0.0.0.0:{port + 1}/v0/connect"  # where Inngest's dev server has it
        scenarios = work / "scenarios"
        prepare(source, scenarios, gateway, port)
        log = work / "stepline-dev.log"
        engine = start_engine(port, work / "stepline.db", log)
        report = work / "report.xml"
        env = {
            **os.environ,
            "DEV_SERVER_PORT": str(port),
            "DEV_SERVER_ENABLED": "0",
            "INNGEST_DEV": f"http://0.0.0.0:{port}",
            "CONNECT_GATEWAY_URL": gateway,
            "PYTHONPATH": os.pathsep.join([str(scenarios), os.environ.get("PYTHONPATH", "")]),
            # scenarios that start a worker process run ``python``: this interpreter's
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
        }
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:logging"]
        command += ["-q", f"--junitxml={report}", "--rootdir", str(scenarios)]
        command += argv[1:] or ["tests"]  # pytest's own arguments, passed as given
        try:
            subprocess.run(command, cwd=scenarios, env=env, check=False)
        finally:
            engine.terminate()
            engine.wait(10)
        if not report.exists():
            print("pytest wrote no report", file=sys.stderr)
            return 2
        rows = results(report)
        width = max((len(r[0]) for r in rows), default=8)
        print(f"\nstepline dev on port {port} ({len(rows)} scenarios)")
        print(f"{'scenario':<{width}}  result  reason")
        for name, outcome, why in rows:
            print(f"{name:<{width}}  {outcome:<6}  {why}")
        return 0 if rows and all(r[1] == "pass" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
