"""``make demo`` in CI: run ``examples/demo.py`` exactly as the README says and check it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_app_is_inspected_synced_and_serves_a_normal_route(out: str) -> None:
    assert "mode=dev, 4 functions" in out
    registered = "demo-shop-child, demo-shop-fan-out, demo-shop-parent, demo-shop-process-order"
    assert f"registered: {registered}" in out
    assert "'status': 'accepted'" in out


def test_process_order_retries_sleeps_waits_and_sends_a_receipt(out: str) -> None:
    assert "retry 2/4" in line(out, "charge-card", "StepError CardNetworkTimeoutError")
    line(out, "charge-card", "StepRun ->", '{"charge_id": "ch-ord-')
    line(out, "cool-off", "Sleep for")
    line(out, "wait-shipment", "WaitForEvent shop/shipment.sent")
    line(out, "wait-shipment", "received shop/shipment.sent")
    line(out, "send-receipt", "StepRun ->", '"receipt for ord-')
    line(out, "Ada paid $34.50, tracking 1Z-DEMO-42")
    line(out, "process-order", "-", "200 done after")
    assert "'tracking': '1Z-DEMO-42'" in out


def test_fan_out_runs_three_targeted_steps_and_sums_them(out: str) -> None:
    assert out.count("StepPlanned -> targeted call") == 3
    for region, cents in (("eu", 12500), ("us", 20000), ("apac", 7500)):
        line(out, f"sales-{region}", f"StepRun -> {cents}")
    assert "'total_cents': 40000" in out


def test_parent_invokes_child(out: str) -> None:
    line(out, "call-child", "InvokeFunction demo-shop-child")
    line(out, "child", "-", '200 done after 2 calls -> {"points": 34}')
    assert "result: {'customer': 'Ada', 'points': 34}" in out
