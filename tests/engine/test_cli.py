"""``python -m stepline.engine`` as a real process: banner, HTTP, exit codes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
import pytest

from stepline._identity import VERSION
from stepline.engine._cli.commands import main
from stepline.engine._store.postgres_schema import MIGRATIONS
from tests._support import refusing
from tests._support.databases import postgres_schema
from tests._support.polling import wait_until
from tests._support.processes import clean_env as _clean_env
from tests._support.processes import free_port, spawned, wait_until_up

pytestmark = [pytest.mark.process, pytest.mark.postgres]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ENV_PREFIXES = ("STEPLINE_", "INNGEST_")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the developer's own engine or app settings."""
    return _clean_env(PYTHONIOENCODING="utf-8", **extra)


def read_until(path: Path, needle: str, timeout: float = 20.0) -> str:
    def seen() -> str | None:
        text = path.read_text("utf-8")
        return text if needle in text else None

    def missing() -> str:
        return f"{needle!r} in output:\n{path.read_text('utf-8')}"

    return wait_until(seen, timeout=timeout, interval=0.05, message=missing)


def process(
    args: list[str], log: Path, env: dict[str, str]
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    return spawned(args, log=log, env=env)


def engine_command(*args: str) -> list[str]:
    return [sys.executable, "-W", "error", "-m", "stepline.engine", *args]


def test_dev_serves_events_and_prints_banner(tmp_path: Path) -> None:
    port = free_port()
    db = tmp_path / "data" / "engine.db"
    log = tmp_path / "engine.log"
    base = f"http://127.0.0.1:{port}"
    args = ["dev", "--port", str(port), "--db", str(db), "--sqlite-synchronous", "full"]
    with process(engine_command(*args), log, clean_env()) as p:
        wait_until_up(f"{base}/health", p)
        banner = read_until(log, "Database")
        assert "(SQLite, synchronous=FULL: commits survive power loss)" in banner
        assert f"Engine     {base}" in banner
        assert f"{base}/e/<event key>" in banner
        assert f"{base}/v1" in banner
        assert f"Dashboard  {base}/" in banner
        assert str(db) in banner
        assert "(dev mode)" in banner

        sent = httpx.post(f"{base}/e/any", json={"name": "cli/hello", "data": {"n": 1}})
        assert sent.status_code == 200
        assert sent.headers["x-inngest-server-kind"] == "dev"
        [event_id] = sent.json()["ids"]
        found = httpx.get(f"{base}/v1/events/{event_id}").json()["data"]
        assert found["data"] == {"n": 1}
    assert db.exists()


def test_dev_syncs_an_app_given_with_u_and_runs_it(tmp_path: Path) -> None:
    engine_port, app_port = free_port(), free_port()
    engine = f"http://127.0.0.1:{engine_port}"
    app_url = f"http://127.0.0.1:{app_port}/api/inngest"
    app_env = clean_env(
        STEPLINE_DEV="1", STEPLINE_API_BASE_URL=engine, STEPLINE_EVENT_API_BASE_URL=engine
    )
    app_cmd = [
        *(sys.executable, "-m", "uvicorn", "app:app", "--app-dir", str(EXAMPLES / "asgi")),
        *("--host", "127.0.0.1", "--port", str(app_port), "--no-access-log"),
    ]
    log = tmp_path / "engine.log"
    args = ["dev", "--port", str(engine_port), "--db", str(tmp_path / "db"), "-u", app_url]
    with process(app_cmd, tmp_path / "app.log", app_env) as app:
        wait_until_up(app_url, app)
        with process(engine_command(*args), log, clean_env()) as eng:
            wait_until_up(f"{engine}/health", eng)
            read_until(log, f"✓ {app_url} synced")
            [listed] = httpx.get(f"{engine}/v1/apps").json()["data"]
            assert (listed["app_id"], listed["functions"]) == ("asgi-example", 2)

            sent = httpx.post(
                f"{engine}/e/k", json={"name": "example/greet", "data": {"name": "cli"}}
            )
            assert sent.status_code == 200

            params = {"function_id": "asgi-example-greet", "status": "Completed"}
            runs: list[dict[str, Any]] = wait_until(
                lambda: httpx.get(f"{engine}/v1/runs", params=params).json()["data"] or None,
                interval=0.05,
                message="the run to complete",
            )
            assert runs, "the run never completed"
            assert runs[0]["output"] == {"text": "Hello, cli!"}


def test_dev_reports_an_unreachable_app(tmp_path: Path) -> None:
    port = free_port()
    dead = f"http://127.0.0.1:{free_port()}/api/inngest"
    log = tmp_path / "engine.log"
    args = ["dev", "--port", str(port), "--db", str(tmp_path / "db"), "-u", dead]
    with process(engine_command(*args), log, clean_env()) as proc:
        wait_until_up(f"http://127.0.0.1:{port}/health", proc)
        read_until(log, f"✗ {dead} error")


def test_start_without_keys_exits_2(tmp_path: Path) -> None:
    done = subprocess.run(
        engine_command("start", "--db", str(tmp_path / "db")),
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "signing key" in done.stderr
    assert "--signing-key" in done.stderr
    assert not (tmp_path / "db").exists()


def test_dev_public_bind_needs_allow_public(tmp_path: Path) -> None:
    done = subprocess.run(
        engine_command("dev", "--host", "0.0.0.0", "--db", str(tmp_path / "db")),
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "0.0.0.0" in done.stderr
    assert "--allow-public" in done.stderr


def test_start_with_keys_but_no_event_key_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIXES):
            monkeypatch.delenv(name)
    assert main(["start", "--signing-key", "signkey-test-" + "abcd" * 8]) == 2
    assert "event key" in capsys.readouterr().err


def test_version_and_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"stepline {VERSION}"
    with pytest.raises(SystemExit) as exited:
        main(["dev", "--retry-scale", "-1"])
    assert exited.value.code == 2
    with pytest.raises(SystemExit):
        main([])
    assert main(["dev", "--db-pool-size", "0"]) == 2
    assert "pool size must be 1-1000" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["dev", "--sqlite-synchronous", "off"])
    assert exited.value.code == 2
    assert "--sqlite-synchronous: invalid choice: 'off'" in capsys.readouterr().err


# -- Postgres -----------------------------------------------------------------------------


def with_password(url: str) -> tuple[str, str]:
    """``url`` with a password in it (its own, or one trust auth ignores), and the password."""
    parts = urllib.parse.urlsplit(url)
    if parts.password:
        return url, urllib.parse.unquote(parts.password)
    password = "s3cret-pw"
    user = parts.username or "postgres"
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}")), password


def run_engine(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        engine_command(*args),
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
        check=False,
    )


def test_dev_on_postgres_serves_and_redacts_the_password(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "engine.log"
    with postgres_schema() as schema_url:
        url, password = with_password(schema_url)
        args = ["dev", "--port", str(port), "--db", url, "--db-pool-size", "3"]
        with process(engine_command(*args), log, clean_env()) as proc:
            wait_until_up(f"{base}/health", proc)
            banner = read_until(log, "Database")
            assert f"Engine     {base}" in banner
            assert "(dev mode)" in banner
            user = urllib.parse.urlsplit(url).username
            assert f"Database   postgresql://{user}:***@" in banner
            assert "synchronous" not in banner  # a SQLite setting
            assert password not in banner

            sent = httpx.post(f"{base}/e/any", json={"name": "cli/pg", "data": {"n": 2}})
            assert sent.status_code == 200, sent.text
            [event_id] = sent.json()["ids"]
            found = httpx.get(f"{base}/v1/events/{event_id}").json()["data"]
            assert found["data"] == {"n": 2}
        assert password not in log.read_text("utf-8")


def test_migrate_postgres_then_dev_without_migrating(tmp_path: Path) -> None:
    with postgres_schema() as url:
        # a fresh schema and --no-migrate: the engine refuses to start, and says what to do
        port = free_port()
        refused = run_engine("dev", "--no-migrate", "--port", str(port), "--db", url)
        assert refused.returncode != 0, refused.stdout
        assert "run `stepline migrate" in refused.stdout + refused.stderr
        assert "Database" not in refused.stdout, "no banner for an engine that did not start"

        latest = len(MIGRATIONS)
        first = run_engine("migrate", "--db", url)
        assert first.returncode == 0, first.stderr
        assert f"at schema version {latest} (migrated from version 0)" in first.stdout
        again = run_engine("migrate", "--db", url)
        assert again.returncode == 0, again.stderr
        assert f"at schema version {latest} (already up to date)" in again.stdout

        # migrated: now --no-migrate starts
        log = tmp_path / "engine.log"
        args = ["dev", "--no-migrate", "--port", str(port), "--db", url]
        with process(engine_command(*args), log, clean_env()) as proc:
            wait_until_up(f"http://127.0.0.1:{port}/health", proc)


def test_migrate_unreachable_postgres_exits_1_without_the_password() -> None:
    where = f"127.0.0.1:{refusing.port()}/x"
    done = run_engine("migrate", "--db", f"postgresql://nobody:pw@{where}")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith(f"stepline migrate: postgresql://nobody:***@{where}: ")
    assert ":pw@" not in done.stderr
