"""Deploys with real processes: an engine process, app processes (uvicorn) synced to it,
and the REST calls the versioning tests make (start runs, wait for them to sleep or end).

Shared by ``test_versions_processes``, ``test_patched_processes`` and
``test_nondeterminism_processes``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from tests._support.polling import wait_until
from tests._support.processes import APPS, clean_env, free_port, spawned

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def engine(db: str, log: Path) -> Iterator[str]:
    """An engine process (``tests/apps/engine_server.py``) on ``db``; its base URL."""
    port = free_port()
    command = [sys.executable, str(APPS / "engine_server.py"), str(port), db]
    url = f"http://127.0.0.1:{port}"
    with spawned(command, log=log, env=clean_env(), up=f"{url}/health", what="engine"):
        yield url


@contextlib.contextmanager
def app(
    module: str, engine_url: str, log: Path, *, port: int | None = None, **env: str
) -> Iterator[str]:
    """``tests.apps.<module>:app`` under uvicorn, in dev mode against ``engine_url``; its
    serve URL (not synced: see ``sync``)."""
    port = port or free_port()
    command = [
        *(sys.executable, "-m", "uvicorn", f"tests.apps.{module}:app", "--app-dir", str(ROOT)),
        *("--host", "127.0.0.1", "--port", str(port), "--no-access-log"),
    ]
    settings = clean_env(STEPLINE_DEV=engine_url, INNGEST_DEV=engine_url, **env)
    url = f"http://127.0.0.1:{port}"
    with spawned(command, log=log, env=settings, up=f"{url}/api/inngest", what=log.stem):
        yield f"{url}/api/inngest"


def sync(engine_url: str, app_url: str, deploy_id: str | None = None) -> None:
    """Register ``app_url``: through the engine, or as a deploy hook would (``deployId``)."""
    if deploy_id is None:  # the engine PUTs to the app, which registers
        answer = httpx.post(f"{engine_url}/v1/apps/sync", json={"url": app_url}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["data"]["ok"], answer.text
    else:  # a deploy hook PUTs to the app with its deploy id, as a CI job would
        answer = httpx.put(f"{app_url}?deployId={deploy_id}", timeout=30)
        assert answer.status_code == 200, answer.text
        assert "error" not in answer.json(), answer.text


def get(engine_url: str, path: str) -> Any:
    """``GET /v1/<path>``'s ``data``."""
    return httpx.get(f"{engine_url}/v1/{path}").json()["data"]


def start(engine_url: str, prefix: str, data: Mapping[str, Any]) -> list[str]:
    """One run of each function (events ``<prefix>/sync`` and ``<prefix>/async``); their ids."""
    ids = []
    for kind in ("sync", "async"):
        sent = httpx.post(
            f"{engine_url}/v1/events", json={"name": f"{prefix}/{kind}", "data": data}
        )
        assert sent.status_code in (200, 201), sent.text
        (event_id,) = sent.json()["data"]["ids"]

        def started(event_id: str = event_id) -> list[dict[str, Any]] | None:
            found: list[dict[str, Any]] = get(engine_url, f"events/{event_id}/runs")
            return found or None

        ids.append(wait_until(started, timeout=10, message="the event's run")[0]["run_id"])
    return ids


def sleeping(engine_url: str, run_ids: list[str]) -> None:
    """Wait until every run has a step ``Sleeping``."""

    def asleep(run_id: str) -> bool:
        return any(s.get("status") == "Sleeping" for s in get(engine_url, f"runs/{run_id}/steps"))

    wait_until(lambda: all(map(asleep, run_ids)), timeout=40, message="the runs to sleep")


def ended(engine_url: str, run_ids: list[str]) -> list[dict[str, Any]]:
    """The runs once every one has completed or failed."""

    def done() -> list[dict[str, Any]] | None:
        found = [get(engine_url, f"runs/{r}") for r in run_ids]
        return found if all(r["status"] in ("Completed", "Failed") for r in found) else None

    result: list[dict[str, Any]] = wait_until(done, timeout=40, message="the runs to end")
    return result
