"""``stepline start`` stops within its shutdown grace whatever is connected, and at once
on a second SIGTERM.

The engine holds everything that could keep it: the official Connect worker running a
step far longer than the grace, an SSE reader and a long poll on that run, and a socket
that upgraded but never authenticates. The drain of the calls in flight and uvicorn's
wait for the open requests share one grace, so the first SIGTERM has the process gone
within it (plus the moment handing the calls back takes); a second SIGTERM cuts every
wait short.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stepline._protocol import signing
from tests._support.polling import wait_until
from tests._support.processes import clean_env, engine_command, free_port, spawned
from tests.apps.connect_official_worker import event

from .harness import APP_ID, Workers, workers
from .test_preauth_limits import upgrade

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]
KEY = "signkey-prod-" + "3c" * 32
EVENT_KEY = "stopping-event-key"
GRACE = 8.0
#: handing the calls back and uvicorn's whole-second wait round the grace up by this much
MARGIN = 3.0


@contextlib.contextmanager
def busy_engine(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Workers]]:
    """An engine with a Connect step in flight, a stream reader, a long poll and an
    unauthenticated socket on it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = clean_env(STEPLINE_SIGNING_KEY=KEY, STEPLINE_EVENT_KEY=EVENT_KEY)
    command = engine_command(
        "start", "--port", str(port), "--db", str(tmp_path / "e.db"),
        "--shutdown-grace", f"{GRACE:g}",
    )  # fmt: skip
    auth = {"authorization": signing.bearer_token(KEY)}
    log = tmp_path / "engine.log"
    with (
        workers(tmp_path) as found,
        httpx.Client(base_url=base, headers=auth, timeout=30) as http,
        spawned(command, log=log, env=env, up=f"{base}/health") as engine,
    ):
        found.spawn(base, "w1", KEY)

        def synced() -> bool:
            return any(a["app_id"] == APP_ID for a in http.get("/v1/apps").json()["data"])

        wait_until(synced, message=lambda: f"the worker's app:\n{found.output('w1')}")
        sent = http.post(
            f"/e/{EVENT_KEY}", json={"name": event("fragile"), "data": {"seconds": 600}}
        )
        event_id = sent.json()["ids"][0]
        wait_until(lambda: found.ran("fragile.work.start") or None, message="the step")
        run_id = http.get(f"/v1/events/{event_id}/runs").json()["data"][0]["run_id"]
        opened: list[str] = []

        def stream() -> None:
            headers = {**auth, "accept": "text/event-stream"}
            with (
                contextlib.suppress(httpx.HTTPError),
                httpx.stream(
                    "GET", f"{base}/v1/runs/{run_id}/stream", headers=headers, timeout=300
                ) as answer,
            ):
                opened.append("stream")
                for _ in answer.iter_bytes():
                    pass

        def long_poll() -> None:
            opened.append("poll")
            with contextlib.suppress(httpx.HTTPError):
                http.get(f"/v1/runs/{run_id}", params={"wait": 60}, timeout=300)

        readers = [threading.Thread(target=f, daemon=True) for f in (stream, long_poll)]
        for reader in readers:
            reader.start()
        idle, head = upgrade(port, "10.3.0.1")
        assert head.startswith(b"HTTP/1.1 101"), head
        wait_until(lambda: len(opened) == 2, message="the reader and the long poll")
        time.sleep(0.5)  # both are waiting in the engine now
        try:
            yield engine, found
        finally:
            idle.close()


def test_one_sigterm_stops_the_engine_within_its_grace(tmp_path: Path) -> None:
    with busy_engine(tmp_path) as (engine, _found):
        stopping = time.monotonic()
        engine.send_signal(signal.SIGTERM)
        assert engine.wait(GRACE * 3) == 0
        took = time.monotonic() - stopping
        print(f"one SIGTERM, grace {GRACE:g} s: gone after {took:.2f} s")
        assert took < GRACE + MARGIN


def test_a_second_sigterm_stops_the_engine_at_once(tmp_path: Path) -> None:
    with busy_engine(tmp_path) as (engine, _found):
        args = list(map(str, engine.args))  # type: ignore[arg-type]
        health = f"http://127.0.0.1:{args[args.index('--port') + 1]}/health"
        first = time.monotonic()
        engine.send_signal(signal.SIGTERM)

        def stopped_listening() -> bool:  # the first thing a graceful stop does
            try:
                httpx.get(health, timeout=5)
            except httpx.ConnectError:
                return True
            return False

        wait_until(stopped_listening, timeout=GRACE, message="the engine to stop listening")
        assert engine.poll() is None  # still draining its call in flight
        again = time.monotonic()
        engine.send_signal(signal.SIGTERM)
        assert engine.wait(GRACE * 3) == 0
        took = time.monotonic() - again
        print(f"second SIGTERM {again - first:.2f} s after the first: gone {took:.2f} s later")
        # what was left of the grace is over GRACE / 2 here: waiting it out would fail this
        assert again - first < GRACE / 2
        assert took < GRACE / 2
