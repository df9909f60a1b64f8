"""The SIGKILL scenario of the durable-endpoint tests, shared by the frameworks.

An app process runs a 3-step durable route on the embedded engine (SQLite file, a short
lease); step c blocks on its first run when started with ``BLOCK=1``. The process is
killed while c runs (a and b recorded), started again with ``BLOCK=0``, and the engine
must finish the run without running a or b again.
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
WAIT = 20.0


def post_quietly(url: str, body: object = None) -> None:
    """POST ``url`` (a JSON body), ignoring the connection's loss: the server dies under it."""
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(url, json=body if body is not None else {}, timeout=60)


def orders_app_survives_sigkill(module: list[str], tmp_path: Path) -> None:
    """The scenario against an ``orders`` app (``python -m MODULE... PORT DB MARKERS``).

    The app answers ``POST /orders/<oid>`` (steps a, b, c; each writes ``name run_id``
    to MARKERS) and mounts the kit's run routes at ``/api``.
    """
    port, markers, log = free_port(), tmp_path / "marks", tmp_path / "app.log"
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", *module, str(port), str(tmp_path / "crash.db"), str(markers)]

    def names() -> list[tuple[str, str]]:
        text = markers.read_text() if markers.exists() else ""
        return [(line.split()[0], line.split()[1]) for line in text.splitlines()]

    first = spawn(command, log=log, env=clean_env(BLOCK="1"), cwd=ROOT)
    caller = threading.Thread(
        target=post_quietly, args=(f"{base}/orders/9", {"qty": 3}), daemon=True
    )
    try:
        wait_until_up(f"{base}/api/runs", first, log=log, ready=answers)
        caller.start()
        wait_until(lambda: "c-started" in [n for n, _ in names()], timeout=WAIT)
        first.kill()  # SIGKILL: steps a and b are recorded, c is running
        first.wait(WAIT)
    finally:
        stop(first)
    caller.join(WAIT)
    run_id = names()[0][1]
    assert [n for n, _ in names()] == ["a", "b", "c-started"]

    second = spawn(command, log=log, env=clean_env(BLOCK="0"), cwd=ROOT, append=True)
    try:
        wait_until_up(f"{base}/api/runs", second, log=log, ready=answers)
        done = httpx.get(f"{base}/api/runs/{run_id}/result?wait={WAIT}", timeout=WAIT + 5)
    finally:
        stop(second)
    assert done.status_code == 200, done.text
    result = done.json()
    assert result["status"] == "Completed"
    assert result["output"]["json"]["steps"] == ["a", "b", "c"]
    assert result["output"]["json"]["oid"] == "9"
    counts = Counter(n for n, run in names() if run == run_id)
    assert counts == {"a": 1, "b": 1, "c-started": 1, "c": 1}  # a and b never ran again
