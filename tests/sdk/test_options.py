from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from stepline._definition.checks import check_duration, check_expression
from stepline._definition.options import (
    Batch,
    Cancel,
    Concurrency,
    Debounce,
    FunctionOptions,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
    Timeouts,
)
from stepline._definition.triggers import TriggerCron, TriggerEvent, triggers_to_wire
from stepline._errors import ConfigError

# ---------------------------------------------------------------- expressions


@pytest.mark.parametrize(
    "text",
    [
        "event.data.id == async.data.id",
        "event.data.function_id == 'a-b'",
        'event.data.name == "x(" && size(event.data.items) > 0',
        r"event.data.s == 'it\'s'",
        "[1, 2][0] == {'a': (1)}['a']",
    ],
)
def test_check_expression_accepts(text: str) -> None:
    check_expression("X.key", text)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "must not be an empty expression"),
        ("   ", "must not be an empty expression"),
        ("event.data.id == 'x", "unterminated string literal"),
        ('event.data.id == "x', "unterminated string literal"),
        ("size(event.data", "unclosed '(' from column 5: expected ',' or ')'"),
        ("event.data)", "unmatched ')' at column 11"),
        ("[1, 2)", "expected ',' or ']' to close '[' from column 1, got ')' at column 6"),
        ("{'a': 1", "unclosed '{' from column 1"),
        ("event.data.x == )", "unexpected token ')' at column 17"),
        ("event.data.x = 1", "unexpected character '=' (did you mean '=='?) at column 14"),
        ("event.data.x.nope()", "unknown method '.nope()' at column 14"),
        ("frob(event)", "unknown function 'frob()' at column 1"),
        ("size(1, 2)", "size() takes 1 argument, got 2"),
        ("event.name.matches('[')", "invalid regular expression '['"),
    ],
)
def test_check_expression_rejects(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=r"X\.key") as info:
        check_expression("X.key", text)
    assert fragment in str(info.value)


def test_check_expression_rejects_non_string() -> None:
    with pytest.raises(ConfigError, match=r"X\.key must be an expression string"):
        check_expression("X.key", 42)  # type: ignore[arg-type]


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (dt.timedelta(minutes=2), dt.timedelta(minutes=2)),
        (3000, dt.timedelta(seconds=3)),
        ("1h30m", dt.timedelta(minutes=90)),
    ],
)
def test_check_duration_normalises(value: Any, expected: dt.timedelta) -> None:
    assert check_duration("X.period", value) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (True, "must be a timedelta"),
        (1.5, "must be a timedelta"),
        ("soon", "invalid duration"),
        (1500, "whole number of seconds"),
        (0, "at least 1s"),
        (dt.timedelta(seconds=-5), "at least 1s"),
        ("2h", "at most 1h"),
    ],
)
def test_check_duration_rejects(value: Any, fragment: str) -> None:
    with pytest.raises(ConfigError, match=r"X\.period") as info:
        check_duration("X.period", value, maximum=dt.timedelta(hours=1))
    assert fragment in str(info.value)


# ---------------------------------------------------------------- options: wire shapes


def test_concurrency_wire() -> None:
    assert Concurrency(2).to_wire() == {"limit": 2}
    assert Concurrency(limit=2, key="event.data.user", scope="env").to_wire() == {
        "limit": 2,
        "key": "event.data.user",
        "scope": "env",
    }


def test_throttle_wire_and_normalisation() -> None:
    throttle = Throttle(limit=3, period="60s", key="event.data.k", burst=2)
    assert throttle.period == dt.timedelta(minutes=1)
    assert throttle == Throttle(3, 60_000, "event.data.k", 2)
    assert throttle.to_wire() == {"limit": 3, "period": "1m", "key": "event.data.k", "burst": 2}
    assert Throttle(1, dt.timedelta(days=7)).to_wire() == {"limit": 1, "period": "1w"}


def test_rate_limit_wire() -> None:
    assert RateLimit(5, "24h", key="event.data.id").to_wire() == {
        "limit": 5,
        "period": "1d",
        "key": "event.data.id",
    }


def test_debounce_wire() -> None:
    assert Debounce(2000).to_wire() == {"period": "2s"}
    assert Debounce("5m", key="event.data.k", timeout="1h").to_wire() == {
        "period": "5m",
        "key": "event.data.k",
        "timeout": "1h",
    }


def test_batch_wire() -> None:
    assert Batch(max_size=8, timeout=dt.timedelta(seconds=10)).to_wire() == {
        "maxSize": 8,
        "timeout": "10s",
    }
    assert Batch(100, "60s", key="event.data.k", if_exp="event.data.ok").to_wire() == {
        "maxSize": 100,
        "timeout": "1m",
        "key": "event.data.k",
        "if": "event.data.ok",
    }


def test_priority_singleton_wire() -> None:
    assert Priority("event.data.vip ? 120 : 0").to_wire() == {"run": "event.data.vip ? 120 : 0"}
    assert Singleton("skip").to_wire() == {"mode": "skip"}
    assert Singleton(mode="cancel", key="event.data.k").to_wire() == {
        "mode": "cancel",
        "key": "event.data.k",
    }


def test_cancel_wire() -> None:
    assert Cancel("app/cancel").to_wire() == {"event": "app/cancel"}
    assert Cancel("a/c", if_exp="event.data.id == async.data.id", timeout="1h").to_wire() == {
        "event": "a/c",
        "if": "event.data.id == async.data.id",
        "timeout": "1h",
    }
    when = dt.datetime(2030, 1, 2, 3, 4, 5, 6000, tzinfo=dt.timezone.utc)
    assert Cancel("a/c", timeout=when).to_wire() == {
        "event": "a/c",
        "timeout": "2030-01-02T03:04:05.006Z",
    }


def test_timeouts_wire() -> None:
    assert Timeouts(start="30s").to_wire() == {"start": "30s"}
    assert Timeouts(finish=dt.timedelta(hours=2)).to_wire() == {"finish": "2h"}
    assert Timeouts("10s", "1m").to_wire() == {"start": "10s", "finish": "1m"}


# ---------------------------------------------------------------- options: errors


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: Concurrency(0), "Concurrency.limit must be >= 1, got 0 (0 means unlimited"),
        (lambda: Concurrency(-1), "Concurrency.limit must be >= 1"),
        (lambda: Concurrency(True), "Concurrency.limit must be an int"),
        (lambda: Concurrency("2"), "Concurrency.limit must be an int"),  # type: ignore[arg-type]
        (lambda: Concurrency(1, key=""), "Concurrency.key must not be an empty"),
        (
            lambda: Concurrency(1, key="event.data.x == 'a"),
            "Concurrency.key: unterminated string literal at column 17",
        ),
        (lambda: Concurrency(1, scope="global"), "Concurrency.scope must be"),  # type: ignore[arg-type]
        (lambda: Concurrency(1, scope="account"), "Concurrency.scope='account' requires a key"),
        (lambda: Throttle(0, "1s"), "Throttle.limit"),
        (lambda: Throttle(1, "8d"), "Throttle.period must be at most 1w"),
        (lambda: Throttle(1, 500), "Throttle.period must be a whole number of seconds"),
        (lambda: Throttle(1, "1s", key="("), "Throttle.key"),
        (lambda: Throttle(1, "1s", burst=0), "Throttle.burst must be >= 1"),
        (lambda: RateLimit(0, "1h"), "RateLimit.limit"),
        (lambda: RateLimit(1, "25h"), "RateLimit.period must be at most 1d"),
        (lambda: RateLimit(1, "1h", key=")"), "RateLimit.key"),
        (lambda: Debounce("0s"), "Debounce.period must be at least 1s"),
        (lambda: Debounce("8d"), "Debounce.period must be at most 1w"),
        (lambda: Debounce("1m", timeout="30s"), "Debounce.timeout (30s) must not be shorter"),
        (lambda: Debounce("1m", key="'"), "Debounce.key"),
        (lambda: Batch(0, "1s"), "Batch.max_size must be between 1 and 100"),
        (lambda: Batch(101, "1s"), "Batch.max_size must be between 1 and 100"),
        (lambda: Batch(10, "61s"), "Batch.timeout must be at most 1m"),
        (lambda: Batch(10, 0), "Batch.timeout must be at least 1s"),
        (lambda: Batch(10, "1s", key=""), "Batch.key"),
        (lambda: Batch(10, "1s", if_exp="(("), "Batch.if_exp"),
        (lambda: Priority(""), "Priority.run"),
        (lambda: Cancel(""), "Cancel.event must not be empty"),
        (lambda: Cancel(3), "Cancel.event must be an event name"),  # type: ignore[arg-type]
        (lambda: Cancel("a", if_exp="'"), "Cancel.if_exp"),
        (lambda: Cancel("a", timeout="0s"), "Cancel.timeout must be at least 1s"),
        (lambda: Singleton("drop"), "Singleton.mode must be 'skip' or 'cancel'"),  # type: ignore[arg-type]
        (lambda: Singleton("skip", key="]"), "Singleton.key"),
        (Timeouts, "Timeouts needs at least one of start, finish, step, call"),
        (lambda: Timeouts(start="500ms"), "Timeouts.start must be a whole number"),
        (lambda: Timeouts(finish=0), "Timeouts.finish must be at least 1s"),
    ],
)
def test_option_errors(make: Any, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        make()
    assert fragment in str(info.value)


# ---------------------------------------------------------------- FunctionOptions


def test_function_options_empty() -> None:
    assert FunctionOptions().to_wire() == {}
    assert FunctionOptions.build() == FunctionOptions()


def test_function_options_build_normalises_concurrency_and_cancel() -> None:
    assert FunctionOptions.build(concurrency=3).concurrency == (Concurrency(3),)
    one = Concurrency(2, key="event.data.u")
    assert FunctionOptions.build(concurrency=one).concurrency == (one,)
    assert FunctionOptions.build(concurrency=[one, Concurrency(5)]).concurrency == (
        one,
        Concurrency(5),
    )
    cancel = Cancel("a/c")
    assert FunctionOptions.build(cancel=cancel).cancel == (cancel,)
    assert FunctionOptions.build(cancel=[cancel, Cancel("b/c")]).cancel == (cancel, Cancel("b/c"))
    assert FunctionOptions(concurrency=[one]).concurrency == (one,)  # type: ignore[arg-type]


def test_function_options_full_wire() -> None:
    options = FunctionOptions.build(
        name="Nice",
        description="does things",
        retries=3,
        concurrency=[Concurrency(2, key="event.data.u", scope="fn")],
        throttle=Throttle(1, "1m"),
        debounce=Debounce("10s"),
        priority=Priority("0"),
        cancel=Cancel("a/c", timeout="1d"),
        idempotency="event.data.id",
        singleton=Singleton("skip"),
        timeouts=Timeouts(finish="1h"),
    )
    assert options.to_wire() == {
        "description": "does things",
        "concurrency": [{"limit": 2, "key": "event.data.u", "scope": "fn"}],
        "throttle": {"limit": 1, "period": "1m"},
        "debounce": {"period": "10s"},
        "priority": {"run": "0"},
        "cancel": [{"event": "a/c", "timeout": "1d"}],
        "idempotency": "event.data.id",
        "singleton": {"mode": "skip"},
        "timeouts": {"finish": "1h"},
    }
    # name and retries travel outside the function-level keys
    assert options.name == "Nice"
    assert options.retries == 3
    wire = FunctionOptions.build(rate_limit=RateLimit(1, "1h"), batch_events=Batch(5, "5s"))
    assert wire.to_wire() == {
        "rateLimit": {"limit": 1, "period": "1h"},
        "batchEvents": {"maxSize": 5, "timeout": "5s"},
    }


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"retries": -1}, "FunctionOptions.retries must be between 0 and 20"),
        ({"retries": 21}, "FunctionOptions.retries must be between 0 and 20"),
        ({"retries": True}, "FunctionOptions.retries must be an int"),
        ({"name": ""}, "FunctionOptions.name must not be empty"),
        ({"name": 5}, "FunctionOptions.name must be a str or None"),
        ({"description": 5}, "FunctionOptions.description must be a str or None"),
        ({"concurrency": 0}, "Concurrency.limit must be >= 1, got 0"),
        ({"concurrency": True}, "FunctionOptions.concurrency must be a list of Concurrency"),
        ({"concurrency": "2"}, "FunctionOptions.concurrency must be a list of Concurrency"),
        ({"concurrency": [2]}, "FunctionOptions.concurrency[] must be a Concurrency"),
        (
            {"concurrency": [Concurrency(1), Concurrency(2), Concurrency(3)]},
            "FunctionOptions.concurrency allows at most 2 limits, got 3",
        ),
        ({"cancel": ["a/c"]}, "FunctionOptions.cancel[] must be a Cancel"),
        ({"throttle": {"limit": 1}}, "FunctionOptions.throttle must be a Throttle or None"),
        ({"rate_limit": 1}, "FunctionOptions.rate_limit must be a RateLimit"),
        ({"debounce": "1s"}, "FunctionOptions.debounce must be a Debounce"),
        ({"batch_events": 5}, "FunctionOptions.batch_events must be a Batch"),
        ({"priority": "1"}, "FunctionOptions.priority must be a Priority"),
        ({"singleton": "skip"}, "FunctionOptions.singleton must be a Singleton"),
        ({"timeouts": "1s"}, "FunctionOptions.timeouts must be a Timeouts"),
        ({"idempotency": "("}, "FunctionOptions.idempotency: unexpected end of input"),
        (
            {"batch_events": Batch(5, "5s"), "debounce": Debounce("5s")},
            "batch_events cannot be used with debounce",
        ),
        (
            {"batch_events": Batch(5, "5s"), "priority": Priority("1")},
            "batch_events cannot be used with priority",
        ),
        (
            {"idempotency": "event.data.id", "rate_limit": RateLimit(1, "1h")},
            "idempotency cannot be used with rate_limit",
        ),
    ],
)
def test_function_options_errors(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        FunctionOptions.build(**kwargs)
    assert fragment in str(info.value)


def test_options_are_frozen() -> None:
    with pytest.raises(AttributeError):
        Concurrency(1).limit = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        FunctionOptions().retries = 2  # type: ignore[misc]


# ---------------------------------------------------------------- triggers


def test_event_trigger_wire() -> None:
    assert TriggerEvent("app/x").to_wire() == {"event": "app/x"}
    assert TriggerEvent("app/x", expression="event.data.ok").to_wire() == {
        "event": "app/x",
        "expression": "event.data.ok",
    }
    assert TriggerEvent("inngest/function.finished").to_wire() == {
        "event": "inngest/function.finished"
    }


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: TriggerEvent(""), "TriggerEvent.event must be a non-empty event name"),
        (lambda: TriggerEvent("  "), "TriggerEvent.event must be a non-empty event name"),
        (lambda: TriggerEvent(None), "TriggerEvent.event must be a non-empty event name"),  # type: ignore[arg-type]
        (lambda: TriggerEvent("a", expression=""), "TriggerEvent.expression must not be"),
        (lambda: TriggerEvent("a", expression="(x"), "TriggerEvent.expression: unclosed '('"),
    ],
)
def test_event_trigger_errors(make: Any, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        make()
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"cron": "*/5 * * * *"}, {"cron": "*/5 * * * *"}),
        ({"cron": "  0   12 *  * 1-5 "}, {"cron": "0 12 * * 1-5"}),
        ({"cron": "0 9 1,15 jan-jun MON-FRI"}, {"cron": "0 9 1,15 jan-jun MON-FRI"}),
        ({"cron": "0 0 ? * sun"}, {"cron": "0 0 ? * sun"}),
        ({"cron": "5/10 0-23/2 1-31 1-12 0-6"}, {"cron": "5/10 0-23/2 1-31 1-12 0-6"}),
        (
            {"cron": "0 12 * * 5", "timezone": "Europe/Paris"},
            {"cron": "TZ=Europe/Paris 0 12 * * 5"},
        ),
        ({"cron": "TZ=America/New_York 0 12 * * 5"}, {"cron": "TZ=America/New_York 0 12 * * 5"}),
        ({"cron": "CRON_TZ=UTC 0 12 * * 5"}, {"cron": "TZ=UTC 0 12 * * 5"}),
        ({"cron": "@hourly"}, {"cron": "0 * * * *"}),
        ({"cron": "@daily", "timezone": "Asia/Tokyo"}, {"cron": "TZ=Asia/Tokyo 0 0 * * *"}),
        ({"cron": "@midnight"}, {"cron": "0 0 * * *"}),
        ({"cron": "@weekly"}, {"cron": "0 0 * * 0"}),
        ({"cron": "@monthly"}, {"cron": "0 0 1 * *"}),
        ({"cron": "@yearly"}, {"cron": "0 0 1 1 *"}),
        ({"cron": "@annually"}, {"cron": "0 0 1 1 *"}),
        ({"cron": "0 * * * *", "jitter": "30s"}, {"cron": "0 * * * *", "jitter": "30s"}),
        ({"cron": "0 * * * *", "jitter": 300_000}, {"cron": "0 * * * *", "jitter": "5m"}),
        (
            {"cron": "0 * * * *", "jitter": dt.timedelta(seconds=1)},
            {"cron": "0 * * * *", "jitter": "1s"},
        ),
    ],
)
def test_cron_trigger_wire(kwargs: dict[str, Any], expected: dict[str, Any]) -> None:
    assert TriggerCron(**kwargs).to_wire() == expected


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"cron": ""}, "TriggerCron.cron must be a non-empty string"),
        ({"cron": "* * * *"}, "must have 5 fields"),
        ({"cron": "0 * * * * *"}, "no seconds field), got 6"),
        ({"cron": "60 * * * *"}, "minute field '60' is outside 0-59"),
        ({"cron": "* 24 * * *"}, "hour field '24' is outside 0-23"),
        ({"cron": "* * 0 * *"}, "day-of-month field '0' is outside 1-31"),
        ({"cron": "* * * 13 *"}, "month field '13' is outside 1-12"),
        ({"cron": "* * * * 7"}, "day-of-week field '7' is outside 0-6 (use 0 for Sunday)"),
        ({"cron": "* * * * 1-7"}, "(use 0 for Sunday)"),
        ({"cron": "x * * * *"}, "has 'x', which is not a number"),
        ({"cron": "* * * foo *"}, "has 'foo', which is not a number or a name"),
        ({"cron": "mon * * * *"}, "has 'mon', which is not a number"),
        ({"cron": "*/0 * * * *"}, "a step must be a positive number"),
        ({"cron": "*/x * * * *"}, "a step must be a positive number"),
        ({"cron": "1,,2 * * * *"}, "has '', which is not a number"),
        ({"cron": "30-10 * * * *"}, "which runs backwards"),
        ({"cron": "1-2-3 * * * *"}, "which is not a number"),
        ({"cron": "0 0 L * *"}, "has 'L'"),
        ({"cron": "@every 5m"}, "unsupported descriptor '@every 5m'"),
        ({"cron": "@reboot"}, "unsupported descriptor"),
        ({"cron": "TZ=Mars/Base 0 * * * *"}, "'Mars/Base' is not a known IANA time zone"),
        ({"cron": "TZ="}, "'' is not a known IANA time zone"),
        ({"cron": "TZ=UTC"}, "must have 5 fields"),
        ({"cron": "0 * * * *", "timezone": "Nowhere/Land"}, "TriggerCron.timezone 'Nowhere/Land'"),
        ({"cron": "TZ=UTC 0 * * * *", "timezone": "UTC"}, "not both"),
        ({"cron": "0 * * * *", "jitter": "0s"}, "TriggerCron.jitter must be at least 1s"),
        ({"cron": "0 * * * *", "jitter": "6m"}, "TriggerCron.jitter must be at most 5m"),
    ],
)
def test_cron_trigger_errors(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        TriggerCron(**kwargs)
    assert fragment in str(info.value)


def test_triggers_to_wire() -> None:
    assert triggers_to_wire([TriggerEvent("a"), TriggerCron("0 * * * *")]) == [
        {"event": "a"},
        {"cron": "0 * * * *"},
    ]
    assert triggers_to_wire([TriggerEvent("a", "event.data.x"), TriggerEvent("a")]) == [
        {"event": "a", "expression": "event.data.x"},
        {"event": "a"},
    ]


@pytest.mark.parametrize(
    ("triggers", "fragment"),
    [
        ([], "a function needs at least one trigger"),
        ("app/x", "triggers must be a list of triggers"),
        ([{"event": "x"}], "triggers must hold TriggerEvent or TriggerCron"),
        ([TriggerCron("0 * * * *"), TriggerCron("0 * * * *", jitter="5s")], "is repeated"),
        ([TriggerCron("@hourly"), TriggerCron("0  *  * * *")], "'0 * * * *' is repeated"),
        ([TriggerEvent("a"), TriggerEvent("a")], "the trigger {'event': 'a'} is repeated"),
    ],
)
def test_triggers_to_wire_errors(triggers: Any, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        triggers_to_wire(triggers)
    assert fragment in str(info.value)


def test_triggers_to_wire_accepts_single_trigger() -> None:
    assert triggers_to_wire(TriggerEvent("a")) == [{"event": "a"}]  # type: ignore[arg-type]
