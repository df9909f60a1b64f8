"""An engine in a thread of the test process and Connect workers as processes.

``Node`` serves a real engine (``build_app`` under uvicorn) on a socket bound up front, so a
second ``Node`` can take the same port after the first stopped (a restart the workers must
reconnect to). ``Workers`` starts worker processes (``tests.apps.connect_official_worker``,
the official ``inngest`` SDK's, or ``tests.apps.connect_stepline_worker``, Stepline's) and
reads the log their step bodies append to. ``Kind`` says what differs between the two for
the scenarios both run (``test_scenarios``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from stepline._identity import SDK_HEADER
from stepline._protocol import signing
from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app
from tests._support.polling import wait_until
from tests._support.processes import clean_env, log_tail
from tests._support.server_thread import ServerThread
from tests.apps.connect_official_worker import APP_ID, EXTRA_APP_ID, event, fid

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = ("Completed", "Failed", "Cancelled")


@dataclasses.dataclass(frozen=True)
class Kind:
    """A Connect worker the shared scenarios run, and what only it is expected to do.

    Both workers serve the same functions under the same app id and events (those of
    ``tests.apps.connect_official_worker``), and log the same step keys; the rest is here.
    """

    name: str
    module: str
    """Its process: ``python -m <module> ENGINE_URL INSTANCE LOG [SIGNING_KEY]``."""
    sdk: str
    """The SDK its app is registered with."""
    apps: frozenset[str]
    """The apps its one socket serves."""
    functions: int
    """Its functions of ``APP_ID``."""
    slow: tuple[str, ...]
    """Its functions whose step ``work`` sleeps ``seconds`` (or until the file ``gate``
    exists) and which return ``"after"``."""
    checkpoints: bool
    """It runs the steps that follow a step in the same call (Stepline's SDK), so the step
    after a draining worker's last one may still run there."""
    refused: str
    """What it logs when the engine refuses its signing key."""
    late_reply: str | None
    """What it logs on flushing the reply of a call that outlived its socket (the engine
    handed the call back: 404)."""


OFFICIAL = Kind(
    name="official",
    module="tests.apps.connect_official_worker",
    sdk="py:v0.5.19",
    apps=frozenset({APP_ID, EXTRA_APP_ID}),
    functions=10,
    slow=("slow",),
    checkpoints=False,
    refused="unauthorized",
    late_reply=None,
)
STEPLINE = Kind(
    name="stepline",
    module="tests.apps.connect_stepline_worker",
    sdk=SDK_HEADER,
    apps=frozenset({APP_ID}),
    functions=11,
    slow=("slow", "slow-sync"),  # slow-sync: the step sleeps in the SDK's thread pool
    checkpoints=True,
    refused="401",
    late_reply="flushed: 404",
)
KINDS = (OFFICIAL, STEPLINE)


@dataclasses.dataclass
class Node:
    """A running engine: its ``Engine`` (to look at its gateway), URL and REST client."""

    engine: Engine
    server: ServerThread
    http: httpx.Client

    @property
    def url(self) -> str:
        return self.server.url

    def send(self, name: str, data: dict[str, Any] | None = None) -> str:
        """Send one event (the event API); its id."""
        answer = self.http.post("/e/test-key", json={"name": event(name), "data": data or {}})
        assert answer.status_code == 200, answer.text
        return str(answer.json()["ids"][0])

    def get(self, path: str, **params: Any) -> Any:
        answer = self.http.get(path, params=params)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def run_of(self, event_id: str) -> str:
        """The run an event started."""

        def found() -> str | None:
            runs = self.get(f"/v1/events/{event_id}/runs")["data"]
            return str(runs[0]["run_id"]) if runs else None

        return wait_until(found, message=f"the run of event {event_id}")

    def finished(self, run_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """The run once it has ended."""

        def ended() -> dict[str, Any] | None:
            run: dict[str, Any] = self.get(f"/v1/runs/{run_id}")["data"]
            return run if run["status"] in TERMINAL else None

        return wait_until(ended, timeout=timeout, message=f"run {run_id} to end")

    def failed_attempts(self, run_id: str) -> list[dict[str, Any]]:
        """The run's failed attempts (``GET /v1/runs/{id}/attempts``)."""
        return list(self.get(f"/v1/runs/{run_id}/attempts")["data"])

    def run(self, name: str, data: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
        """Start a scenario's function by its event; the ended run."""
        return self.finished(self.run_of(self.send(name, data)), timeout)

    def connected(self, instance: str) -> bool:
        """Whether a ready worker of ``instance`` is connected."""
        return any(
            c.instance_id == instance and c.ready for c in self.engine.connect.workers(APP_ID)
        )


def settings(db: str, port: int, **overrides: Any) -> EngineSettings:
    """Dev-mode settings with fast retries, on ``db``."""
    values: dict[str, Any] = {
        "database_url": db,
        "port": port,
        "retry_scale": 0.001,
        "retry_jitter": 0.0,
        "poll_interval": 0.05,
        "shutdown_grace": 2.0,
    }
    return EngineSettings(**{**values, **overrides})


@contextlib.contextmanager
def node(db: str, *, port: int | None = None, **overrides: Any) -> Iterator[Node]:
    """An engine serving ``db`` (on ``port``, else a free one) until the block ends."""
    server = ServerThread("stepline-engine", graceful=2)
    if port is not None:  # a restart: the port the workers know
        server.sock.close()
        server.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.sock.bind(("127.0.0.1", port))
        server.port, server.url = port, f"http://127.0.0.1:{port}"
    engine = Engine(settings(db, server.port, **overrides))
    server.start(build_app(engine))
    key = engine.settings.signing_key
    auth = {"authorization": signing.bearer_token(key)} if key else {}
    try:
        with httpx.Client(base_url=server.url, timeout=30, headers=auth) as http:
            yield Node(engine, server, http)
    finally:
        server.stop()


class Workers:
    """Connect worker processes of ``module``, and the log of the step bodies they ran."""

    def __init__(self, tmp: Path, module: str = OFFICIAL.module) -> None:
        self.tmp = tmp
        self.module = module
        self.log = tmp / "steps.log"
        self.log.touch()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, node: Node, instance: str, key: str | None = None) -> subprocess.Popen[bytes]:
        """Start a worker and wait until it is connected and ready."""
        proc = self.spawn(node.url, instance, key)
        self.ready(node, instance)
        return proc

    def start_all(self, node: Node, *instances: str) -> None:
        """Start workers side by side (their imports overlap), then wait until each is
        connected and ready."""
        for instance in instances:
            self.spawn(node.url, instance)
        for instance in instances:
            self.ready(node, instance)

    def ready(self, node: Node, instance: str) -> None:
        """Wait until the worker ``instance`` is connected to ``node`` and ready."""
        wait_until(
            lambda: self._alive(instance) and node.connected(instance),
            timeout=30,
            message=lambda: f"worker {instance} to connect:\n{self.output(instance)}",
        )

    def spawn(
        self, url: str, instance: str, key: str | None = None, *, debug: bool = False
    ) -> subprocess.Popen[bytes]:
        """Start a worker process (not waiting for anything); ``debug``: its debug log."""
        out = open(self.tmp / f"{instance}.out", "wb")  # noqa: SIM115 - the child writes it
        command = [sys.executable, "-m", self.module, url, instance, str(self.log)]
        proc = subprocess.Popen(
            [*command, *([key] if key else [])],
            cwd=ROOT,
            env=clean_env(WORKER_LOG_LEVEL="DEBUG" if debug else "INFO"),
            stdout=out,
            stderr=out,
        )
        out.close()
        self.procs[instance] = proc
        return proc

    def _alive(self, instance: str) -> bool:
        proc = self.procs[instance]
        if proc.poll() is not None:
            raise AssertionError(f"worker {instance} exited:\n{self.output(instance)}")
        return True

    def output(self, instance: str) -> str:
        return log_tail(self.tmp / f"{instance}.out")

    def lines(self) -> list[tuple[str, str]]:
        """``(instance, step key)`` for every step body run, in order."""
        found = []
        for line in self.log.read_text().splitlines():
            instance, _, key = line.partition(" ")
            if not key.startswith("started"):
                found.append((instance, key))
        return found

    def ran(self, key: str) -> list[str]:
        """The instances that ran ``key``'s body, once per run of it."""
        return [instance for instance, k in self.lines() if k == key]

    def signal(self, instance: str, sig: signal.Signals) -> None:
        self.procs[instance].send_signal(sig)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


@contextlib.contextmanager
def workers(tmp: Path, module: str = OFFICIAL.module) -> Iterator[Workers]:
    """Workers (of ``module``) killed at the end of the block."""
    found = Workers(tmp, module)
    try:
        yield found
    finally:
        found.stop()


__all__ = [
    "APP_ID",
    "KINDS",
    "OFFICIAL",
    "STEPLINE",
    "Kind",
    "Node",
    "Workers",
    "fid",
    "node",
    "workers",
]
