"""Any run as a test, end to end: a real run on a real engine, exported, played back.

An engine and the app ``tests/apps/deploy_inprocess.py`` are each served over HTTP by
uvicorn in this process. ``journey`` runs to completion with one of each kind of step (a
step retried twice, a sleep, a wait answered by an event, an invoke, a parallel group);
``stepline runs export`` (the CLI, in process) writes its journal, whole, with an output
dropped, and with a key redacted. Played back with ``TestEnv.replay_sync`` and the
``stepline_replay`` fixture, the record answers every step (no step body runs) and the
output is the run's; against changed code the playback names the first difference. While
the run waits on its event and another run sleeps, ``stepline deploy check`` finds both
replay as recorded.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import stepline
import stepline.asgi
from stepline._replay.journal import REDACTED, Journal, JournalError
from stepline.engine import Engine
from stepline.engine._http.api import build_app
from stepline.testing import TestEnv
from stepline.testing.plugin import ReplayFactory
from tests._support.cli import Ran, run_stepline
from tests._support.clients import closing_client, dev_client
from tests._support.engines import fast_settings
from tests._support.polling import wait_until
from tests._support.server_thread import ServerThread
from tests.apps import deploy_inprocess as app

pytestmark = [pytest.mark.slow]

#: the recorded steps of ``journey``, in completion order (the group's in either order)
RECORDED = ["fetch", "charge", "nap", "approval", "double"]
GROUP = {"pack", "label"}


@dataclasses.dataclass(frozen=True)
class Recorded:
    """The run and what the CLI made of it."""

    run: dict[str, Any]
    steps: list[dict[str, Any]]
    whole: Path
    dropped: Path
    redacted: Path
    check: Ran
    renamed: Ran
    bodies: collections.Counter[str]


def _get(url: str, path: str) -> Any:
    answer = httpx.get(f"{url}/v1/{path}")
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def _start(url: str, name: str, data: dict[str, Any]) -> str:
    sent = httpx.post(f"{url}/v1/events", json={"name": name, "data": data})
    assert sent.status_code in (200, 201), sent.text
    (event_id,) = sent.json()["data"]["ids"]
    runs = wait_until(lambda: _get(url, f"events/{event_id}/runs") or None, timeout=20)
    return str(runs[0]["run_id"])


def _step_status(url: str, run_id: str, name: str) -> str | None:
    for step in _get(url, f"runs/{run_id}/steps"):
        if step.get("name") == name:
            return str(step.get("status"))
    return None


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    where = tmp_path_factory.mktemp("export")
    engine_server = ServerThread("engine", lifespan="on")
    app_server = ServerThread("app", lifespan="on")
    own = app.client.connection.settings
    # the app registers its functions with this engine when synced
    app.client.connection.settings = dataclasses.replace(own, api_base_url=engine_server.url)
    try:
        engine_server.start(build_app(Engine(fast_settings(where / "engine.db"))))
        served = stepline.asgi.serve(app.client, _functions())
        app_server.start(closing_client(served, app.client))
        url = engine_server.url
        synced = httpx.post(f"{url}/v1/apps/sync", json={"url": f"{app_server.url}/api/inngest"})
        assert synced.json()["data"]["ok"] is True, synced.text

        dozing = _start(url, "deployed/dozer", {})
        run_id = _start(url, "deployed/journey", {"order": 7, "card": {"token": "tok_1"}})
        wait_until(
            lambda: _step_status(url, dozing, "long") == "Sleeping",
            timeout=20,
            message="the dozer to sleep",
        )
        wait_until(
            lambda: _step_status(url, run_id, "approval") == "Waiting",
            timeout=30,
            message="the journey to wait for its approval",
        )
        before_check = collections.Counter(app.BODIES)
        check = run_stepline(
            "deploy", "check", "tests.apps.deploy_inprocess:client", "--url", url, "--json"
        )
        renamed = run_stepline(
            "deploy", "check", "tests.apps.deploy_inprocess_renamed:client", "--url", url
        )
        assert before_check == app.BODIES, "the deploy check ran no step body"

        answered = httpx.post(
            f"{url}/v1/events",
            json={"name": "deployed/approved", "data": {"order": 7, "by": "grace"}},
        )
        assert answered.status_code in (200, 201), answered.text
        run = wait_until(
            lambda: (found := _get(url, f"runs/{run_id}"))["status"] == "Completed" and found,
            timeout=30,
            message="the journey to complete",
        )
        steps = _get(url, f"runs/{run_id}/steps")

        paths = {name: where / f"{name}.json" for name in ("whole", "dropped", "redacted")}
        options = {
            "whole": (),
            "dropped": ("--drop-output", "fetch"),
            "redacted": ("--redact-key", "token"),
        }
        for name, path in paths.items():
            done = run_stepline(
                "runs", "export", run_id, *options[name], "--url", url, "-o", str(path)
            )
            assert done.returncode == 0, done.stderr
        unwritable = where / "no-such-dir" / "run.json"
        refused = run_stepline("runs", "export", run_id, "--url", url, "-o", str(unwritable))
        assert refused.returncode == 1
        assert f"cannot write {unwritable}: No such file or directory" in refused.stderr
        yield Recorded(
            run=run,
            steps=steps,
            whole=paths["whole"],
            dropped=paths["dropped"],
            redacted=paths["redacted"],
            check=check,
            renamed=renamed,
            bodies=collections.Counter(app.BODIES),
        )
    finally:
        app_server.stop()
        engine_server.stop()
        app.client.connection.settings = own


def _functions() -> list[stepline.Function]:
    return [app.child, app.journey, app.dozer]


def test_the_run_really_ran_every_kind_of_step(recorded: Recorded) -> None:
    assert recorded.run["output"] == {
        "order": 7,
        "charged": {"charged": 30, "attempts": 3},
        "approved_by": "grace",
        "doubled": 60,
        "shipment": ["box:kettle", "label:7"],
    }
    assert recorded.bodies["charge"] == 3, "charge failed twice, then succeeded"
    assert (recorded.bodies["fetch"], recorded.bodies["double"]) == (1, 1)
    assert (recorded.bodies["pack"], recorded.bodies["label"]) == (1, 1)


def test_replayed_with_test_env_every_step_answered_from_the_record(recorded: Recorded) -> None:
    journal = Journal.load(recorded.whole)
    assert journal.status == "Completed"
    assert journal.output == recorded.run["output"]
    # the trigger, the timings and the app version the run started on
    assert journal.events[0]["data"] == {"order": 7, "card": {"token": "tok_1"}}
    assert journal.app_version == app.APP_VERSION
    assert journal.started_at is not None
    assert journal.ended_at is not None
    assert all(s.started_at is not None and s.ended_at is not None for s in journal.steps)
    assert {s.name: s.attempts for s in journal.steps}["charge"] == 3, "the retries recorded"
    before = collections.Counter(app.BODIES)

    played = TestEnv(app.client, _functions()).replay_sync(recorded.whole)

    assert played.same, played.difference
    assert played.output == recorded.run["output"]
    names = [s.name for s in played.steps]
    assert names[: len(RECORDED)] == RECORDED
    assert set(names[len(RECORDED) :]) == GROUP
    assert [s.name for s in played.steps] == [s.name for s in journal.steps], "in recorded order"
    ops = {s.name: s.op for s in played.steps}
    assert (ops["nap"], ops["approval"], ops["double"]) == (
        "Sleep",
        "WaitForEvent",
        "InvokeFunction",
    )
    assert {s.name: s.output for s in played.steps}["double"] == 60
    assert before == app.BODIES, "no step body ran during playback"


def test_the_stepline_replay_fixture_passes(
    recorded: Recorded, stepline_replay: ReplayFactory
) -> None:
    before = collections.Counter(app.BODIES)
    played = stepline_replay(recorded.whole, app.client, _functions())
    assert played.output == recorded.run["output"]
    assert before == app.BODIES


def _changed(**how: Any) -> tuple[stepline.Client, list[stepline.Function]]:
    client = dev_client(app.APP_ID, checkpointing=False)
    return client, list(app.define(client, **how))


@pytest.mark.parametrize(
    ("how", "said"),
    [
        (
            {"fetch": "load"},
            [
                'at step 1: the code reaches step "load" (StepPlanned) at '
                "tests/apps/deploy_inprocess.py:",
                'which the record does not have (next in the record: "fetch")',
            ],
        ),
        ({"charge": "pay"}, ['at step 2: the code reaches step "pay"', 'record: "charge")']),
        (
            {"swapped": True},
            ['at step 1: the code reaches step "charge" where the record has "fetch" next'],
        ),
        (
            {"extra": {"gift": True}},
            ["at step 8: the output differs: recorded {", '"label:7"], "gift": true}'],
        ),
    ],
    ids=["renamed", "renamed-second", "swapped", "output"],
)
def test_changed_code_is_told_at_its_first_difference(
    recorded: Recorded, how: dict[str, Any], said: list[str]
) -> None:
    client, functions = _changed(**how)
    before = collections.Counter(app.BODIES)
    played = TestEnv(client, functions).replay_sync(recorded.whole)
    assert not played.same
    assert played.difference is not None
    for fragment in said:
        assert fragment in played.difference, played.difference
    with pytest.raises(AssertionError, match="does not replay as recorded"):
        played.assert_same()
    assert before == app.BODIES


def test_a_dropped_output_is_asked_for_then_given(recorded: Recorded) -> None:
    doc = json.loads(recorded.dropped.read_text())
    fetch = next(s for s in doc["steps"] if s["name"] == "fetch")
    assert fetch.get("dropped") is True
    assert "memo" not in fetch
    assert doc["redacted"] == ["output:fetch"]
    env = TestEnv(app.client, _functions())

    with pytest.raises(JournalError, match=r"outputs=\{'fetch': \.\.\.\}"):
        env.replay_sync(recorded.dropped)

    given = {"order": 7, "sku": "kettle", "price": 30}
    played = env.replay_sync(recorded.dropped, outputs={"fetch": given})
    assert played.same, played.difference
    assert played.output == recorded.run["output"]


def test_a_redacted_key_is_masked_in_the_event(recorded: Recorded) -> None:
    journal = Journal.load(recorded.redacted)
    assert journal.events[0]["data"] == {"order": 7, "card": {"token": REDACTED}}
    assert journal.redacted == ("key:token",)
    assert "tok_1" not in recorded.redacted.read_text()
    played = TestEnv(app.client, _functions()).replay_sync(journal)
    assert played.same, played.difference


def test_the_deploy_check_passes_the_live_runs_on_the_same_code(recorded: Recorded) -> None:
    check = recorded.check
    assert check.returncode == 0, check.stderr + check.stdout
    report = json.loads(check.stdout)
    assert report["ok"] is True
    assert report["target"] == "tests.apps.deploy_inprocess:client"
    assert report["counts"]["runs"] == report["counts"]["ok"] == 2
    verdicts = {f["function_id"]: f["results"] for f in report["functions"]}
    assert sorted(verdicts) == ["deployed-dozer", "deployed-journey"]
    for results in verdicts.values():
        [verdict] = results
        assert (verdict["run_status"], verdict["verdict"]) == ("Running", "ok")
        assert verdict["app_version"] == app.APP_VERSION


def test_the_deploy_check_fails_the_waiting_run_on_a_renamed_step(recorded: Recorded) -> None:
    check = recorded.renamed
    assert check.returncode == 1, check.stderr + check.stdout
    assert "ok   deployed-dozer: 1 run(s) replay as recorded" in check.stdout
    assert "FAIL deployed-journey: 1 of 1 run(s) would diverge or fail" in check.stdout
    assert '"fetch"' in check.stdout, "the recorded step the new code no longer reaches"
    assert '"load" (at tests/apps/deploy_inprocess.py:' in check.stdout
    assert "FAILED: 1 run(s) would diverge or fail" in check.stdout
