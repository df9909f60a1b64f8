"""``ctx.patched`` with real processes: an engine, then v1 and v2 of an app on one URL.

v1 starts runs that sleep; v1 stops and v2 (with a patched branch before the sleep)
takes its place. The sleeping runs finish on v2 down the old path, new runs take the new
one; no run gets a non-determinism notice. Both stores, a sync and an async function.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests._support.polling import wait_until
from tests._support.processes import clean_env, free_port, spawned

from .conftest import database

HERE = Path(__file__).resolve().parent


@contextlib.contextmanager
def engine(db: str, log: Path) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, str(HERE / "engine_proc.py"), str(port), db]
    url = f"http://127.0.0.1:{port}"
    with spawned(command, log=log, env=clean_env(), up=f"{url}/health", what="engine"):
        yield url


@contextlib.contextmanager
def app(engine_url: str, port: int, label: str, log: Path) -> Iterator[str]:
    command = [
        *(sys.executable, "-m", "uvicorn", "patched_app:app", "--app-dir", str(HERE)),
        *("--host", "127.0.0.1", "--port", str(port), "--no-access-log"),
    ]
    settings = clean_env(STEPLINE_DEV=engine_url, PATCHES_LABEL=label)
    url = f"http://127.0.0.1:{port}/api/inngest"
    with spawned(command, log=log, env=settings, up=url, what=label):
        answer = httpx.post(f"{engine_url}/v1/apps/sync", json={"url": url}, timeout=30)
        assert answer.status_code == 200, answer.text
        yield url


def start(engine_url: str, nap: float) -> list[str]:
    ids = []
    for kind in ("sync", "async"):
        sent = httpx.post(
            f"{engine_url}/v1/events", json={"name": f"patches/{kind}", "data": {"nap": nap}}
        )
        assert sent.status_code in (200, 201), sent.text
        (event_id,) = sent.json()["data"]["ids"]
        where = f"{engine_url}/v1/events/{event_id}/runs"

        def started(where: str = where) -> list[dict[str, Any]] | None:
            found: list[dict[str, Any]] = httpx.get(where).json()["data"]
            return found or None

        ids.append(wait_until(started, timeout=10, message="the event's run")[0]["run_id"])
    return ids


def get(engine_url: str, path: str) -> Any:
    return httpx.get(f"{engine_url}/v1/{path}").json()["data"]


def sleeping(engine_url: str, run_ids: list[str]) -> None:
    def asleep(run_id: str) -> bool:
        return any(s.get("status") == "Sleeping" for s in get(engine_url, f"runs/{run_id}/steps"))

    wait_until(lambda: all(map(asleep, run_ids)), timeout=20, message="the runs to sleep")


def ended(engine_url: str, run_ids: list[str]) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        found = [get(engine_url, f"runs/{r}") for r in run_ids]
        return found if all(r["status"] in ("Completed", "Failed") for r in found) else None

    result: list[dict[str, Any]] = wait_until(done, timeout=40, message="the runs to end")
    return result


def test_a_patch_deployed_mid_run_keeps_old_runs_on_the_old_path(
    module_store: str, tmp_path: Path
) -> None:
    with database(module_store, tmp_path) as db, engine(db, tmp_path / "engine.log") as url:
        port = free_port()
        with app(url, port, "v1", tmp_path / "v1.log"):
            old = start(url, nap=8)  # v2 is up before the runs wake
            sleeping(url, old)
        with app(url, port, "v2", tmp_path / "v2.log"):
            steps = [get(url, f"runs/{r}/steps") for r in old]
            assert all(s[-1]["status"] == "Sleeping" for s in steps), "v2 came up too late"
            new = start(url, nap=0.5)
            for run in ended(url, old + new):
                assert run["status"] == "Completed", run
                assert run.get("notices", []) == [], run
            outputs = {r["run_id"]: r["output"] for r in ended(url, old + new)}
        for run_id in old:
            assert outputs[run_id] == {"path": "old", "end": "v2"}
            markers = [
                s for s in get(url, f"runs/{run_id}/steps") if s["name"] == "patched: new-path"
            ]
            assert [m["output"] for m in markers] == [False]
        for run_id in new:
            assert outputs[run_id] == {"path": "new", "end": "v2"}
