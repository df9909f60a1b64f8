"""Errors a user can act on: each mistake is refused where it is made,
with a message that names the culprit and says what to write instead."""

from __future__ import annotations

import asyncio
from typing import Any

import pydantic
import pytest

import stepline
from stepline._webkit import routes


def client() -> stepline.Client:
    return stepline.Client(app_id="shop", is_production=False)


@pytest.mark.parametrize("name", ["", None, 3])
def test_event_without_a_name_is_refused_at_construction(name: Any) -> None:
    with pytest.raises((ValueError, TypeError), match=r"Event\.name must be"):
        stepline.Event(name=name)


def test_event_from_the_wire_without_a_name_is_a_body_error() -> None:
    with pytest.raises(stepline.SteplineError, match=r"event\.name must be a non-empty"):
        stepline.Event.from_wire({"name": "", "data": {}})


@pytest.mark.parametrize(
    "events",
    [{"name": "shop/order", "data": {}}, [{"name": "shop/order", "data": {}}]],
    ids=["dict", "list-of-dict"],
)
def test_send_with_a_dict_is_a_type_error_naming_event(events: Any) -> None:
    sdk = client()
    with pytest.raises(TypeError, match=r"stepline\.Event") as sync_error:
        sdk.send_sync(events)
    assert "got dict" in str(sync_error.value)
    with pytest.raises(TypeError, match=r"stepline\.Event"):
        asyncio.run(sdk.send(events))


def test_send_with_a_string_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"stepline\.Event objects, got str"):
        client().send_sync("shop/order")  # type: ignore[arg-type]


# -- the decorator: every mistake names the function ----------------------------------------

ON_ORDER = stepline.TriggerEvent(event="shop/order")


@pytest.mark.parametrize(
    ("options", "culprit"),
    [
        ({"concurrency": stepline.Concurrency(limit=1, key="evnt.data.x")}, "Concurrency.key"),
        ({"throttle": stepline.Throttle(limit=1, period="1m", key="e.id")}, "Throttle.key"),
        ({"rate_limit": stepline.RateLimit(limit=1, period="1m", key="x")}, "RateLimit.key"),
        ({"debounce": stepline.Debounce(period="10s", key="data.x")}, "Debounce.key"),
        ({"singleton": stepline.Singleton(mode="skip", key="user.id")}, "Singleton.key"),
        ({"batch_events": stepline.Batch(max_size=2, timeout="5s", if_exp="ev")}, "Batch.if_exp"),
        ({"priority": stepline.Priority(run="async.data.p")}, "Priority.run"),
        ({"cancel": stepline.Cancel(event="shop/x", if_exp="evt.id == 1")}, "Cancel.if_exp"),
        ({"idempotency": "evnt.data.x"}, "FunctionOptions.idempotency"),
    ],
)
def test_unknown_variable_in_an_option_fails_at_the_decorator(
    options: dict[str, Any], culprit: str
) -> None:
    with pytest.raises(stepline.ConfigError, match="unknown variable") as error:
        client().function(id="pay", trigger=ON_ORDER, **options)
    assert error.value.message.startswith(f'function "pay": {culprit}: ')


def test_unknown_variable_in_a_trigger_expression_names_the_function() -> None:
    trigger = stepline.TriggerEvent(event="shop/order", expression="evnt.data.vip")
    with pytest.raises(stepline.ConfigError, match="unknown variable 'evnt'") as error:
        client().function(id="vip", trigger=trigger)
    assert error.value.message.startswith('function "vip": TriggerEvent.expression: ')


def test_cancel_may_use_async_and_event() -> None:
    cancel = stepline.Cancel(event="shop/cancel", if_exp="async.data.id == event.data.id")
    declared = client().function(id="ok", trigger=ON_ORDER, cancel=cancel)(lambda ctx: None)
    assert declared.composite_id == "shop-ok"


@pytest.mark.parametrize(
    ("declare", "fragment"),
    [
        (lambda c: c.function(id="pay", trigger=ON_ORDER, retries=99), "retries"),
        (lambda c: c.function(id="pay", trigger=ON_ORDER, name=""), "name must not be empty"),
        (lambda c: c.function(id="pay", trigger=ON_ORDER, concurrency=[1, 2, 3]), "oncurrency"),
        (lambda c: c.function(id="pay"), "exactly one of trigger"),
        (lambda c: c.function(id="pay", trigger=ON_ORDER)(lambda: 1), "exactly one argument"),
        (lambda c: c.function(id="pay", trigger=ON_ORDER)(42), "must be callable"),
        (lambda c: c.function(id="pay", triggers=["shop/order"])(lambda ctx: 1), "rigger"),
    ],
)
def test_every_decorator_error_names_the_function(declare: Any, fragment: str) -> None:
    with pytest.raises(stepline.ConfigError) as error:
        declare(client())
    assert error.value.message.startswith('function "pay": '), error.value.message
    assert fragment in error.value.message


# -- the web kit's inputs=: what happens to fields the model does not declare ---------------


class Ignoring(pydantic.BaseModel):
    x: int


class Allowing(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")
    x: int


class Forbidding(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    x: int


def test_kit_inputs_extra_fields_follow_the_models_extra_setting() -> None:
    sent = {"x": "1", "extra": "kept?"}
    assert routes._validate(Ignoring, dict(sent)) == {"x": 1}  # pydantic's default: dropped
    assert routes._validate(Allowing, dict(sent)) == {"x": 1, "extra": "kept?"}
    with pytest.raises(routes._Reject) as refused:
        routes._validate(Forbidding, dict(sent))
    assert refused.value.status == 422
    # a callable: its dict is the data; anything else keeps the data as sent
    assert routes._validate(lambda data: {"x": 2}, dict(sent)) == {"x": 2}
    assert routes._validate(lambda data: None, dict(sent)) == sent
