"""``make demo`` in CI: run ``examples/demo.py`` exactly as the README says and check it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.process]

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.py"


@pytest.fixture(scope="module")
def out() -> str:
    demo = subprocess.run(
        [sys.executable, str(DEMO)],
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
        cwd=DEMO.parents[1],
    )
    assert demo.returncode == 0, f"stdout:\n{demo.stdout}\nstderr:\n{demo.stderr}"
    return demo.stdout


def line(out: str, *parts: str) -> str:
    """The first output line holding ``parts`` in order, separated by whitespace only."""
    found = re.search(r"^.*" + r"\s+".join(map(re.escape, parts)) + r".*$", out, re.MULTILINE)
    assert found, f"no line with {parts!r} in:\n{out}"
    return found.group(0)


def test_demo_finishes_ok(out: str) -> None:
    assert out.splitlines()[-1].startswith("demo finished OK")


def test_engine_starts_and_syncs_the_app(out: str) -> None:
    assert "(dev mode)" in line(out, "Stepline engine")
    assert ".stepline/demo.db (SQLite, synchronous=NORMAL" in line(out, "Database")
    registered = "demo-shop-child, demo-shop-fan-out, demo-shop-parent, demo-shop-process-order"
    assert f"registered: {registered}" in out
    assert "'status': 'accepted'" in out
    assert "'event_ids': ['" in out


def test_process_order_retries_sleeps_waits_and_sends_a_receipt(out: str) -> None:
    line(out, "charge-card", "StepRun", "Completed", "attempts=2", "{'charge_id': 'ch-ord-")
    line(out, "cool-off", "Sleep", "Completed", "attempts=0", "None")
    assert "'tracking': '1Z-DEMO-42'" in line(out, "wait-shipment", "WaitForEvent", "Completed")
    line(out, "send-receipt", "StepRun", "Completed", "attempts=1", "receipt for ord-")
    line(out, "Ada paid $34.50, tracking 1Z-DEMO-42")
    for check in ("card charged after a retry", "shipment event received", "receipt sent"):
        assert f"ok: {check}" in out


def test_fan_out_runs_three_parallel_steps_and_sums_them(out: str) -> None:
    for region, cents in (("eu", 12500), ("us", 20000), ("apac", 7500)):
        line(out, f"sales-{region}", "StepRun", "Completed", "attempts=1", str(cents))
    assert "'total_cents': 40000" in out


def test_parent_invokes_child(out: str) -> None:
    line(out, "call-child", "InvokeFunction", "Completed", "attempts=0", "{'points': 34}")
    assert "Completed: {'customer': 'Ada', 'points': 34}" in out
