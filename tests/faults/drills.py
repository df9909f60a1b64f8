"""What the Postgres drills share: ``stepline start`` nodes, the steps app, its trace.

A ``Node`` is one ``stepline start`` process on a fixed port (a restart comes back on the
same one, as a deploy does behind a load balancer), syncing the app served by
``tests/apps/durable_steps.py`` (``app``) in a process of its own. ``Trace`` reads what
the app wrote: each step execution and each function end, by run.
"""

from __future__ import annotations

import collections
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg

from tests._support.polling import wait_until
from tests._support.processes import (
    APPS,
    clean_env,
    engine_command,
    free_port,
    log_tail,
    spawn,
    spawned,
    stop,
    wait_until_up,
)

KEY = "signkey-prod-" + "d1" * 32
EVENT_KEY = "drill-event-key"
BEARER = {"Authorization": f"Bearer {KEY}"}


class Node:
    """A ``stepline start`` engine on ``port``, started and stopped as an operator would."""

    def __init__(
        self, name: str, db: str, app_url: str, logs: Path, *extra: str, port: int | None = None
    ) -> None:
        self.name, self.db, self.app_url, self.extra = name, db, app_url, extra
        self.port = free_port() if port is None else port
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = logs / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = ["start", "--port", str(self.port), "--db", self.db, "--signing-key", KEY]
        args += ["--event-key", EVENT_KEY, "-u", self.app_url, *self.extra]
        self.proc = spawn(engine_command(*args), log=self.log, env=clean_env(), append=True)
        # a generous bound: a start on a loaded 2-core machine has taken over 30 s
        ready = f"{self.base}/ready"
        wait_until_up(ready, self.proc, log=self.log, what=self.name, timeout=90)
        # ready before the app's sync ends (an event sent then would match no function), and
        # that sync fails while the app's engine URL (a load balancer) reaches no node yet
        wait_until(self._synced, timeout=60, interval=0.5, message=lambda: f"{self.name} to sync")

    def _synced(self) -> bool:
        """Whether the app's functions are registered; if not, sync it again."""
        answer = httpx.get(f"{self.base}/v1/functions", headers=BEARER, timeout=10)
        answer.raise_for_status()
        if {"steps-flow", "steps-reply"} <= {f["function_id"] for f in answer.json()["data"]}:
            return True
        httpx.post(
            f"{self.base}/v1/apps/sync", json={"url": self.app_url}, headers=BEARER, timeout=20
        )
        return False

    def terminate(self, timeout: float = 40.0) -> float:
        """SIGTERM, as a deploy stops a node; the seconds until the process exited (0)."""
        assert self.proc is not None
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stop(self.proc, 2)
            raise AssertionError(f"{self.name} still ran:\n{log_tail(self.log)}") from None
        assert code == 0, log_tail(self.log)
        return time.monotonic() - began

    def close(self) -> None:
        if self.proc is not None:
            stop(self.proc, 5)


@contextlib.contextmanager
def app(logs: Path, engine_url: str) -> Iterator[tuple[str, Trace]]:
    """The steps app in a process of its own, reaching the engines at ``engine_url``: its
    serve URL and its trace."""
    port = free_port()
    trace = Trace(logs / "trace.txt")
    script = str(APPS / "durable_steps.py")
    command = [sys.executable, script, str(port), str(trace.path), KEY, engine_url]
    url = f"http://127.0.0.1:{port}/api/inngest"
    with spawned(command, log=logs / "app.log", env=clean_env(), up=url, ready=lambda r: True):
        yield url, trace


class Trace:
    """The app's trace file: ``RUN_ID STEP`` lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    def counts(self) -> collections.Counter[tuple[str, str]]:
        """How many times each (run, step) ran; ``end``: how many calls ended the run."""
        lines = self.path.read_text().split()
        return collections.Counter(zip(lines[::2], lines[1::2], strict=True))

    def twice(self) -> dict[tuple[str, str], int]:
        """What ran more than once."""
        return {key: n for key, n in self.counts().items() if n > 1}


def statuses(db: str) -> dict[str, int]:
    """Runs by status, read from the database."""
    with psycopg.connect(db, autocommit=True) as conn:
        rows = conn.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall()
    return {str(status): int(n) for status, n in rows}


def finished_events(db: str) -> collections.Counter[str]:
    """``inngest/function.finished`` events stored, by run."""
    with psycopg.connect(db, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT payload FROM events WHERE name = 'inngest/function.finished'"
        ).fetchall()
    return collections.Counter(str(json.loads(p)["data"]["run_id"]) for (p,) in rows)
