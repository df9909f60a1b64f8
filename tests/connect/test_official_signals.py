"""inngest-py's own Connect signal scenarios, with the official worker as a process.

As ``test_signals.py`` in the inngest-py repository does against Inngest's dev server: a
worker process (``tests.apps.connect_official_signals``) serves a function that sleeps 5 s;
the test waits for the app on the dev server's connection listing (``GET
/v0/connect/envs/{env}/conns``, read exactly as the scenario reads it), sends the event,
waits for the run to start, signals the worker (SIGTERM, or a non-standard signal the worker
was told to shut down on), and expects the run to complete with the function's output, the
worker to leave the listing and the process to exit with status 0. Here the function's
sleep lasts until the engine shows the worker draining (a gate file), not 5 s.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._support.polling import wait_until
from tests._support.processes import clean_env, log_tail

from .harness import ROOT, Node, node

pytestmark = [pytest.mark.process, pytest.mark.timeout(60)]

#: The dev server's one environment, the id the scenario asks for.
DEV_ENV = "00000000-0000-4000-b000-000000000000"


def _listed(engine: Node, app_id: str) -> bool:
    """Whether the listing shows ``app_id``'s worker, read as the official scenario reads it.

    The scenario walks ``data`` and keeps the last entry's verdict: a worker is "there"
    when the last connection listed is its own, so the newest connection comes last.
    """
    body: Any = engine.get(f"/v0/connect/envs/{DEV_ENV}/conns")
    assert isinstance(body, dict), body
    data = body["data"]
    assert isinstance(data, list), body
    exists = False
    for app in data:
        assert isinstance(app, dict), body
        exists = app["instance_id"] == app_id
    return exists


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Node]:
    with node(str(tmp_path / "e.db")) as found:
        yield found


def _start_worker(
    engine: Node, tmp_path: Path, app_id: str, event: str, *signals: signal.Signals
) -> tuple[subprocess.Popen[bytes], Path]:
    out = tmp_path / f"{app_id}.out"
    command = [
        sys.executable,
        "-m",
        "tests.apps.connect_official_signals",
        engine.url,
        app_id,
        event,
    ]
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [*command, *(s.name for s in signals)],
            cwd=ROOT,
            env=clean_env(),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    return proc, out


@pytest.mark.parametrize(
    ("shutdown", "sent"),
    [((), signal.SIGTERM), ((signal.SIGUSR1,), signal.SIGUSR1)],
    ids=["sigterm", "non-standard-signal"],
)
def test_a_signalled_worker_finishes_its_call_then_leaves(
    engine: Node,
    tmp_path: Path,
    shutdown: tuple[signal.Signals, ...],
    sent: signal.Signals,
) -> None:
    app_id, event = f"app-{sent.name.lower()}", f"event-{sent.name.lower()}"
    proc, out = _start_worker(engine, tmp_path, app_id, event, *shutdown)
    try:
        wait_until(
            lambda: proc.poll() is None and _listed(engine, app_id),
            timeout=10,  # the scenario's own limit
            message=lambda: f"the app in the listing:\n{log_tail(out)}",
        )
        gate = tmp_path / f"{app_id}.gate"
        data = {"seconds": 60, "gate": str(gate)}
        answer = engine.http.post("/e/test-key", json={"name": event, "data": data})
        assert answer.status_code == 200, answer.text
        run_id = engine.run_of(answer.json()["ids"][0])
        # the run started: its call is the worker's (a call that crosses the worker's
        # WORKER_PAUSE is dropped by it, and goes to another worker, of which there is none)
        wait_until(
            lambda: any(
                p.acked
                for c in engine.engine.connect.workers()
                if c.instance_id == app_id
                for p in list(c.inflight.values())  # one C call: safe across threads
            ),
            message=lambda: f"the worker to take the call:\n{log_tail(out)}",
        )
        signalled = time.monotonic()
        proc.send_signal(sent)
        wait_until(
            lambda: any(
                c.instance_id == app_id and c.draining for c in engine.engine.connect.workers()
            ),
            message=lambda: f"the worker to drain:\n{log_tail(out)}",
        )
        gate.touch()  # the call the draining worker holds ends
        run = engine.finished(run_id)
        assert run["status"] == "Completed", run
        assert run["output"] == "Hello"
        wait_until(
            lambda: not _listed(engine, app_id),
            timeout=10,
            message=lambda: f"the worker to leave the listing:\n{log_tail(out)}",
        )
        assert proc.wait(timeout=5) == 0, log_tail(out)
        assert time.monotonic() - signalled < 15
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
