"""Upgrading from the previous release, with that release's own code (``tests/_support/release``).

As an operator does it, on both stores:

- runs sleeping and waiting for events under the previous release's engine, with an app
  on the previous release's SDK, go on under today's engine, which migrates the database
  at its start: every run completes, none ends twice, no recorded step runs again;
- the previous release's engine started on the database today's engine migrated refuses,
  with one line naming both versions and exit code 2, and so does its ``stepline
  migrate``; the database is left as it was.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stepline.engine._store import is_postgres
from tests._support import release
from tests._support.ci import unavailable
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

pytestmark = [pytest.mark.postgres, pytest.mark.process, pytest.mark.slow]

KEY = "signkey-prod-" + "e7" * 32
EVENT_KEY = "upgrade-event-key"
BEARER = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def previous(tmp_path_factory: pytest.TempPathFactory) -> release.Release:
    try:
        return release.previous(tmp_path_factory.mktemp("releases"))
    except LookupError as exc:
        unavailable(f"the previous release, from git: {exc}")


def engine(
    db: str, port: int, app_url: str, log: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """A ``stepline start`` on ``db`` syncing ``app_url``, up and with the app's functions."""
    args = ["start", "--port", str(port), "--db", db, "--signing-key", KEY]
    proc = spawn(
        engine_command(*args, "--event-key", EVENT_KEY, "-u", app_url),
        log=log,
        env=env,
        append=True,
    )
    base = f"http://127.0.0.1:{port}"
    wait_until_up(f"{base}/ready", proc, log=log, timeout=90)

    def synced() -> bool:
        listed = httpx.get(f"{base}/v1/functions", headers=BEARER, timeout=10).json()["data"]
        if {"steps-flow", "steps-reply"} <= {f["function_id"] for f in listed}:
            return True
        httpx.post(f"{base}/v1/apps/sync", json={"url": app_url}, headers=BEARER, timeout=20)
        return False

    wait_until(synced, timeout=60, interval=0.5, message="the app to sync")
    return proc


def send(port: int, name: str, data: dict[str, object]) -> None:
    answer = httpx.post(
        f"http://127.0.0.1:{port}/e/{EVENT_KEY}", json={"name": name, "data": data}, timeout=10
    )
    answer.raise_for_status()


def runs(port: int) -> list[dict[str, object]]:
    answer = httpx.get(f"http://127.0.0.1:{port}/v1/runs", params={"limit": 50}, headers=BEARER)
    answer.raise_for_status()
    data: list[dict[str, object]] = answer.json()["data"]
    return data


@pytest.fixture
def app(tmp_path: Path, previous: release.Release) -> Iterator[tuple[str, Path, int]]:
    """The steps app on the previous release's SDK: its URL, its trace, the engines' port."""
    engine_port, port = free_port(), free_port()
    trace = tmp_path / "trace.txt"
    trace.touch()
    script = str(APPS / "durable_steps.py")
    command = [
        sys.executable,
        script,
        str(port),
        str(trace),
        KEY,
        f"http://127.0.0.1:{engine_port}",
    ]
    url = f"http://127.0.0.1:{port}/api/inngest"
    env = previous.env(clean_env())
    with spawned(command, log=tmp_path / "app.log", env=env, up=url, ready=lambda r: True):
        yield url, trace, engine_port


def test_runs_in_flight_on_the_previous_release_complete_on_todays_engine(
    db: str, app: tuple[str, Path, int], previous: release.Release, tmp_path: Path
) -> None:
    app_url, trace, port = app
    log = tmp_path / "engine.log"
    old = engine(db, port, app_url, log, previous.env(clean_env()))
    try:
        for k in range(3):
            send(port, "drill/go", {"sleep": "6s", "k": k})
            send(port, "drill/ask", {"k": f"q{k}"})
        # every run has taken its first step: three sleep, three wait for their reply
        wait_until(lambda: len(trace.read_text().split()) >= 12, timeout=60, message="first steps")
        assert all(run["status"] == "Running" for run in runs(port))
    finally:
        old.send_signal(signal.SIGTERM)
        assert old.wait(60) == 0, log_tail(log)
    before = trace.read_text().split()
    new = engine(db, port, app_url, log, clean_env())
    try:
        for k in range(3):
            send(port, "drill/reply", {"k": f"q{k}"})
        wait_until(
            lambda: [run["status"] for run in runs(port)] == ["Completed"] * 6,
            timeout=90,
            message=lambda: f"every run to complete: {[r['status'] for r in runs(port)]}",
        )
    finally:
        stop(new, 30)
    lines = trace.read_text().split()
    executions = list(zip(lines[::2], lines[1::2], strict=True))
    assert len(set(executions)) == len(executions), (
        "a recorded step ran again, or a run ended twice"
    )
    assert len([step for _, step in executions if step == "end"]) == 6
    assert len(before) == 12  # the previous release ran only the first steps


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m stepline.engine ARGS`` run to its end under ``env``."""
    return subprocess.run(
        engine_command(*args), env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_previous_release_refuses_the_schema_today_migrated(
    db: str, previous: release.Release
) -> None:
    migrated = cli("migrate", "--db", db, env=clean_env())
    assert migrated.returncode == 0, migrated.stderr
    today = release.counts(release.ROOT / "src")
    newest = today[1] if is_postgres(db) else today[0]
    known = previous.postgres_schema if is_postgres(db) else previous.sqlite_schema
    line = (
        f"the database schema is at version {newest}, newer than this engine knows "
        f"(stepline {previous.version} knows up to version {known})"
    )
    port = free_port()
    for args in (
        ("start", "--port", str(port), "--db", db, "--signing-key", KEY, "--event-key", EVENT_KEY),
        ("migrate", "--db", db),
    ):
        refused = cli(*args, env=previous.env(clean_env()))
        assert refused.returncode == 2, (args[0], refused.stdout, refused.stderr)
        assert line in refused.stderr + refused.stdout, (args[0], refused.stderr)
    # nothing was undone: today's engine finds the schema where it left it
    again = cli("migrate", "--db", db, env=clean_env())
    assert again.returncode == 0, again.stderr
    assert f"at schema version {newest} (already up to date)" in again.stdout
