"""``stepline deploy check`` over the serve URL of an app on the official ``inngest`` npm SDK.

The engine under uvicorn in a thread (a SQLite file); v1 of ``js-deploy``
(``tests/engine/js_app/deploy_app.js``, under Node) leaves two runs asleep after steps
``a`` and ``b``, and stops. Each v2 variant is then served by a Node process of its own,
never synced (the engine does not call it), and the check is given its serve URL: a step
appended passes; a step removed or two reordered fail, with what the wire shows (the first
recorded step the app no longer plans in its turn, the one it plans instead) and a fix the
official SDK can apply (it has no ``ctx.patched``). Every v2 step body GETs a counting
server in this process: the check runs none, and the runs stay as they were.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests._support import node_apps
from tests._support.cli import run_stepline
from tests._support.counting_server import CountingServer
from tests._support.polling import wait_until
from tests.engine import test_official_js as official_js

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]

#: The session fixture: js_app's npm dependencies installed (under CI, no node fails).
js_app = official_js.js_app
APP = "js-deploy"
FUNCTION = "js-deploy-order"


@contextlib.contextmanager
def node_app(app_dir: Path, engine_url: str, log: Path, **env: str) -> Iterator[str]:
    """``node deploy_app.js`` pointed at the engine; yields its serve URL."""
    with node_apps.serving(app_dir, "deploy_app.js", [engine_url], log, env) as origin:
        yield f"{origin}/api/inngest"


def _get(engine: str, path: str) -> Any:
    answer = httpx.get(f"{engine}/v1/{path}", timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def _asleep(engine: str, run_id: str) -> bool:
    return any(
        s.get("name") == "nap" and s.get("status") == "Sleeping"
        for s in _get(engine, f"runs/{run_id}/steps")
    )


@pytest.fixture(scope="module")
def recorded(
    js_app: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path, dict[str, list[dict[str, Any]]]]]:
    """The engine's URL, the logs' folder, and v1's live runs (asleep in ``nap``) with
    their steps."""
    tmp = tmp_path_factory.mktemp("deploy-check-js")
    with official_js.serve_engine(str(tmp / "engine.db"), signed=False) as (engine, _rec):
        with node_app(js_app, engine, tmp / "v1.log", DEPLOY_VARIANT="v1") as app_url:
            synced = httpx.post(f"{engine}/v1/apps/sync", json={"url": app_url}, timeout=10)
            assert synced.status_code == 200, synced.text
            assert synced.json()["data"]["ok"] is True, synced.text
            runs = []
            for _ in range(2):
                sent = httpx.post(
                    f"{engine}/e/key",
                    json={"name": "js-deploy/order", "data": {"nap": 3600}},
                    timeout=10,
                )
                assert sent.status_code == 200, sent.text
                (event_id,) = sent.json()["ids"]
                found = wait_until(
                    lambda event_id=event_id: _get(engine, f"events/{event_id}/runs") or None,
                    timeout=20,
                    message="the run of the event",
                )
                runs.append(str(found[0]["run_id"]))
            wait_until(
                lambda: all(_asleep(engine, r) for r in runs),
                timeout=40,
                message="v1's runs to sleep in nap",
            )
        yield engine, tmp, {r: _get(engine, f"runs/{r}/steps") for r in runs}


@pytest.mark.parametrize(("variant", "code"), [("append", 0), ("remove", 1), ("reorder", 1)])
def test_an_official_js_app_checked_over_its_serve_url(
    js_app: Path,
    counter: CountingServer,
    recorded: tuple[str, Path, dict[str, list[dict[str, Any]]]],
    variant: str,
    code: int,
) -> None:
    engine, tmp, live = recorded
    env = {"DEPLOY_VARIANT": variant, "DEPLOY_COUNTER_URL": counter.url}
    with node_app(js_app, engine, tmp / f"{variant}.log", **env) as app_url:
        checked = run_stepline("deploy", "check", app_url, "--app", APP, "--url", engine, "--json")

    assert checked.returncode == code, (checked.stdout, checked.stderr)
    report = json.loads(checked.stdout)
    verdicts = {r["run_id"]: r for f in report["functions"] for r in f["results"]}
    assert sorted(verdicts) == sorted(live)
    for verdict in verdicts.values():
        assert verdict["function_id"] == FUNCTION
        assert verdict["sdk"].startswith("inngest-js:"), verdict
        if variant == "append":
            assert verdict["verdict"] == "ok", verdict
            continue
        assert verdict["verdict"] == "diverged", verdict
        assert [s["name"] for s in verdict["missing"]] == ["a"], verdict
        assert [s["name"] for s in verdict["new"]] == ["b"], verdict
        assert "ctx.patched(" not in verdict["fix"], verdict
        assert "app_version" in verdict["fix"], verdict
    assert counter.requests == [], "no step body ran"
    for run_id, before in live.items():
        assert _get(engine, f"runs/{run_id}")["status"] == "Running"
        assert _get(engine, f"runs/{run_id}/steps") == before
