"""Flow-control rules parsed from registration configs: values, defaults and clear errors."""

from __future__ import annotations

from typing import Any

import pytest

from stepline.engine._flow.limits import gcra, gcra_reserve
from stepline.engine._flow.rules import RegistrationError, parse_flow


def test_every_rule_parses_with_its_values() -> None:
    rules = parse_flow(
        "function 'f'",
        {
            "concurrency": [
                {"limit": 5},
                {"limit": 1, "key": "event.data.user", "scope": "account"},
            ],
            "throttle": {"limit": 3, "period": "1m", "burst": 2, "key": "event.data.team"},
            "rateLimit": {"limit": 10, "period": "1h"},
            "debounce": {"period": "30s", "timeout": "2m", "key": "event.data.doc"},
            "priority": {"run": "event.data.vip ? 120 : 0"},
            "singleton": {"mode": "cancel", "key": "event.data.user"},
        },
    )
    assert [(c.limit, c.scope) for c in rules.concurrency] == [(5, "fn"), (1, "account")]
    key = rules.concurrency[1].key
    assert key is not None
    assert key.text == "event.data.user"
    assert rules.throttle is not None
    assert (rules.throttle.limit, rules.throttle.period, rules.throttle.burst) == (3, 60.0, 2)
    assert rules.rate_limit is not None
    assert (rules.rate_limit.limit, rules.rate_limit.period) == (10, 3600.0)
    assert rules.debounce is not None
    assert (rules.debounce.period, rules.debounce.timeout) == (30.0, 120.0)
    assert rules.priority is not None
    assert rules.singleton is not None
    assert rules.singleton.mode == "cancel"
    batch = parse_flow(
        "f", {"batchEvents": {"maxSize": 50, "timeout": "5s", "if": "event.data.ok"}}
    )
    assert batch.batch is not None
    assert (batch.batch.max_size, batch.batch.timeout) == (50, 5.0)
    assert batch.batch.condition is not None


def test_defaults_and_shorthands() -> None:
    assert parse_flow("f", {}).concurrency == ()
    assert [c.limit for c in parse_flow("f", {"concurrency": 4}).concurrency] == [4]
    assert parse_flow("f", {"concurrency": [{"limit": 0}]}).concurrency == ()  # 0 = no limit
    throttle = parse_flow("f", {"throttle": {"limit": 1, "period": "5s"}}).throttle
    assert throttle is not None
    assert throttle.burst == 0
    batch = parse_flow("f", {"batchEvents": {"maxSize": 10}}).batch
    assert batch is not None
    assert batch.timeout == 60.0


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"concurrency": [{"limit": 1}] * 3}, "concurrency allows at most 2 limits"),
        ({"concurrency": [{"limit": -1}]}, "concurrency.limit must be an integer >= 0"),
        ({"concurrency": [{"limit": 1, "scope": "team"}]}, "concurrency.scope"),
        ({"concurrency": [{"limit": 1, "key": "event.data.("}]}, "concurrency.key"),
        ({"concurrency": ["x"]}, "each concurrency limit must be an object"),
        ({"throttle": {"limit": 1, "period": "0s"}}, "throttle.period must be between"),
        ({"throttle": {"limit": 1, "period": "8d"}}, "throttle.period must be between"),
        ({"throttle": {"limit": 0, "period": "1s"}}, "throttle.limit"),
        ({"throttle": {"limit": 1, "period": "1s", "burst": -1}}, "throttle.burst"),
        ({"throttle": "fast"}, "throttle must be an object"),
        ({"rateLimit": {"limit": 1, "period": "25h"}}, "rateLimit.period"),
        ({"rateLimit": {"limit": True, "period": "1h"}}, "rateLimit.limit"),
        ({"debounce": {"period": "soon"}}, "debounce.period"),
        ({"debounce": {"period": "1m", "timeout": "30s"}}, "debounce.timeout"),
        ({"batchEvents": {"maxSize": 0}}, "batchEvents.maxSize"),
        ({"batchEvents": {"maxSize": 1001}}, "batchEvents.maxSize must be at most"),
        ({"batchEvents": {"maxSize": 5, "timeout": "2m"}}, "batchEvents.timeout"),
        ({"batchEvents": {"maxSize": 5, "if": "async.data.x"}}, "batchEvents.if"),
        ({"priority": {"run": "event.data.x +"}}, "priority.run"),
        ({"singleton": {"mode": "queue"}}, "singleton.mode"),
        (
            {"debounce": {"period": "1s"}, "batchEvents": {"maxSize": 2}},
            "batchEvents cannot be combined with debounce",
        ),
    ],
)
def test_bad_rules_name_the_function_and_option(config: dict[str, Any], message: str) -> None:
    with pytest.raises(RegistrationError, match="function 'f'") as info:
        parse_flow("function 'f'", config)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("times", "allowed"),
    [
        ([0, 0, 0], [True, True, False]),  # the whole limit is usable as a burst
        ([0, 0, 1799, 1800], [True, True, False, True]),  # one slot back per period/limit
        ([0, 0, 3600, 3600, 3600], [True, True, True, True, False]),
    ],
)
def test_gcra_allows_limit_per_period(times: list[float], allowed: list[bool]) -> None:
    tat = None
    seen = []
    for now in times:
        nxt = gcra(tat, now, interval=1800, burst=2)
        seen.append(nxt is not None)
        tat = nxt if nxt is not None else tat
    assert seen == allowed


def test_gcra_reserve_queues_each_event_at_its_slot() -> None:
    # limit 2 per 6s with burst 1: capacity 3, then one slot every 3s (Inngest's example)
    tat = None
    slots = []
    for arrival in (0.0, 0.5, 1.0, 1.5, 2.0, 2.5):
        slot, tat = gcra_reserve(tat, arrival, interval=3.0, burst=3)
        slots.append(slot)
    assert slots == [0.0, 0.5, 1.0, 3.0, 6.0, 9.0]


def test_gcra_is_exact_at_epoch_scale_times() -> None:
    # floats near 1.7e9 are ~2.4e-7 apart: an event exactly on its slot must still pass
    now = 1_700_000_000.0
    for limit in (3, 5, 7):
        for period in range(1, 30):
            tat = None
            for _ in range(limit):
                tat = gcra(tat, now, interval=period / limit, burst=limit)
                assert tat is not None, (limit, period)
            slot_tat = None
            for _ in range(limit):
                slot, slot_tat = gcra_reserve(slot_tat, now, interval=period / limit, burst=limit)
                assert slot == now, (limit, period)
