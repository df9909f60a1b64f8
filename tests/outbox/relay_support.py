"""What the relay tests share: an engine process, relay processes, and counting what arrived.

The engine is a real ``stepline dev`` process on a SQLite file; the shop's function
(``shop-process-order``, triggered by ``shop/order.placed``) is registered with a URL no
app answers, so runs are created (what exactly-once is about) and their calls fail and
retry. Relays are real ``stepline relay`` processes (``relay_command``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests._support import processes, refusing
from tests._support.outbox_shop import ORDER_PLACED
from tests._support.polling import wait_until

FUNCTION_ID = "shop-process-order"
#: a relay that polls often: tests see deliveries at once without a NOTIFY
FAST_RELAY = ("--poll-interval", "0.05")


def registration(function_id: str = FUNCTION_ID) -> dict[str, Any]:
    """The shop app as an SDK registers it, at a URL nothing answers."""
    slug = function_id.removeprefix("shop-")
    url = refusing.url(f"/api/inngest?fnId={function_id}&stepId=step")
    step = {"id": "step", "name": "step", "runtime": {"type": "http", "url": url}}
    return {
        "appName": "shop",
        "url": refusing.url("/api/inngest"),
        "sdk": "py:v0.1.0",
        "framework": "flask",
        "functions": [
            {
                "id": function_id,
                "name": slug,
                "triggers": [{"event": ORDER_PLACED}],
                "steps": {"step": step},
            }
        ],
    }


@dataclasses.dataclass
class EngineProcess:
    """A ``stepline dev`` process; ``start``/``kill`` it to simulate an outage."""

    directory: Path
    port: int = dataclasses.field(default_factory=processes.free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.directory / "engine.log"
        command = processes.engine_command(
            "dev", "--port", str(self.port), "--db", str(self.directory / "engine.db"), "--no-poll"
        )
        self.proc = processes.spawn(command, log=log, env=processes.clean_env(), append=True)
        processes.wait_until_up(f"{self.url}/health", self.proc, log=log, what="the engine")

    def stop(self) -> None:
        if self.proc is not None:
            processes.stop(self.proc)
            self.proc = None

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"x-stepline-csrf": "1"}, timeout=10)

    def register(self) -> None:
        with self.client() as http:
            reply = http.post("/fn/register", json=registration())
            assert reply.status_code == 200, reply.text

    def events(self, name: str = ORDER_PLACED) -> list[dict[str, Any]]:
        with self.client() as http:
            reply = http.get("/v1/events", params={"name": name, "limit": 100})
            assert reply.status_code == 200, reply.text
            found: list[dict[str, Any]] = reply.json()["data"]
            return found

    def runs(self, function_id: str = FUNCTION_ID) -> list[dict[str, Any]]:
        with self.client() as http:
            reply = http.get("/v1/runs", params={"function_id": function_id, "limit": 100})
            assert reply.status_code == 200, reply.text
            found: list[dict[str, Any]] = reply.json()["data"]
            return found


@contextlib.contextmanager
def engine_process(directory: Path) -> Iterator[EngineProcess]:
    """A started engine with the shop registered; stopped afterwards."""
    engine = EngineProcess(directory)
    engine.start()
    try:
        engine.register()
        yield engine
    finally:
        engine.stop()


def relay_url(db: Any) -> str:
    """What ``stepline relay --db`` takes for a test ``Database``."""
    return str(db.url)


def relay_command(db: Any, engine_url: str, *extra: str) -> list[str]:
    """``stepline relay`` for ``db`` and the engine at ``engine_url``."""
    return processes.engine_command(
        "relay", "--db", relay_url(db), "--engine", engine_url, *FAST_RELAY, *extra
    )


@contextlib.contextmanager
def relay_process(
    db: Any, engine_url: str, log: Path, *extra: str, **env: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A running relay (stopped with SIGTERM afterwards); waits for its start line."""
    proc = processes.spawn(
        relay_command(db, engine_url, *extra), log=log, env=processes.clean_env(**env)
    )
    try:
        wait_until(
            lambda: _alive(proc, log) and "relaying to" in log.read_text(errors="replace"),
            timeout=30,
            message=lambda: f"the relay to start:\n{processes.log_tail(log)}",
        )
        yield proc
    finally:
        processes.stop(proc)


def _alive(proc: subprocess.Popen[bytes], log: Path) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"the relay exited with {proc.returncode}:\n{processes.log_tail(log)}")
    return True


def metric(text: str, name: str) -> float:
    """A sample's value in Prometheus text."""
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert found is not None, text
    return float(found.group(1))


def pending(db: Any) -> list[dict[str, Any]]:
    """The outbox rows not delivered yet."""
    return [row for row in db.rows() if row["delivered_at"] is None]
