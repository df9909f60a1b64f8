from __future__ import annotations

import json
from typing import Any

import pytest

from stepline import _identity
from stepline._definition.options import Batch, Cancel, Debounce, FunctionOptions, Singleton
from stepline._definition.triggers import TriggerEvent, triggers_to_wire
from stepline._errors import ConfigError
from stepline._protocol.registration import (
    function_config,
    in_band_sync_body,
    inspection_body,
    on_failure_config,
    register_body,
    step_url,
    strip_nulls,
)
from tests._support import captures

CAPTURES = captures.CAPTURES / "py"
CRAZY_ID = "crazy_ids%$^&*(_+{|:<?☃️"
CRAZY_ENCODED = "crazy_ids%25%24%5E%26%2A%28_%2B%7B%7C%3A%3C%3F%E2%98%83%EF%B8%8F"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CAPTURES / name).read_text(encoding="utf-8"))
    return data


# ---------------------------------------------------------------- step_url


def test_step_url_plain() -> None:
    assert (
        step_url("http://localhost/api/inngest", "app-fn")
        == "http://localhost/api/inngest?fnId=app-fn&stepId=step"
    )


def test_step_url_encodes_crazy_ids_like_the_capture() -> None:
    assert step_url("http://localhost/api/inngest", f"flask-functions-{CRAZY_ID}") == (
        f"http://localhost/api/inngest?fnId=flask-functions-{CRAZY_ENCODED}&stepId=step"
    )


def test_step_url_encodes_slash() -> None:
    assert step_url("http://h/api", "app-two_steps/invokee") == (
        "http://h/api?fnId=app-two_steps%2Finvokee&stepId=step"
    )


def test_step_url_keeps_other_params_and_replaces_ours() -> None:
    assert step_url("https://h:8443/api?x-vercel=1&fnId=stale&b=%20", "a", "s 1") == (
        "https://h:8443/api?x-vercel=1&b=%20&fnId=a&stepId=s+1"
    )


# ---------------------------------------------------------------- strip_nulls


def test_strip_nulls() -> None:
    value = {"a": None, "b": {"c": None, "d": [1, None, {"e": None, "f": 0}]}, "g": False}
    assert strip_nulls(value) == {"b": {"d": [1, None, {"f": 0}]}, "g": False}
    assert strip_nulls([None, {"a": None}]) == [None, {}]
    assert strip_nulls(3) == 3


# ---------------------------------------------------------------- function configs


def test_function_config_without_retries_has_no_retries_key() -> None:
    config = function_config(
        composite_id="holdout-py-ops",
        name="ops",
        serve_url="http://127.0.0.1:56947/api/inngest",
        triggers=[{"event": "demo/ops"}],
        options={},
        retries=None,
    )
    captured = load("02_sync_put.json")["outgoing_requests_made_by_sdk"][0]["body"]
    assert config == captured["functions"][1]
    assert "retries" not in config["steps"]["step"]


def test_function_config_rejects_reserved_option_keys() -> None:
    with pytest.raises(ConfigError, match="must not set"):
        function_config(
            composite_id="a-b",
            name="b",
            serve_url="http://h/api",
            triggers=[{"event": "x"}],
            options={"steps": {}},
            retries=None,
        )


def test_sync_put_capture_reproduced() -> None:
    body = load("02_sync_put.json")["outgoing_requests_made_by_sdk"][0]["body"]
    functions = []
    for captured in body["functions"]:
        step = captured["steps"]["step"]
        functions.append(
            function_config(
                composite_id=captured["id"],
                name=captured["name"],
                serve_url=body["url"],
                triggers=triggers_to_wire([TriggerEvent(t["event"]) for t in captured["triggers"]]),
                options=FunctionOptions().to_wire(),
                retries=step.get("retries", {}).get("attempts"),
            )
        )
    ours = register_body(
        app_id=body["appname"], url=body["url"], framework="flask", functions=functions
    )
    assert ours["functions"] == body["functions"]
    # Same body apart from the spec casing of two keys and our own sdk string.
    renamed = {"appName": "appname", "deployType": "deploy_type"}
    theirs = {renamed.get(key, key): value for key, value in ours.items() if key != "sdk"}
    assert theirs == {key: value for key, value in body.items() if key != "sdk"}


FLASK_APP = "flask-functions"
FLASK_URL = "http://localhost/api/inngest"

#: local id -> (trigger events, options, retries) equivalent to inngest-py's test app.
FLASK_CASES: dict[str, tuple[list[str], FunctionOptions, int]] = {
    "batch_that_needs_api": (
        ["flask/batch_that_needs_api"],
        FunctionOptions.build(batch_events=Batch(max_size=8, timeout=10_000)),
        0,
    ),
    "cancel": (
        ["flask/cancel"],
        FunctionOptions.build(
            cancel=Cancel(event="flask/cancel.cancel", if_exp="event.data.id == async.data.id")
        ),
        0,
    ),
    "no_cancel_if_exp_not_match": (
        ["flask/no_cancel_if_exp_not_match"],
        FunctionOptions.build(
            cancel=[
                Cancel(
                    "flask/no_cancel_if_exp_not_match.cancel",
                    if_exp="event.data.id == async.data.id",
                )
            ]
        ),
        0,
    ),
    "debounce": (["flask/debounce"], FunctionOptions.build(debounce=Debounce("2s")), 0),
    "singleton_cancel": (
        ["flask/singleton_cancel"],
        FunctionOptions.build(singleton=Singleton(mode="cancel")),
        0,
    ),
    "singleton_skip": (
        ["flask/singleton_skip"],
        FunctionOptions.build(singleton=Singleton("skip")),
        0,
    ),
    CRAZY_ID: (["flask/crazy_ids"], FunctionOptions(), 0),
    "invoke_by_id/invokee": (["never"], FunctionOptions(), 0),
    "parallel_steps/child": (["never"], FunctionOptions(), 0),
    "multiple_triggers": (
        ["flask/multiple_triggers_1", "flask/multiple_triggers_2"],
        FunctionOptions(),
        0,
    ),
    "logger": (["flask/logger"], FunctionOptions.build(retries=1), 1),
    "nested_step_run": (["flask/nested_step_run"], FunctionOptions.build(retries=5), 5),
    "on_failure": (["flask/on_failure"], FunctionOptions(), 0),
}


@pytest.fixture(scope="module")
def flask_functions() -> dict[str, dict[str, Any]]:
    body = load("testcases_register_flask.json")["register_request"]["body"]
    assert body["url"] == FLASK_URL
    return {fn["id"]: fn for fn in body["functions"]}


@pytest.mark.parametrize("local_id", list(FLASK_CASES))
def test_flask_capture_function_reproduced(
    local_id: str, flask_functions: dict[str, dict[str, Any]]
) -> None:
    events, options, retries = FLASK_CASES[local_id]
    assert options.retries in (None, retries)
    composite_id = f"{FLASK_APP}-{local_id}"
    ours = function_config(
        composite_id=composite_id,
        name=options.name or local_id,
        serve_url=FLASK_URL,
        triggers=triggers_to_wire([TriggerEvent(event) for event in events]),
        options=options.to_wire(),
        retries=retries,
    )
    assert ours == flask_functions[composite_id]


def test_flask_capture_on_failure_reproduced(flask_functions: dict[str, dict[str, Any]]) -> None:
    ours = on_failure_config(
        composite_id="flask-functions-on_failure", name="on_failure", serve_url=FLASK_URL
    )
    assert ours == flask_functions["flask-functions-on_failure-failure"]
    assert ours["cancel"] == []
    assert ours["concurrency"] == []
    assert ours["steps"]["step"]["retries"] == {"attempts": 0}


def test_on_failure_escapes_quotes_in_the_expression() -> None:
    config = on_failure_config(composite_id="app-it's", name="x", serve_url="http://h/api")
    assert config["triggers"] == [
        {
            "event": "inngest/function.failed",
            "expression": "event.data.function_id == 'app-it\\'s'",
        }
    ]


# ---------------------------------------------------------------- register body


def test_register_body_shape() -> None:
    fn: dict[str, Any] = {
        "id": "a-b",
        "name": "b",
        "triggers": [],
        "steps": {},
        "description": None,
    }
    body = register_body(app_id="a", url="http://h/api", framework="flask", functions=[fn])
    assert body == {
        "appName": "a",
        "capabilities": {"connect": "v1", "in_band_sync": "v1", "trust_probe": "v1"},
        "deployType": "ping",
        "framework": "flask",
        "functions": [{"id": "a-b", "name": "b", "triggers": [], "steps": {}}],
        "sdk": _identity.SDK_REGISTRATION,
        "url": "http://h/api",
        "v": "0.1",
    }
    versioned = register_body(
        app_id="a", url="u", framework="flask", functions=[], app_version="1.2"
    )
    assert versioned["appVersion"] == "1.2"


# ---------------------------------------------------------------- inspection


INSPECTION_ARGS: dict[str, Any] = {
    "function_count": 5,
    "mode": "dev",
    "has_event_key": False,
    "has_signing_key": False,
    "has_signing_key_fallback": False,
    "app_id": "holdout-py",
    "api_origin": "http://127.0.0.1:8288/",
    "event_api_origin": "http://127.0.0.1:8288/",
    "env": None,
    "framework": "flask",
    "serve_origin": None,
    "serve_path": None,
    "signing_key_hash": None,
    "signing_key_fallback_hash": None,
    "event_key_hash": None,
}


def test_unauthenticated_inspection_matches_capture() -> None:
    captured = load("01_inspect_get.json")["response"]["body"]
    ours = inspection_body(authenticated=False, **INSPECTION_ARGS)
    assert ours == captured
    assert list(ours) == list(captured)


def test_unauthenticated_inspection_never_leaks_hashes() -> None:
    args = {**INSPECTION_ARGS, "signing_key_hash": "abc", "event_key_hash": "def"}
    body = inspection_body(authenticated=False, **args)
    assert "abc" not in json.dumps(body)
    assert "def" not in json.dumps(body)


def test_authenticated_inspection() -> None:
    args = {**INSPECTION_ARGS, "signing_key_hash": "abc", "mode": "cloud", "has_signing_key": True}
    body = inspection_body(authenticated=True, **args)
    assert body == {
        "schema_version": "2024-05-24",
        "function_count": 5,
        "has_event_key": False,
        "has_signing_key": True,
        "has_signing_key_fallback": False,
        "mode": "cloud",
        "api_origin": "http://127.0.0.1:8288/",
        "app_id": "holdout-py",
        "authentication_succeeded": True,
        "capabilities": {"connect": "v1", "in_band_sync": "v1", "trust_probe": "v1"},
        "env": None,
        "event_api_origin": "http://127.0.0.1:8288/",
        "event_key_hash": None,
        "framework": "flask",
        "sdk_language": "py",
        "sdk_version": _identity.VERSION,
        "serve_origin": None,
        "serve_path": None,
        "signing_key_fallback_hash": None,
        "signing_key_hash": "abc",
    }


def test_in_band_sync_body() -> None:
    inspection = inspection_body(authenticated=True, **INSPECTION_ARGS)
    fn = {"id": "a-b", "name": "b"}
    body = in_band_sync_body(
        app_id="holdout-py",
        url="https://app.example/api/inngest",
        framework="flask",
        functions=[fn],
        inspection=inspection,
        env=None,
        app_version=None,
    )
    assert body == {
        "app_id": "holdout-py",
        "framework": "flask",
        "functions": [fn],
        "inspection": {key: value for key, value in inspection.items() if value is not None},
        "sdk_author": _identity.SDK_AUTHOR,
        "sdk_language": "py",
        "sdk_version": _identity.VERSION,
        "url": "https://app.example/api/inngest",
    }
    with_env = in_band_sync_body(
        app_id="a",
        url="u",
        framework="flask",
        functions=[],
        inspection={},
        env="branch-1",
        app_version="v9",
    )
    assert with_env["env"] == "branch-1"
    assert with_env["appVersion"] == "v9"
