"""``examples/celery_after``: the Celery app of ``examples/celery_before`` on Stepline.

Its routes are driven with FastAPI's test client while ``stepline.testing``'s ``TestEnv``
is the engine (the app built with ``BILLING_ENGINE=none``), on a virtual clock that moves
only when a test says so: the countdown holds the chain for exactly its hour, a failed
charge is retried after the engine's backoff without fetching or pricing again, the
chain's steps run in order, the chord's ``combine`` step gets every region's summary, the
beat schedule is a cron trigger that starts a run on its tick, and a revoked job runs
nothing more. Then the app runs as its README says (one command, its embedded engine on
SQLite) and bills a customer and builds the report end to end.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

import fastapi.testclient
import httpx
import pytest

import stepline
from stepline.testing.plugin import EnvFactory
from tests._support.ci import require_module
from tests._support.processes import clean_env, free_port, spawned

APP = Path(__file__).resolve().parents[2] / "examples" / "celery_after" / "app.py"
UTC = dt.timezone.utc
HOUR = dt.timedelta(hours=1)


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The example's module, built to serve its functions to a test engine."""
    monkeypatch.setenv("BILLING_ENGINE", "none")
    spec = importlib.util.spec_from_file_location("examples_celery_after", APP)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    assert module.ENGINE is None
    return module


class FailsOnce:
    """A gateway whose first charge raises ``error``; it charges from then on."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.charges = 0

    def charge(self, customer: str, cents: int) -> str:
        self.charges += 1
        if self.charges == 1:
            raise self.error
        return f"ch_{customer}_{cents}"


def steps_run(env: stepline.testing.TestEnv, fn: stepline.Function) -> list[str]:
    return [call.step for call in env.step_calls(fn)]


def test_the_chain_waits_out_its_countdown_and_retries_a_failed_charge(
    example: ModuleType, stepline_env: EnvFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = FailsOnce(ConnectionError("gateway unreachable"))
    monkeypatch.setattr(example, "gateway", gateway)
    env = stepline_env(example.client, example.FUNCTIONS, auto_skip=False, retry_jitter=0)
    bill = example.bill_customer
    with fastapi.testclient.TestClient(example.app) as http:
        asked = http.post("/customers/ada/bill", params={"delay_seconds": 3600})
        assert asked.status_code == 202, asked.text
        job_id = asked.json()["job_id"]

        env.advance_sync(HOUR - dt.timedelta(seconds=1))  # the countdown holds the chain
        assert steps_run(env, bill) == []
        assert http.get(f"/jobs/{job_id}").json()["status"] == "Running"

        env.advance_sync(dt.timedelta(seconds=1))  # due: fetch, price, then a failed charge
        assert steps_run(env, bill) == ["fetch-usage", "price-usage", "charge"]
        [failed] = env.step_calls(bill, "charge")
        assert isinstance(failed.error, ConnectionError)

        env.advance_sync(dt.timedelta(seconds=14))  # the engine's first backoff is 15 s
        assert gateway.charges == 1
        env.advance_sync(dt.timedelta(seconds=1))
        assert gateway.charges == 2

        receipt = env.get_run(job_id).result_sync()
        # each link ran once, in order, and got the one before it's result; the retry
        # of the charge fetched and priced nothing again
        assert steps_run(env, bill) == [
            "fetch-usage",
            "price-usage",
            "charge",
            "charge",
            "send-receipt",
        ]
        assert [c.attempt for c in env.step_calls(bill, "charge")] == [0, 1]
        cents = 10 * len("ada") * example.PRICE_CENTS_PER_UNIT
        assert receipt == {
            "customer": "ada",
            "units": 30,
            "cents": cents,
            "charge_id": f"ch_ada_{cents}",
            "receipt": f"receipt for ch_ada_{cents} sent",
        }
        job = http.get(f"/jobs/{job_id}").json()
        assert (job["status"], job["result"]) == ("Completed", receipt)


def test_a_busy_gateway_is_charged_again_no_sooner_than_it_asked(
    example: ModuleType, stepline_env: EnvFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = FailsOnce(example.GatewayBusyError("gateway busy: retry in 30 s"))
    monkeypatch.setattr(example, "gateway", gateway)
    env = stepline_env(example.client, example.FUNCTIONS, auto_skip=False, retry_jitter=0)
    run = env.start_sync(example.bill_customer, {"customer": "ada"})
    env.settle_sync()
    [busy] = env.step_calls(example.bill_customer, "charge")
    assert isinstance(busy.error, stepline.RetryAfterError)
    assert gateway.charges == 1
    env.advance_sync(dt.timedelta(seconds=29))
    assert gateway.charges == 1
    env.advance_sync(dt.timedelta(seconds=1))
    assert gateway.charges == 2
    assert run.result_sync()["charge_id"].startswith("ch_ada_")


def test_the_chord_callback_gets_every_regions_summary(
    example: ModuleType, stepline_env: EnvFactory
) -> None:
    env = stepline_env(example.client, example.FUNCTIONS)
    with fastapi.testclient.TestClient(example.app) as http:
        job_id = http.post("/reports").json()["job_id"]
        report = env.get_run(job_id).result_sync()
    summaries = [call.output for call in env.step_calls(example.summarize_region, "summarize")]
    assert sorted(s["region"] for s in summaries) == sorted(example.REGIONS)
    # one invoked run a region (the group), then combine with all of their results, in order
    assert len(env.runs_sync(example.summarize_region)) == len(example.REGIONS)
    [combine] = env.step_calls(example.build_report, "combine")
    assert [s["region"] for s in combine.args[0]] == list(example.REGIONS)
    assert report == {
        "regions": list(example.REGIONS),
        "invoices": sum(len(region) * 7 for region in example.REGIONS),
    }


def test_the_beat_schedule_is_a_cron_that_runs_on_its_tick(
    example: ModuleType, stepline_env: EnvFactory
) -> None:
    report = example.build_report
    [registered] = report.configs("http://127.0.0.1:8000/api/inngest")  # what the engine gets
    assert registered["triggers"] == [
        {"cron": "TZ=UTC 0 2 * * *"},
        {"event": "billing/report.requested"},
    ]
    env = stepline_env(
        example.client,
        example.FUNCTIONS,
        auto_skip=False,
        start=dt.datetime(2030, 1, 1, 1, 0, tzinfo=UTC),
    )
    env.advance_sync(dt.timedelta(minutes=59))
    assert env.runs_sync(report) == []
    env.advance_sync(dt.timedelta(minutes=1))  # 02:00 UTC
    [tick] = env.runs_sync(report)
    assert tick.result_sync()["regions"] == list(example.REGIONS)
    env.advance_sync(dt.timedelta(days=1))  # and once more the next night
    assert len(env.runs_sync(report)) == 2


def test_a_job_waiting_out_its_countdown_is_revoked(
    example: ModuleType, stepline_env: EnvFactory
) -> None:
    env = stepline_env(example.client, example.FUNCTIONS, auto_skip=False)
    with fastapi.testclient.TestClient(example.app) as http:
        job_id = http.post("/customers/bo/bill", params={"delay_seconds": 600}).json()["job_id"]
        env.settle_sync()
        revoked = http.post(f"/jobs/{job_id}/revoke")
        assert revoked.json() == {"job_id": job_id, "status": "Cancelled"}
        env.advance_sync(dt.timedelta(minutes=20))
        assert env.step_calls(example.bill_customer) == []  # nothing ran after the cancel
        assert http.get("/jobs/no-such-job").status_code == 404


@pytest.mark.process
def test_the_app_as_one_process_bills_and_reports(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = clean_env(PORT=str(port), STEPLINE_DATABASE_URL=str(tmp_path / "billing.db"))
    with (
        spawned([sys.executable, str(APP)], log=tmp_path / "app.log", env=env, cwd=tmp_path,
                up=f"{base}/docs", what="examples/celery_after/app.py"),
        httpx.Client(base_url=base, timeout=30) as http,
    ):  # fmt: skip
        jobs = [
            http.post("/customers/ada/bill", params={"delay_seconds": 1}).json()["job_id"],
            http.post("/reports").json()["job_id"],
        ]
        done = {job: wait_for_end(http, job) for job in jobs}
    bill, report = (done[job] for job in jobs)
    assert bill["status"] == "Completed", bill
    assert bill["result"]["receipt"].startswith("receipt for ch_ada_")
    assert report["status"] == "Completed", report
    assert len(report["result"]["regions"]) == 3


def wait_for_end(http: httpx.Client, job_id: str, timeout: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, object] = http.get(f"/jobs/{job_id}").json()
        if job["status"] in ("Completed", "Failed", "Cancelled") or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


def test_the_celery_app_gives_the_same_results(
    example: ModuleType, stepline_env: EnvFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``examples/celery_before`` in Celery's eager mode (no broker) against the Stepline app."""
    celery = require_module("celery")  # the dev extra brings the examples extra
    spec = importlib.util.spec_from_file_location(
        "examples_celery_before_tasks", APP.parents[1] / "celery_before" / "tasks.py"
    )
    assert spec is not None
    assert spec.loader is not None
    before = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, before)
    spec.loader.exec_module(before)
    before.app.conf.update(
        task_always_eager=True, broker_url="memory://", result_backend="cache+memory://"
    )
    assert before.app.conf.beat_schedule["nightly-report"]["schedule"] == (
        celery.schedules.crontab(hour=2, minute=0)
    )
    monkeypatch.setattr(before, "gateway", FailsOnce(before.GatewayBusyError("busy")))
    celery_receipt = before.bill_customer("ada").apply_async(countdown=5).get(timeout=5)
    celery_report = celery.chord(
        celery.group(before.summarize_region.s(region) for region in before.REGIONS)
    )(before.combine_report.s()).get(timeout=5)

    env = stepline_env(example.client, example.FUNCTIONS)
    receipt = env.start_sync(example.bill_customer, {"customer": "ada"}).result_sync()
    report = env.start_sync(example.build_report).result_sync()
    assert (receipt, report) == (celery_receipt, celery_report)
