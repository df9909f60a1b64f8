"""``ctx.patched`` with real processes: an engine, then v1 and v2 of an app on one URL.

v1 starts runs that sleep; v1 stops and v2 (with a patched branch before the sleep)
takes its place. The sleeping runs finish on v2 down the old path, new runs take the new
one; no run gets a non-determinism notice. Both stores, a sync and an async function.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._support.databases import database
from tests._support.processes import free_port

from . import deploys
from .deploys import app, ended, engine, get, sleeping, sync

pytestmark = [pytest.mark.process]


@contextlib.contextmanager
def deployed(engine_url: str, port: int, label: str, log: Path) -> Iterator[str]:
    """``tests/apps/patches.py`` labelled ``label`` on ``port``, synced with the engine."""
    with app("patches", engine_url, log, port=port, PATCHES_LABEL=label) as url:
        sync(engine_url, url)
        yield url


def start(engine_url: str, nap: float) -> list[str]:
    return deploys.start(engine_url, "patches", {"nap": nap})


def test_a_patch_deployed_mid_run_keeps_old_runs_on_the_old_path(
    module_store: str, tmp_path: Path
) -> None:
    with database(module_store, tmp_path) as db, engine(db, tmp_path / "engine.log") as url:
        port = free_port()
        with deployed(url, port, "v1", tmp_path / "v1.log"):
            old = start(url, nap=8)  # v2 is up before the runs wake
            sleeping(url, old)
        with deployed(url, port, "v2", tmp_path / "v2.log"):
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
