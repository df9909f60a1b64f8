"""The deploy check over a Stepline app's serve URL: one call per run, the app's own verdict.

The app runs behind uvicorn in a thread of the test process; the check calls it as the
engine would, with the recorded steps as memos, ``disable_immediate_execution`` and
``ctx.stepline.dry_run`` set. The app answers a divergence in its header, runs no step's
code, and refuses the network to the code between steps during such a call.
"""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Callable, Iterator
from typing import Any

import fastapi
import pytest

import stepline
import stepline.fastapi
from stepline._replay import wire
from stepline._replay.verdict import RunVerdict
from stepline._transport import effects, performers
from tests._support.clients import dev_client
from tests._support.journals import ran, recorded, sleeping
from tests._support.server_thread import AppServer

pytestmark = pytest.mark.timeout(60)

client = dev_client("shop")
ran_steps: list[str] = []
dry_runs: list[bool] = []
NAP = dt.timedelta(seconds=30)
V1 = recorded("shop-order", [ran("a", "a"), ran("b", "b")], [sleeping("nap")])


def body(name: str) -> Callable[[], str]:
    def run() -> str:
        ran_steps.append(name)
        return name

    return run


def serve(variant: str) -> Any:
    names = {"append": ["a", "b", "c"], "remove": ["b", "c"], "chatty": ["a", "b", "c"]}[variant]

    @client.function(id="order", trigger=stepline.TriggerEvent(event="t/go"))
    def order(ctx: stepline.SyncContext) -> None:
        dry_runs.append(ctx.dry_run)
        for name in names:
            if variant == "chatty" and name == "b":
                socket.create_connection(("127.0.0.1", 9), timeout=1)
            ctx.step.run(name, body(name))
            if name == "b":
                ctx.step.sleep("nap", NAP)

    app = fastapi.FastAPI()
    stepline.fastapi.serve(app, client, [order])
    return app


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    ran_steps.clear()
    dry_runs.clear()
    yield
    assert ran_steps == [], f"the check ran step code: {ran_steps}"


def check(variant: str) -> RunVerdict:
    transport = performers.SyncTransport()
    try:
        with AppServer(serve(variant), quiet=True) as server:
            flow = wire.check_flow(f"{server.url}/api/inngest", V1, signing_key=None)
            return effects.drive_sync(flow, transport.perform)
    finally:
        transport.close()


def test_steps_appended_pass_in_one_call_with_ctx_dry_run_set() -> None:
    verdict = check("append")
    assert verdict.verdict == "ok"
    assert dry_runs == [True]


def test_a_removed_step_is_the_apps_own_divergence() -> None:
    verdict = check("remove")
    assert verdict.verdict == "diverged"
    assert [s.name for s in verdict.missing] == ["a"]
    assert [s.name for s in verdict.new] == ["c"]
    assert dry_runs == [True]  # one call: the app tells, no walk through the record


def test_the_app_refuses_its_code_the_network_during_the_check() -> None:
    verdict = check("chatty")
    assert verdict.verdict == "inconclusive"
    assert verdict.error is not None
    assert "look up 127.0.0.1:9" in verdict.error
