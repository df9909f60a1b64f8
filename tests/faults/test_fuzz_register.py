"""Fuzz ``POST /fn/register`` with mutated official registration bodies.

Seeds are what inngest-py and inngest-js sent in the protocol captures and what this
SDK sends for functions using every option (flow control, cancel, timeouts, cron,
idempotency, failure handler). Each example applies a few mutations (replace any value
with hostile JSON, delete a key, add a known option key with a wrong value) and posts
the result: a 200, after which the function list still renders, or a 400 naming the
problem; never a 5xx. Nothing leaves the machine (the engine's HTTP driver refuses every
call), and a bystander run in flight completes unaffected.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stepline
from stepline._comm import app_sync
from stepline._comm.handler import CommHandler
from tests._support.captures import CAPTURES
from tests._support.targets import Refuse, assert_precise, fuzz_target

from . import strategies as s

pytestmark = [pytest.mark.slow]

URL = "http://127.0.0.1:1/api/inngest"
OPTION_KEYS = [
    "appName", "appname", "url", "functions", "id", "name", "triggers", "event", "expression",
    "cron", "jitter", "steps", "step", "runtime", "retries", "attempts", "concurrency",
    "limit", "scope", "key", "throttle", "period", "burst", "rateLimit", "debounce",
    "timeout", "batchEvents", "maxSize", "if", "priority", "run", "singleton", "mode",
    "cancel", "timeouts", "start", "finish", "idempotency",
]  # fmt: skip


def _captured(kind: str) -> dict[str, Any]:
    data = json.loads((CAPTURES / kind / "02_sync_put.json").read_text())
    body: dict[str, Any] = data["outgoing_requests_made_by_sdk"][0]["body"]
    return body


def _rich() -> dict[str, Any]:
    """What this SDK registers for functions using every option."""
    client = stepline.Client(app_id="rich", is_production=False)

    async def noop(ctx: stepline.Context) -> None:
        return None

    options: dict[str, Any] = {
        "retries": 3,
        "concurrency": [stepline.Concurrency(limit=2, key="event.data.k", scope="fn")],
        "throttle": stepline.Throttle(limit=5, period="10s", key="event.data.k", burst=2),
        "priority": stepline.Priority(run="event.data.vip ? 60 : 0"),
        "cancel": [stepline.Cancel(event="rich/stop", if_exp="async.data.k == event.data.k")],
        "idempotency": "event.data.id",
        "singleton": stepline.Singleton(mode="skip", key="event.data.k"),
        "timeouts": stepline.Timeouts(start="1m", finish="1h"),
        "on_failure": noop,
    }
    first = client.function(id="all", trigger=stepline.TriggerEvent(event="rich/go"), **options)
    second = client.function(
        id="batched",
        triggers=[stepline.TriggerEvent(event="rich/*", expression="event.data.n > 1")],
        batch_events=stepline.Batch(max_size=5, timeout="5s", key="event.data.k"),
        rate_limit=stepline.RateLimit(limit=10, period="1m", key="event.data.u"),
    )
    third = client.function(
        id="debounced",
        trigger=stepline.TriggerCron(cron="TZ=Europe/Paris 0 9 * * 1-5"),
        debounce=stepline.Debounce(period="5s", timeout="1m"),
    )
    functions = [first(noop), second(noop), third(noop)]
    handler = CommHandler(client=client, functions=functions, framework="asgi")
    try:
        return app_sync.register_payload(handler.endpoint, URL)
    finally:
        handler.close()


def _local_urls(value: Any) -> Any:
    """The seed with every app URL pointing at port 1 (nothing listens there)."""
    if isinstance(value, dict):
        return {k: _local_urls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_local_urls(v) for v in value]
    if isinstance(value, str) and value.startswith("http://127.0.0.1:"):
        return URL + ("?" + value.split("?", 1)[1] if "?" in value else "")
    return value


SEEDS = [_local_urls(_captured("py")), _local_urls(_captured("js")), _rich()]


def test_mutated_registrations_are_accepted_or_refused_precisely(db: str) -> None:
    with fuzz_target(db, http=Refuse()) as target:
        for seed in SEEDS:  # the seeds themselves are valid
            assert_precise(target.http.post("/fn/register", json=seed), 200)

        @settings(s.FUZZ, max_examples=150)
        @given(st.sampled_from(SEEDS), st.data())
        def check(seed: dict[str, Any], data: st.DataObject) -> None:
            body = copy.deepcopy(seed)
            body = s.mutated(body, data, keys=OPTION_KEYS)
            answer = target.http.post("/fn/register", content=s.dumps(body))
            # 409: a mutated app id claiming the seed's function ids, which another app owns
            assert_precise(answer, 200, 400, 409)
            if answer.status_code == 200:
                assert_precise(target.http.get("/v1/functions"), 200)
                assert_precise(target.http.get("/v1/apps"), 200)

        check()
