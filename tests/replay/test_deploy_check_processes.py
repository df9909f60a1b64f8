"""``stepline deploy check`` with real processes: an engine, apps and the CLI each in their own.

One ``stepline dev`` engine for the module. v1 of the app ``deploy`` (``tests/apps/deploy_v1.py``)
starts runs that sleep at different steps (after ``a``, ``b``; after ``a``, ``b``, ``c``) and
one that completes, then stops. The CLI then checks them against each variant of v2
(``tests/apps/deploy_v2.py``, imported in the CLI's process): a step appended or patched
passes, a step removed or two reordered fail naming them, a network call between steps is
inconclusive. The same over the wire, for the app ``official`` on the official ``inngest``
SDK: v1 records the runs, a v2 variant is served on another port and checked by its serve
URL. Every step body of a v2 GETs a counting server in this process: a check runs none, and
the runs it replays stay as they were.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests._support.counting_server import CountingServer
from tests._support.polling import wait_until
from tests._support.processes import clean_env, engine_command, free_port, spawned
from tests.engine import deploys

pytestmark = [pytest.mark.process, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
FUNCTION = "deploy-order"
OFFICIAL = "official"
LONG = 3600.0


@dataclasses.dataclass(frozen=True)
class Recorded:
    """The runs v1 of an app left on the engine."""

    at_nap1: list[str]  # asleep after a, b
    at_nap2: list[str]  # asleep after a, b, nap1, c
    completed: list[str]
    steps: dict[str, list[dict[str, Any]]]  # live run -> its steps once asleep

    @property
    def live(self) -> list[str]:
        return [*self.at_nap1, *self.at_nap2]


@dataclasses.dataclass(frozen=True)
class Checked:
    """One ``stepline deploy check`` process: its exit code and output."""

    code: int
    out: str
    err: str

    def report(self) -> dict[str, Any]:
        assert self.out.startswith("{"), (self.code, self.out, self.err)
        found: dict[str, Any] = json.loads(self.out)
        return found

    def verdicts(self) -> dict[str, dict[str, Any]]:
        """Run id -> its verdict object."""
        return {r["run_id"]: r for f in self.report()["functions"] for r in f["results"]}


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("deploy-check")


@pytest.fixture(scope="module")
def engine(logs: Path) -> Iterator[str]:
    """``stepline dev`` on a SQLite file; it polls no app, so only a test calls one."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["dev", "--port", str(port), "--db", str(logs / "engine.db"), "--no-poll"]
    command = engine_command(*args, "--connect-gateway-port", "0")
    with spawned(command, log=logs / "engine.log", env=clean_env(), up=f"{url}/health"):
        yield url


def start(engine_url: str, event: str, data: dict[str, float]) -> str:
    """Send ``event``; the id of the run it starts."""
    sent = httpx.post(f"{engine_url}/v1/events", json={"name": event, "data": data}, timeout=10)
    assert sent.status_code in (200, 201), sent.text
    (event_id,) = sent.json()["data"]["ids"]

    def started() -> list[dict[str, Any]] | None:
        found: list[dict[str, Any]] = deploys.get(engine_url, f"events/{event_id}/runs")
        return found or None

    run: dict[str, Any] = wait_until(started, timeout=15, message=f"the run of {event}")[0]
    return str(run["run_id"])


def steps(engine_url: str, run_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = deploys.get(engine_url, f"runs/{run_id}/steps")
    return found


def asleep_at(engine_url: str, run_id: str) -> str | None:
    """The name of the step the run sleeps at, if it sleeps."""
    return next(
        (s["name"] for s in steps(engine_url, run_id) if s.get("status") == "Sleeping"), None
    )


def record(engine_url: str, app_url: str, event: str) -> Recorded:
    """Sync the v1 app at ``app_url`` and leave runs of it: two asleep at ``nap1``, two at
    ``nap2``, one completed."""
    deploys.sync(engine_url, app_url)
    at_nap1 = [start(engine_url, event, {"nap1": LONG}) for _ in range(2)]
    at_nap2 = [start(engine_url, event, {"nap1": 0.2, "nap2": LONG}) for _ in range(2)]
    completed = [start(engine_url, event, {"nap1": 0.1, "nap2": 0.1})]
    where = {**dict.fromkeys(at_nap1, "nap1"), **dict.fromkeys(at_nap2, "nap2")}
    wait_until(
        lambda: all(asleep_at(engine_url, r) == at for r, at in where.items()),
        timeout=40,
        message=lambda: f"the runs to sleep: { {r: asleep_at(engine_url, r) for r in where} }",
    )
    wait_until(
        lambda: deploys.get(engine_url, f"runs/{completed[0]}")["status"] == "Completed",
        timeout=40,
        message="the quick run to complete",
    )
    return Recorded(at_nap1, at_nap2, completed, {r: steps(engine_url, r) for r in where})


@pytest.fixture(scope="module")
def stepline_runs(engine: str, logs: Path) -> Recorded:
    """The runs v1 of ``deploy`` left; v1 is stopped."""
    with deploys.app("deploy_v1", engine, logs / "deploy-v1.log") as app_url:
        return record(engine, app_url, "deploy/order")


@pytest.fixture(scope="module")
def official_runs(engine: str, logs: Path) -> Recorded:
    """The runs v1 of ``official`` left; v1 is stopped."""
    log = logs / "official-v1.log"
    with deploys.app("deploy_official", engine, log, DEPLOY_VARIANT="v1") as app_url:
        return record(engine, app_url, "official/order")


def deploy_check(engine_url: str, target: str, *args: str, **env: str) -> Checked:
    """``python -m stepline.engine deploy check TARGET --url ENGINE ARGS`` from the repository's
    root, as CI runs it."""
    command = engine_command("deploy", "check", target, "--url", engine_url, *args)
    done = subprocess.run(
        command,
        check=False,
        cwd=ROOT,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return Checked(done.returncode, done.stdout, done.stderr)


def check_v2(
    engine_url: str, counter: CountingServer, variant: str, *args: str, **env: str
) -> Checked:
    return deploy_check(
        engine_url,
        "tests.apps.deploy_v2:client",
        *args,
        DEPLOY_VARIANT=variant,
        DEPLOY_COUNTER_URL=counter.url,
        **{"GITHUB_ACTIONS": "false", **env},  # as in a CI job of another kind, unless set
    )


def assert_untouched(engine_url: str, counter: CountingServer, runs: Recorded) -> None:
    """No step body ran and nothing reached the network; the live runs sleep where they
    slept, their steps as they were."""
    assert counter.requests == []
    for run_id, before in runs.steps.items():
        assert deploys.get(engine_url, f"runs/{run_id}")["status"] == "Running"
        assert steps(engine_url, run_id) == before


def names(refs: list[dict[str, Any]]) -> list[str]:
    return [r["name"] for r in refs]


def line_of(code: str, module: str = "tests/apps/deploy_v2.py") -> str:
    """``module:line`` of the one line of ``module`` holding ``code``."""
    (line,) = [
        n for n, text in enumerate((ROOT / module).read_text().splitlines(), 1) if code in text
    ]
    return f"{module}:{line}"


# -- the Stepline SDK, in the CLI's process -------------------------------------------------


@pytest.mark.parametrize("variant", ["append", "patched"])
def test_a_step_appended_or_patched_passes(
    engine: str, counter: CountingServer, stepline_runs: Recorded, variant: str
) -> None:
    checked = check_v2(engine, counter, variant, "--json")

    assert checked.code == 0, (checked.out, checked.err)
    report = checked.report()
    assert report["ok"] is True
    assert report["target"] == "tests.apps.deploy_v2:client"
    assert report["counts"]["runs"] == len(stepline_runs.live)
    verdicts = checked.verdicts()
    assert sorted(verdicts) == sorted(stepline_runs.live)
    assert {r["verdict"] for r in verdicts.values()} == {"ok"}
    assert {r["function_id"] for r in verdicts.values()} == {FUNCTION}
    assert_untouched(engine, counter, stepline_runs)


@pytest.mark.parametrize(
    ("variant", "missing", "reordered", "new"),
    [("remove", ["a"], [], []), ("reorder", [], ["a", "b"], []), ("insert", [], [], ["z"])],
)
def test_a_step_removed_reordered_or_inserted_fails_naming_it(
    engine: str,
    counter: CountingServer,
    stepline_runs: Recorded,
    variant: str,
    missing: list[str],
    reordered: list[str],
    new: list[str],
) -> None:
    checked = check_v2(engine, counter, variant, "--json")

    assert checked.code == 1, (checked.out, checked.err)
    report = checked.report()
    assert report["ok"] is False
    assert report["counts"]["diverged"] == len(stepline_runs.live)
    verdicts = checked.verdicts()
    assert sorted(verdicts) == sorted(stepline_runs.live)
    for run_id, verdict in verdicts.items():
        assert verdict["verdict"] == "diverged", verdict
        assert verdict["run_status"] == "Running"
        if new:  # the replay stops at the new step: the whole record is past it
            missing = [s["name"] for s in stepline_runs.steps[run_id]]
        assert names(verdict["missing"]) == missing, verdict
        assert sorted(names(verdict["reordered"])) == reordered, verdict
        if new:  # a new step ahead of the recorded ones, found where the record has "a"
            assert names(verdict["new"]) == new, verdict
            inserted = line_of('done += [step.run("z", _body("z"))')
            assert verdict["new"][0]["location"] == inserted, verdict
        located = [
            s["location"]
            for s in (*verdict["missing"], *verdict["reordered"], *verdict["new"])
            if s["location"]
        ]
        assert located, verdict
        assert all(where.startswith("tests/apps/deploy_v2.py:") for where in located), verdict
        assert "ctx.patched" in verdict["fix"], verdict
        if reordered:  # both reached on the line that now has b before a
            swapped = line_of('done += [step.run("b", _body("b")), step.run("a", _body("a"))]')
            assert {s["location"] for s in verdict["reordered"]} == {swapped}, verdict
    assert_untouched(engine, counter, stepline_runs)


def test_the_text_summary_names_the_verdict_and_the_steps(
    engine: str, counter: CountingServer, stepline_runs: Recorded, tmp_path: Path
) -> None:
    failing = check_v2(engine, counter, "remove")
    passing = check_v2(engine, counter, "append")
    summary = tmp_path / "step-summary.md"
    in_actions = check_v2(
        engine,
        counter,
        "remove",
        GITHUB_ACTIONS="true",
        GITHUB_STEP_SUMMARY=str(summary),
    )
    as_json = check_v2(
        engine, counter, "remove", "--json", GITHUB_ACTIONS="true", GITHUB_STEP_SUMMARY=str(summary)
    )

    assert failing.code == 1, (failing.out, failing.err)
    count = len(stepline_runs.live)
    assert f"FAIL {FUNCTION}: {count} of {count} run(s) would diverge or fail" in failing.out
    assert 'recorded step no longer reached: "a"' in failing.out
    assert f"FAILED: {count} run(s) would diverge or fail" in failing.out
    for run_id in stepline_runs.live:
        assert f"run {run_id} (Running): diverged" in failing.out
    assert "ctx.patched" in failing.out
    assert passing.code == 0, (passing.out, passing.err)
    assert f"ok   {FUNCTION}: {count} run(s) replay as recorded" in passing.out
    assert "PASSED: no run would diverge" in passing.out
    assert "::error" not in failing.out, "annotations only under GitHub Actions"
    # under GitHub Actions: an annotation per run on the line where the code departs, and
    # the summary on the job's page; --json prints the report alone
    assert in_actions.code == as_json.code == 1, (in_actions.err, as_json.err)
    assert in_actions.out.startswith(failing.out.split("replayed in")[0])
    annotations = [line for line in in_actions.out.splitlines() if line.startswith("::")]
    assert len(annotations) == count, in_actions.out
    path, after = line_of('if VARIANT == "remove":').split(":")
    line = str(int(after) + 1)  # where v2 now reaches "b" and the record has "a"
    for annotation in annotations:
        assert annotation.startswith(f"::error file={path},line={line},title="), annotation
    assert sorted(as_json.verdicts()) == sorted(stepline_runs.live)
    written = summary.read_text()
    assert written.count("### stepline deploy check **failed**") == 2
    assert 'recorded step no longer reached: "a"' in written
    assert_untouched(engine, counter, stepline_runs)


def test_a_network_call_between_steps_is_refused_and_inconclusive(
    engine: str, counter: CountingServer, stepline_runs: Recorded
) -> None:
    checked = check_v2(engine, counter, "chatty", "--json")
    strict = check_v2(engine, counter, "chatty", "--json", "--strict")

    assert checked.code == 0, (checked.out, checked.err)
    assert checked.report()["ok"] is True
    address = counter.url.removeprefix("http://")
    for verdicts in (checked.verdicts(), strict.verdicts()):
        assert sorted(verdicts) == sorted(stepline_runs.live)
        for verdict in verdicts.values():
            assert verdict["verdict"] == "inconclusive", verdict
            pinged = line_of('with urllib.request.urlopen(f"{COUNTER_URL}/{what}"')
            assert verdict["error"] == f"the code outside steps tried the network at {pinged}"
            assert any(
                note.startswith("refused: ") and address in note for note in verdict["notes"]
            ), verdict
    assert strict.code == 1, (strict.out, strict.err)
    assert strict.report()["ok"] is False
    assert_untouched(engine, counter, stepline_runs)


def test_upload_sends_the_report_to_the_engine(
    engine: str, counter: CountingServer, stepline_runs: Recorded
) -> None:
    checked = check_v2(engine, counter, "remove", "--json", "--upload")

    assert checked.code == 1, (checked.out, checked.err)
    assert checked.err == ""
    listed = httpx.get(
        f"{engine}/v1/deploy-checks", params={"app_id": "deploy", "limit": 1}, timeout=10
    )
    assert listed.status_code == 200, listed.text
    (stored,) = listed.json()["data"]
    assert stored["app_ids"] == ["deploy"]
    assert stored["ok"] is False
    assert stored["counts"]["diverged"] == len(stepline_runs.live)
    assert stored["report"] == checked.report()
    assert_untouched(engine, counter, stepline_runs)


def test_ended_replays_the_newest_ended_runs_too(
    engine: str, counter: CountingServer, stepline_runs: Recorded
) -> None:
    without = check_v2(engine, counter, "append", "--json")
    checked = check_v2(engine, counter, "append", "--json", "--ended", "2")

    assert sorted(without.verdicts()) == sorted(stepline_runs.live)
    assert checked.code == 0, (checked.out, checked.err)
    verdicts = checked.verdicts()
    assert sorted(verdicts) == sorted([*stepline_runs.live, *stepline_runs.completed])
    (completed,) = stepline_runs.completed
    assert verdicts[completed]["run_status"] == "Completed"
    assert verdicts[completed]["verdict"] == "ok", verdicts[completed]
    assert_untouched(engine, counter, stepline_runs)


@pytest.fixture
def other_app_run(engine: str, logs: Path) -> Iterator[str]:
    """A run asleep of the app ``deploy-extra`` (v1's code under that id); cancelled after."""
    log = logs / "deploy-extra.log"
    with deploys.app("deploy_v1", engine, log, DEPLOY_APP_ID="deploy-extra") as app_url:
        deploys.sync(engine, app_url)
        run_id = start(engine, "deploy-extra/order", {"nap1": LONG})
        try:
            wait_until(lambda: asleep_at(engine, run_id) == "nap1", timeout=40, message="it")
        except BaseException:
            httpx.post(f"{engine}/v1/runs/{run_id}/cancel", json={}, timeout=10)
            raise
    yield run_id
    cancelled = httpx.post(f"{engine}/v1/runs/{run_id}/cancel", json={}, timeout=10)
    assert cancelled.status_code == 200, cancelled.text
    assert deploys.get(engine, f"runs/{run_id}")["status"] == "Cancelled"


def test_the_runs_of_an_app_whose_id_extends_the_targets_are_left_out(
    engine: str, counter: CountingServer, stepline_runs: Recorded, other_app_run: str
) -> None:
    checked = check_v2(engine, counter, "append", "--json")

    assert other_app_run not in checked.verdicts(), checked.out
    assert sorted(checked.verdicts()) == sorted(stepline_runs.live), checked.out
    assert checked.code == 0, (checked.out, checked.err)
    assert_untouched(engine, counter, stepline_runs)


# -- the official SDK, over the wire ---------------------------------------------------------


@contextlib.contextmanager
def official_v2(
    engine_url: str, counter: CountingServer, logs: Path, variant: str
) -> Iterator[str]:
    """A v2 variant of ``official`` served on its own port, not synced: the engine never
    calls it; its serve URL."""
    with deploys.app(
        "deploy_official",
        engine_url,
        logs / f"official-{variant}.log",
        DEPLOY_VARIANT=variant,
        DEPLOY_COUNTER_URL=counter.url,
    ) as app_url:
        yield app_url


@pytest.mark.parametrize(("variant", "code"), [("append", 0), ("remove", 1), ("reorder", 1)])
def test_an_official_app_checked_over_its_serve_url(
    engine: str,
    counter: CountingServer,
    official_runs: Recorded,
    logs: Path,
    variant: str,
    code: int,
) -> None:
    with official_v2(engine, counter, logs, variant) as app_url:
        checked = deploy_check(engine, app_url, "--app", OFFICIAL, "--json")

    assert checked.code == code, (checked.out, checked.err)
    report = checked.report()
    assert report["target"] == app_url
    verdicts = checked.verdicts()
    assert sorted(verdicts) == sorted(official_runs.live)
    assert {r["function_id"] for r in verdicts.values()} == {f"{OFFICIAL}-order"}
    for verdict in verdicts.values():
        assert verdict["sdk"].startswith("inngest-py:"), verdict  # the official SDK answered
        if variant == "append":
            assert verdict["verdict"] == "ok", verdict
        else:
            # as much as the wire shows: the first recorded step the app no longer plans
            # in its turn, and what it plans there instead (no code location)
            assert verdict["verdict"] == "diverged", verdict
            assert names(verdict["missing"]) == ["a"], verdict
            assert names(verdict["new"]) == ["b"], verdict
            assert verdict["reordered"] == [], verdict
            assert all(s["location"] is None for s in verdict["missing"] + verdict["new"])
            # the official SDK has no ctx.patched: the fix is a pin or a new function id
            assert "ctx.patched(" not in verdict["fix"], verdict
            assert "inngest.Inngest(app_version=...)" in verdict["fix"], verdict
    assert_untouched(engine, counter, official_runs)


def test_a_target_that_cannot_be_loaded_or_reached_exits_2_or_3(
    engine: str, counter: CountingServer, stepline_runs: Recorded, official_runs: Recorded
) -> None:
    nothing = deploy_check(engine, "tests.apps.deploy_v2:nothing", DEPLOY_VARIANT="append")
    unnamed = deploy_check(engine, "http://127.0.0.1:9/api/inngest")
    gone = f"http://127.0.0.1:{free_port()}/api/inngest"
    unreachable = deploy_check(engine, gone, "--app", OFFICIAL)

    assert nothing.code == 2, (nothing.out, nothing.err)
    assert "'tests.apps.deploy_v2:nothing' is nothing, not a stepline.Client" in nothing.err
    assert unnamed.code == 2, (unnamed.out, unnamed.err)
    assert "name the app whose runs to check with --app" in unnamed.err
    assert unreachable.code == 3, (unreachable.out, unreachable.err)
    assert f"could not check: the app at {gone} is unreachable" in unreachable.err
    assert nothing.out == unnamed.out == unreachable.out == ""
    assert_untouched(engine, counter, stepline_runs)
    assert_untouched(engine, counter, official_runs)
