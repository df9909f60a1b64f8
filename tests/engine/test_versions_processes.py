"""Version pinning with real processes.

An engine process and two processes of one app (``tests/apps/versioned.py``), v1 and v2 on two
ports. Runs started on v1 sleep; v2 is synced; new runs go to v2. With ``pinned`` the old
runs finish on v1's process, with ``latest`` they move to v2's; each step returns the
label of the process that ran it, so a run's output says who served it. Both stores, a
sync and an async function, the stepline SDK and the official ``inngest`` SDK (pinned,
by its app version or by a deploy id). Retiring v1 with a live run is refused by the CLI
with the count, and ``--force`` moves the run with a ``version_moved`` notice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests._support.cli import Ran, run_stepline
from tests._support.databases import database

from . import deploys
from .deploys import app, ended, engine, sleeping, sync

pytestmark = [pytest.mark.process]

APP = "versioned"
FUNCTIONS = ("versioned-sync", "versioned-async")


def start(engine_url: str, nap: float) -> list[str]:
    return deploys.start(engine_url, "versioned", {"nap": nap})


def run(engine_url: str, run_id: str) -> dict[str, Any]:
    found: dict[str, Any] = deploys.get(engine_url, f"runs/{run_id}")
    return found


def log_tail(where: Path) -> str:
    return "\n".join(
        f"{p.name}: {p.read_text(errors='replace')[-2000:]}" for p in where.glob("*.log")
    )


def cli(engine_url: str, *args: str) -> Ran:
    return run_stepline(*args, "--url", engine_url)


CASES = [
    # (sdk, policy, how v1/v2 declare their version)
    pytest.param("stepline", "pinned", "app_version", id="stepline-pinned"),
    pytest.param("stepline", "latest", "app_version", id="stepline-latest"),
    pytest.param("official", "pinned", "app_version", id="official-pinned"),
    pytest.param("official", "pinned", "deploy_id", id="official-deploy-id"),
]


@pytest.mark.timeout(120)  # three processes to start: slow on a busy machine
@pytest.mark.parametrize("store", ["sqlite", "postgres"])
@pytest.mark.parametrize(("sdk", "policy", "declared"), CASES)
def test_pinned_runs_finish_on_v1_while_new_runs_go_to_v2(
    store: str, sdk: str, policy: str, declared: str, tmp_path: Path
) -> None:
    env = {"VERSIONED_SDK": sdk}
    if sdk == "stepline" and policy == "latest":
        env["VERSIONED_POLICY"] = "latest"

    def version_env(label: str) -> dict[str, str]:
        by_app = {"VERSIONED_APP_VERSION": label} if declared == "app_version" else {}
        return {**env, "VERSIONED_LABEL": label, **by_app}

    deploy = declared == "deploy_id"
    with (
        database(store, tmp_path) as db,
        engine(db, tmp_path / "engine.log") as url,
        app("versioned", url, tmp_path / "v1.log", **version_env("v1")) as v1,
        app("versioned", url, tmp_path / "v2.log", **version_env("v2")) as v2,
    ):
        sync(url, v1, "v1" if deploy else None)
        old = start(url, nap=3)
        lingering = start(url, nap=3600) if policy == "pinned" else []
        sleeping(url, old + lingering)
        sync(url, v2, "v2" if deploy else None)
        new = start(url, nap=0.1)

        finished_old = ended(url, old)
        finished_new = ended(url, new)
        assert [r["output"] for r in finished_new] == [{"begin": "v2", "end": "v2"}] * 2
        assert [r["app_version"] for r in finished_new] == ["v2", "v2"]
        if policy == "pinned":
            outputs = [r["output"] for r in finished_old]
            assert outputs == [{"begin": "v1", "end": "v1"}] * 2, (finished_old, log_tail(tmp_path))
            assert [r["app_version"] for r in finished_old] == ["v1", "v1"]
            assert [r["notices"] for r in finished_old] == [[], []]
        else:
            assert [r["output"] for r in finished_old] == [{"begin": "v1", "end": "v2"}] * 2
            assert [r["app_version"] for r in finished_old] == ["v2", "v2"]
            moves = [[(n["kind"], n["reason"]) for n in r["notices"]] for r in finished_old]
            assert moves == [[("version_moved", "latest")]] * 2

        listed = cli(url, "apps", "versions", APP)
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert lines[0].split() == ["VERSION", "LATEST", "LIVE", "RUNS", "SYNCED", "URL"]
        assert lines[1].split()[:3] == ["v2", "yes", "0"]
        assert lines[2].split()[:2] == ["v1", str(len(lingering))]
        on_v1 = cli(url, "runs", "list", "--version", "v1", "--json")
        assert on_v1.returncode == 0, on_v1.stderr
        if not lingering:
            return

        assert sorted(r["run_id"] for r in json.loads(on_v1.stdout)["data"]) == sorted(
            [*old, *lingering]
        )
        refused = cli(url, "apps", "retire", APP, "v1")
        assert refused.returncode == 4, (refused.stdout, refused.stderr)
        assert "2 runs started on v1 are still live; retry with ?force=true" in refused.stderr
        assert [run(url, r)["app_version"] for r in lingering] == ["v1", "v1"]
        forced = cli(url, "apps", "retire", APP, "v1", "--force")
        assert forced.returncode == 0, forced.stderr
        assert "2 live run(s) moved to v2" in forced.stdout
        for live in lingering:
            moved = run(url, live)
            assert moved["status"] == "Running"
            assert moved["app_version"] == "v2"
            assert [(n["kind"], n["from"], n["to"], n["reason"]) for n in moved["notices"]] == [
                ("version_moved", "v1", "v2", "unregistered")
            ]
        shown = cli(url, "runs", "show", lingering[0])
        assert shown.returncode == 0, shown.stderr
        assert "Version   v2" in shown.stdout
        assert "Notice    version_moved: moved from app version v1 to v2" in shown.stdout
        latest = cli(url, "apps", "retire", APP, "v2", "--force")
        assert latest.returncode == 4
        assert "v2 is the only version" in latest.stderr
