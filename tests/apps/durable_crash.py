"""The SIGKILL scenario of the durable-endpoint tests, the same for every framework.

A shop app (``tests.apps.durable_<framework>``) runs as a process on the embedded engine
(an SQLite file, a 2 s lease); its ``orders`` step c blocks on its first run when the
process is started with ``BLOCK=1``. The process is killed while c runs (a and b
recorded), started again with ``BLOCK=0`` on the same file, and its engine must finish
the run, when the lease lapses, without running a or b again.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections import Counter
from pathlib import Path

import httpx

from tests._support.polling import wait_until
from tests._support.processes import answers, clean_env, free_port, spawn, stop, wait_until_up

ROOT = Path(__file__).resolve().parents[2]
WAIT = 30.0  # an upper bound: the scenario ends far sooner


def post_quietly(url: str, body: object = None) -> None:
    """POST ``url`` (a JSON body), ignoring the connection's loss: the server dies under it."""
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(url, json=body if body is not None else {}, timeout=60)


def survives_sigkill(framework: str, face: str, tmp_path: Path) -> None:
    """The scenario against ``python -m tests.apps.durable_<framework> PORT DB MARKERS face``.

    The app answers ``POST /orders/<oid>`` (steps a, b, c; each writes ``name run_id``
    to MARKERS) and mounts the kit's run routes at ``/api``.
    """
    port, markers, log = free_port(), tmp_path / "marks", tmp_path / "app.log"
    base = f"http://127.0.0.1:{port}"
    module = f"tests.apps.durable_{framework}"
    command = [sys.executable, "-m", module, str(port), str(tmp_path / "crash.db"), str(markers)]
    command.append(face)

    def names() -> list[tuple[str, str]]:
        text = markers.read_text() if markers.exists() else ""
        return [(line.split()[0], line.split()[1]) for line in text.splitlines()]

    first = spawn(command, log=log, env=clean_env(BLOCK="1"), cwd=ROOT)
    caller = threading.Thread(
        target=post_quietly, args=(f"{base}/orders/9", {"qty": 3}), daemon=True
    )
    try:
        # the kit's route starts the embedded engine (it starts on first use)
        wait_until_up(f"{base}/api/runs/none", first, log=log, ready=answers)
        caller.start()
        wait_until(
            lambda: "c-started" in [n for n, _ in names()], timeout=WAIT, message="step c to start"
        )
        first.kill()  # SIGKILL: steps a and b are recorded, c is running
        first.wait(WAIT)
    finally:
        stop(first)
    caller.join(WAIT)
    run_id = names()[0][1]
    assert [n for n, _ in names()] == ["a", "b", "c-started"]

    second = spawn(command, log=log, env=clean_env(BLOCK="0"), cwd=ROOT, append=True)
    try:
        wait_until_up(f"{base}/api/runs/none", second, log=log, ready=answers)
        done = httpx.get(f"{base}/api/runs/{run_id}/result?wait={WAIT}", timeout=WAIT + 5)
    finally:
        stop(second)
    assert done.status_code == 200, done.text
    result = done.json()
    assert result["status"] == "Completed"
    output = result["output"]["json"]
    assert (output["steps"], output["oid"], output["sent"]) == (["a", "b", "c"], "9", {"qty": 3})
    counts = Counter(n for n, run in names() if run == run_id)
    assert counts == {"a": 1, "b": 1, "c-started": 1, "c": 1}  # a and b never ran again
